"""Reading run configs from files (JSON or YAML), for the CLI's --config and the app's upload.

This module owns the safety rules for config files: a size cap, UTF-8 text only (a byte-order
mark is accepted in both formats), JSON parsed by `json`, YAML only by the safe loader (which
refuses object tags such as `!!python/object`), and error messages that give the line and
column. A hostile file is refused cheaply, before anything is built from it: YAML is first
read as an event stream (no recursion, no expansion) with caps on aliases, nesting depth and
scalar length, then composed and its expanded size counted with aliases followed (a
"billion laughs" file of 400 bytes expands to 10^9 nodes); JSON gets the same depth and
number-length caps. It returns the plain dict; `RunConfig.from_dict` then checks every field.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from engine.config import ConfigError, RunConfig

MAX_CONFIG_BYTES = 64 * 1024   # a full config is about 1 KB; anything far bigger is not one
MAX_DEPTH = 8                  # a config is a flat mapping (lists one level down)
MAX_ALIASES = 32               # YAML aliases (*name); a config needs none
MAX_NODES = 10_000             # values after following aliases; a full config has ~100
MAX_SCALAR_CHARS = 4096        # one value (a data_dir path is the longest legitimate one)
MAX_NUMBER_CHARS = 40          # digits of one number
SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
FIELD = "config file"


def parse_config_bytes(raw: bytes, filename: str) -> dict:
    """Parse the bytes of a config file named `filename` into a dict, or raise ConfigError."""
    kind = SUFFIXES.get(Path(filename).suffix.lower())
    if kind is None:
        raise ConfigError(FIELD, filename, "allowed: files ending in .json, .yaml or .yml")
    if len(raw) == 0:
        raise ConfigError(FIELD, filename, "it must hold a mapping of option names to values",
                          problem="is empty")
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(FIELD, filename, f"at most {MAX_CONFIG_BYTES:,} bytes are allowed",
                          problem=f"is {len(raw):,} bytes")
    if b"\x00" in raw:
        raise ConfigError(FIELD, filename, "a config file is UTF-8 text", problem="is binary")
    try:
        text = raw.decode("utf-8-sig")     # a leading byte-order mark is not content
    except UnicodeDecodeError as error:
        raise ConfigError(FIELD, filename, "a config file is UTF-8 text",
                          problem=f"has a non-UTF-8 byte at offset {error.start}") from None
    data = _parse_json(text, filename) if kind == "json" else _parse_yaml(text, filename)
    if not isinstance(data, dict):
        raise ConfigError(FIELD, filename, "it must hold a mapping of option names to values",
                          problem=f"holds a {type(data).__name__}")
    return data


def load_config_file(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(FIELD, str(path), "give the path of an existing file",
                          problem="does not exist")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(FIELD, str(path), f"at most {MAX_CONFIG_BYTES:,} bytes are allowed",
                          problem=f"is {path.stat().st_size:,} bytes")
    return RunConfig.from_dict(parse_config_bytes(path.read_bytes(), path.name))


def _refuse(filename: str, problem: str):
    return ConfigError(FIELD, filename, "a config file is a flat mapping of option names to "
                       "values", problem=problem)


def _check_number_text(text: str, filename: str) -> str:
    if len(text) > MAX_NUMBER_CHARS:
        raise _refuse(filename, f"has a number of {len(text):,} characters (at most "
                                f"{MAX_NUMBER_CHARS})")
    return text


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


def _parse_json(text: str, filename: str):
    if _json_depth_ok(text) > MAX_DEPTH:
        raise _refuse(filename, f"nests values more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(text, parse_int=lambda t: int(_check_number_text(t, filename)),
                          parse_float=lambda t: float(_check_number_text(t, filename)))
    except json.JSONDecodeError as error:
        raise ConfigError(FIELD, filename, "fix the file and try again",
                          problem=f"is not valid JSON: {error.msg} at line {error.lineno}, "
                                  f"column {error.colno}") from None


def _check_yaml_events(text: str, filename: str) -> None:
    """Walk the YAML event stream (iterative, nothing expanded) and refuse deep nesting,
    aliases beyond MAX_ALIASES and over-long scalars before composing anything."""
    depth = aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise _refuse(filename, f"nests values more than {MAX_DEPTH} levels deep"
                                        f"{_where_mark(event.start_mark)}")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _refuse(filename, f"uses more than {MAX_ALIASES} YAML aliases"
                                        f"{_where_mark(event.start_mark)}")
        elif isinstance(event, yaml.ScalarEvent):
            value = event.value
            if len(value) > MAX_SCALAR_CHARS:
                raise _refuse(filename, f"has a value of {len(value):,} characters (at most "
                                        f"{MAX_SCALAR_CHARS:,}){_where_mark(event.start_mark)}")
            if event.implicit[0] and value.lstrip("+-").replace("_", "").isdigit():
                _check_number_text(value, filename)


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


def _parse_yaml(text: str, filename: str):
    try:
        _check_yaml_events(text, filename)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None and _expanded_size(node, {}) > MAX_NODES:
            raise _refuse(filename, f"expands to more than {MAX_NODES:,} values through its "
                                    "YAML aliases")
        return yaml.safe_load(text)
    except yaml.constructor.ConstructorError as error:
        raise ConfigError(FIELD, filename, "only plain YAML values are allowed (no object tags)",
                          problem=f"uses a YAML tag{_where(error)}: {error.problem}") from None
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or "malformed YAML"
        raise ConfigError(FIELD, filename, "fix the file and try again",
                          problem=f"is not valid YAML: {problem}{_where(error)}") from None


def _where_mark(mark) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _where(error) -> str:
    mark = getattr(error, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
