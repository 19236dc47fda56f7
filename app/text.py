"""User text shown through Streamlit's Markdown: run names, tags, file names, error messages.

This module owns escaping. `st.markdown`, `st.error`, `st.caption`, `st.toast`, ... render
Markdown (and `unsafe_allow_html=True` renders HTML), so a run name like "<img src=x>" or
"*x*" would become markup and a message's backslash ("'\\'") would be eaten as an escape.
`plain(text)` makes any text show as the characters it holds.
"""

from __future__ import annotations

import re

# Characters that start Markdown or HTML constructs anywhere in a line: backslash escapes,
# code spans, emphasis, links/images, raw HTML, entities, LaTeX ($), strikethrough (~).
# An underscore inside a word ("batch_size") cannot start emphasis, so only word-edge
# underscores are escaped and field names in messages stay readable as typed.
_SPECIAL = re.compile(r"[\\`*\[\]<>&$~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# What starts a block at the start of a line: a heading ("# x"), a list item ("- x", "+ x",
# "1. x", "2) x"); escaping its mark leaves the characters as they are on screen.
_BLOCK_START = re.compile(r"^(\s*)(#{1,6}|[-+]|\d{1,9}[.)])(?=\s|$)")


def _escape_block_start(match: re.Match) -> str:
    mark = match.group(2)
    if mark[-1] in ".)":
        return match.group(1) + mark[:-1] + "\\" + mark[-1]
    return match.group(1) + "\\" + mark


def plain(text) -> str:
    """`text` escaped for Markdown (and Markdown with HTML allowed): shown as typed, on one line."""
    one_line = re.sub(r"[\r\n]+", " ", str(text))
    escaped = _SPECIAL.sub(lambda m: "\\" + m.group(0), one_line)
    return _BLOCK_START.sub(_escape_block_start, escaped)
