"""Reading run configs from files (JSON or YAML), for the CLI's --config and the app's upload.

This module owns the safety rules for config files: a size cap, UTF-8 text only (a byte-order
mark is accepted in both formats), JSON parsed by `json`, YAML only by the safe loader (which
refuses object tags such as `!!python/object`), and error messages that give the line and
column. A hostile file is refused cheaply, before anything is built from it: YAML is first
read as an event stream (no recursion, no expansion) with caps on aliases, nesting depth and
scalar length, then composed and its expanded size counted with aliases followed (a
"billion laughs" file of 400 bytes expands to 10^9 nodes); JSON gets the same depth and
number-length caps. Every number form YAML 1.1 reads (decimal, hex, octal, binary, base 60,
with '_' separators, or forced by a !!int or !!float tag) is length-capped before it is
converted, so `0x` followed by 4,000 f's never becomes an int too large for a float. Every
mapping key must be text, given once (a second `lr:` would silently replace the first) and
not a list or mapping; every value YAML converts (numbers, booleans, dates, base64) must
convert. Each refusal names the file, the line and the field.

Experiment files (engine/experiments.py), lesson files (engine/lessons.py) and the app's
uploads read through `parse_config_bytes` / `read_file_bytes` too, each naming its kind of
file. It returns the plain dict; `RunConfig.from_dict` then checks every field.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from engine.config import ConfigError, RunConfig, excerpt

MAX_CONFIG_BYTES = 64 * 1024   # a full config is about 1 KB; anything far bigger is not one
MAX_DEPTH = 8                  # a config is a flat mapping (lists one level down)
MAX_ALIASES = 32               # YAML aliases (*name); a config needs none
MAX_NODES = 10_000             # values after following aliases; a full config has ~100
MAX_SCALAR_CHARS = 4096        # one value (a data_dir path is the longest legitimate one)
MAX_NUMBER_CHARS = 40          # characters of one number, in any form (sign, '_', 0x included)
NUMBER_ALLOWED = f"write a number in at most {MAX_NUMBER_CHARS} characters, e.g. 0.001 or 1e-3"
# libyaml (C) when PyYAML has it: 3-5x faster than the pure-Python parser, which made the
# Experiments page parse its 21 files for about half a second. Same safe constructors.
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
FIELD = "config file"


def parse_config_bytes(raw: bytes, filename: str, field: str = FIELD) -> dict:
    """Parse the bytes of a config file named `filename` into a dict, or raise ConfigError
    naming `field` (what kind of file it is: "config file", "experiment file") and the file."""
    kind = SUFFIXES.get(Path(filename).suffix.lower())
    if kind is None:
        raise ConfigError(field, filename, "allowed: files ending in .json, .yaml or .yml")
    if len(raw) == 0:
        raise ConfigError(field, filename, "it must hold a mapping of option names to values",
                          problem="is empty")
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(field, filename, f"at most {MAX_CONFIG_BYTES:,} bytes are allowed",
                          problem=f"is {len(raw):,} bytes")
    if b"\x00" in raw:
        raise ConfigError(field, filename, f"{_a(field)} is UTF-8 text", problem="is binary")
    try:
        text = raw.decode("utf-8-sig")     # a leading byte-order mark is not content
    except UnicodeDecodeError as error:
        raise ConfigError(field, filename, f"{_a(field)} is UTF-8 text",
                          problem=f"has a non-UTF-8 byte at offset {error.start}") from None
    data = _parse_json(text, filename, field) if kind == "json" \
        else _parse_yaml(text, filename, field)
    if not isinstance(data, dict):
        raise ConfigError(field, filename, "it must hold a mapping of option names to values",
                          problem=f"holds a {type(data).__name__}")
    return data


def read_file_bytes(path: str | Path, field: str = FIELD) -> bytes:
    """The bytes of a config-style file (a run config, an experiment, a lesson), after
    checking that it exists and is within MAX_CONFIG_BYTES: a huge file is refused by its
    size, never read. Raises ConfigError naming `field` and the path."""
    path = Path(path)
    try:
        if not path.is_file():
            raise ConfigError(field, str(path), "give the path of an existing file",
                              problem="does not exist")
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(field, str(path), f"at most {MAX_CONFIG_BYTES:,} bytes are "
                              "allowed", problem=f"is {size:,} bytes")
        with path.open("rb") as f:
            return f.read(MAX_CONFIG_BYTES + 1)    # a file growing meanwhile is still capped
    except OSError as error:      # unreadable (permissions), a name too long, ...
        raise ConfigError(field, str(path), "give the path of a readable file",
                          problem=f"cannot be read ({error.strerror or error})") from None


def load_config_file(path: str | Path) -> RunConfig:
    path = Path(path)
    return RunConfig.from_dict(parse_config_bytes(read_file_bytes(path), path.name))


def _refuse(filename: str, problem: str, field: str = FIELD, allowed: str = ""):
    return ConfigError(field, filename, allowed or f"{_a(field)} is a small mapping of names "
                       "to plain values", problem=problem)


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _check_number_text(text: str, filename: str, field: str = FIELD) -> str:
    if len(text) > MAX_NUMBER_CHARS:
        raise _refuse(filename, f"has a number of {len(text):,} characters (at most "
                                f"{MAX_NUMBER_CHARS})", field, NUMBER_ALLOWED)
    return text


def _field_text(path: tuple) -> str:
    """A key path as a field name: ("base", "lr") -> "base.lr", ("runs", 0) -> "runs[0]";
    control characters escaped, cut to 60 characters (a key can be 4,096)."""
    text = ".".join(f"[{p}]" if isinstance(p, int) else repr(str(p))[1:-1] for p in path)
    text = text.replace(".[", "[")
    return text if len(text) <= 60 else text[:57] + "..."


def _in(path: tuple) -> str:
    return f" in {_field_text(path)}" if path else ""


def _field(path: tuple) -> str:
    return f" (field {_field_text(path)})" if path else ""


# --- JSON ------------------------------------------------------------------------------------------

def _json_depth_ok(text: str) -> int:
    """Deepest bracket nesting outside strings, counted without parsing (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


class _RepeatedKey(Exception):
    """Raised by the JSON parser's pair hook; turned into a ConfigError with line numbers."""


def _no_repeats(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def _json_repeat(text: str):
    """(path, key, first line, second line) of the first key given twice in one JSON object,
    or None. One pass over the text: `json` says that a key repeats, not where. Only the
    prefix the parser accepted is read before the repeat is found."""
    frames: list = []      # per open bracket: [{key: line} (None in a list), path, key or index]
    line, i, n = 1, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        elif ch == '"':
            end = i + 1
            while end < n and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            j = end + 1
            while j < n and text[j] in " \t\r":
                j += 1
            if frames and frames[-1][0] is not None and j < n and text[j] == ":":
                try:
                    key = json.loads(text[i:end + 1])
                except ValueError:
                    return None
                keys, path, _ = frames[-1]
                if key in keys:
                    return path, key, keys[key], line
                keys[key] = line
                frames[-1][2] = key
            i = end
        elif ch in "[{":
            path = frames[-1][1] + (frames[-1][2],) if frames else ()
            frames.append([{} if ch == "{" else None, path, 0])
        elif ch in "]}" and frames:
            frames.pop()
        elif ch == "," and frames and frames[-1][0] is None:
            frames[-1][2] += 1
        i += 1
    return None


def _parse_json(text: str, filename: str, field: str = FIELD):
    if _json_depth_ok(text) > MAX_DEPTH:
        raise _refuse(filename, f"nests values more than {MAX_DEPTH} levels deep", field)
    try:
        return json.loads(text, object_pairs_hook=_no_repeats,
                          parse_int=lambda t: int(_check_number_text(t, filename, field)),
                          parse_float=lambda t: float(_check_number_text(t, filename, field)))
    except _RepeatedKey as repeat:
        found = _json_repeat(text)
        path, key, first, second = found if found else ((), repeat.args[0], None, None)
        lines = f", at lines {first} and {second}" if first else ""
        raise _refuse(filename, f"has the key {excerpt(key, 60)} twice{_in(path)}{lines}", field,
                      "give each key once (the last one would silently win)") from None
    except json.JSONDecodeError as error:
        raise ConfigError(field, filename, "fix the file and try again",
                          problem=f"is not valid JSON: {error.msg} at line {error.lineno}, "
                                  f"column {error.colno}") from None


# --- YAML ------------------------------------------------------------------------------------------

_YAML = "tag:yaml.org,2002:"
STR_TAG, MERGE_TAG = _YAML + "str", _YAML + "merge"
# What the safe loader makes of a tag's text, in words (for keys that are not text and values
# that do not convert). Numbers are length-capped before any conversion.
TAG_WORDS = {_YAML + "int": "a whole number", _YAML + "float": "a number",
             _YAML + "bool": "true or false", _YAML + "null": "null (nothing)",
             _YAML + "timestamp": "a date", _YAML + "binary": "base64 bytes",
             _YAML + "set": "a set", _YAML + "omap": "an ordered mapping",
             _YAML + "pairs": "a list of pairs", _YAML + "seq": "a list",
             _YAML + "map": "a mapping", MERGE_TAG: "a merge marker (<<)",
             _YAML + "value": "a value marker (=)"}
NUMBER_TAGS = (_YAML + "int", _YAML + "float")
# Scalars whose text the safe loader converts, and can fail to ('0x_', '!!int abc',
# '2024-13-45', '!!bool maybe'): each is tried on its own first, to name its line and field.
CONVERTED_TAGS = NUMBER_TAGS + (_YAML + "bool", _YAML + "timestamp", _YAML + "binary")
CONVERSION_ERRORS = (yaml.YAMLError, ValueError, TypeError, KeyError, IndexError,
                     AttributeError, OverflowError)
_CONVERTER = yaml.constructor.SafeConstructor()    # stateless for scalars


def _scalar_tag(event) -> str:
    """The tag the safe loader will give a scalar event, as its composer decides it: an
    explicit tag (`!!int`), else what YAML 1.1 reads plain text as (`1_000`, `0x1F`, `0b101`,
    `017` and `1:30` are ints, `1.5e3` and `1:30.5` floats), else text."""
    if event.tag not in (None, "!"):
        return event.tag
    if event.implicit[0]:
        value, resolvers = event.value, yaml.SafeLoader.yaml_implicit_resolvers
        for tag, regexp in resolvers.get(value[:1], []) + resolvers.get(None, []):
            if regexp.match(value):
                return tag
    return STR_TAG


def _check_yaml_events(text: str, filename: str, field: str = FIELD) -> None:
    """Walk the YAML event stream (iterative, nothing expanded) and refuse deep nesting,
    aliases beyond MAX_ALIASES and over-long scalars and numbers before composing anything."""
    depth = aliases = 0
    for event in yaml.parse(text, Loader=FAST_LOADER):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise _refuse(filename, f"nests values more than {MAX_DEPTH} levels deep"
                                        f"{_where_mark(event.start_mark)}", field)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _refuse(filename, f"uses more than {MAX_ALIASES} YAML aliases"
                                        f"{_where_mark(event.start_mark)}", field)
        elif isinstance(event, yaml.ScalarEvent):
            value = event.value
            if len(value) > MAX_SCALAR_CHARS:
                raise _refuse(filename, f"has a value of {len(value):,} characters (at most "
                                        f"{MAX_SCALAR_CHARS:,}){_where_mark(event.start_mark)}",
                              field)
            # Every number form: a 4,000-character hex, octal, binary or base-60 literal is
            # an int of thousands of bits that no float option can hold.
            if len(value) > MAX_NUMBER_CHARS and _scalar_tag(event) in NUMBER_TAGS:
                raise _refuse(filename, f"has a number of {len(value):,} characters (at most "
                                        f"{MAX_NUMBER_CHARS}){_where_mark(event.start_mark)}",
                              field, NUMBER_ALLOWED)


def _expanded_size(node, seen: dict) -> int:
    """Nodes the composed document becomes once aliases are followed (memoised per node,
    so this costs one visit per distinct node however often it is aliased)."""
    key = id(node)
    if key in seen:
        return seen[key]
    seen[key] = MAX_NODES + 1          # a node that contains itself: refuse
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, seen) + _expanded_size(v, seen) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, seen) for v in node.value)
    else:
        size = 1
    seen[key] = min(size, MAX_NODES + 1)
    return seen[key]


def _check_nodes(root, filename: str, field: str = FIELD) -> None:
    """Walk the composed document (each node once, however often aliased) and refuse, with
    line, column and field: a key that is not text, a key given twice in one mapping (the
    last would silently win), a list or mapping as a key, a tag the safe loader does not
    build, and a value that YAML cannot convert."""
    stack, seen = [(root, ())], set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        where = _where_mark(node.start_mark)
        if node.tag is None or node.tag not in yaml.SafeLoader.yaml_constructors:
            if node.tag in TAG_WORDS:      # '<<' or '=' where a value belongs
                raise _refuse(filename, f"has {excerpt(node.value, 40)}{where}{_field(path)}, "
                              f"which YAML reads as {TAG_WORDS[node.tag]}", field,
                              "quote it to make it text")
            raise _refuse(filename, f"uses a YAML tag{where}{_field(path)}: "
                          f"{excerpt(node.tag, 60)}", field,
                          "only plain YAML values are allowed (no object tags)")
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            children = []
            for key, value in node.value:
                if key.tag == MERGE_TAG:     # `<<: *defaults` copies a mapping's keys in
                    children.append((value, path))
                    continue
                where = _where_mark(key.start_mark)
                if not isinstance(key, yaml.ScalarNode):
                    kind = "list" if isinstance(key, yaml.SequenceNode) else "mapping"
                    raise _refuse(filename, f"has a {kind} as a key (a complex key){where}"
                                  f"{_in(path)}", field,
                                  "keys are names, e.g. lr: 0.01; a '?' line starts a "
                                  "complex key")
                if key.tag != STR_TAG:
                    words = TAG_WORDS.get(key.tag, f"the tag {excerpt(key.tag, 40)}")
                    raise _refuse(filename, f"has the key {excerpt(key.value, 40)}{where}"
                                  f"{_in(path)}, which YAML reads as {words}, not text", field,
                                  "keys are names; quote a key that YAML would read as "
                                  "something else, e.g. '1': or 'on':")
                line = key.start_mark.line + 1
                if key.value in first:
                    raise _refuse(filename, f"has the key {excerpt(key.value, 60)} twice"
                                  f"{_in(path)}, at lines {first[key.value]} and {line}",
                                  field, "give each key once (the last one would silently "
                                         "win)")
                first[key.value] = line
                children.append((value, path + (key.value,)))
            stack.extend(reversed(children))       # reported in the file's order
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed([(item, path + (i,)) for i, item in enumerate(node.value)]))
        elif node.tag in CONVERTED_TAGS:
            try:
                yaml.SafeLoader.yaml_constructors[node.tag](_CONVERTER, node)
            except CONVERSION_ERRORS:
                raise _refuse(filename, f"has {excerpt(node.value, 40)}{where}{_field(path)}, "
                              f"which is not {TAG_WORDS[node.tag]}", field,
                              "fix the value, or quote it to make it text") from None


def _parse_yaml(text: str, filename: str, field: str = FIELD):
    loader = None
    try:
        _check_yaml_events(text, filename, field)
        loader = FAST_LOADER(text)     # its reader refuses control characters (ReaderError)
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_NODES:
            raise _refuse(filename, f"expands to more than {MAX_NODES:,} values through its "
                                    "YAML aliases", field)
        _check_nodes(node, filename, field)
        try:
            return loader.construct_document(node)
        except CONVERSION_ERRORS[1:] as error:     # not expected after the checks above
            raise ConfigError(field, filename, "fix the file and try again",
                              problem=f"is not valid YAML: a value could not be read "
                                      f"({type(error).__name__})") from None
    except yaml.constructor.ConstructorError as error:     # e.g. `<<: 1` (merges a number)
        raise ConfigError(field, filename, "fix the file and try again",
                          problem=f"is not valid YAML: {error.problem}{_where(error)}") from None
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or _reader_problem(error) or "malformed YAML"
        raise ConfigError(field, filename, "fix the file and try again",
                          problem=f"is not valid YAML: {problem}{_where(error)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _reader_problem(error) -> str:
    """A reader's refusal (a control character), with the character and its offset."""
    if not isinstance(error, yaml.reader.ReaderError):
        return ""
    return f"character {error.character:#06x} at offset {error.position}: {error.reason}"


def _where_mark(mark) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _where(error) -> str:
    mark = getattr(error, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
