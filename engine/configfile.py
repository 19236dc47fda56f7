"""Reading run configs from files (JSON or YAML), for the CLI's --config and the app's upload.

This module owns the safety rules for config files: a size cap, UTF-8 text only, JSON parsed
by `json`, YAML only by `yaml.safe_load` (which refuses object tags such as
`!!python/object`), and error messages that give the line and column. It returns the plain
dict; `RunConfig.from_dict` then checks every field.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from engine.config import ConfigError, RunConfig

MAX_CONFIG_BYTES = 64 * 1024   # a full config is about 1 KB; anything far bigger is not one
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
        text = raw.decode("utf-8")
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


def _parse_json(text: str, filename: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(FIELD, filename, "fix the file and try again",
                          problem=f"is not valid JSON: {error.msg} at line {error.lineno}, "
                                  f"column {error.colno}") from None


def _parse_yaml(text: str, filename: str):
    try:
        return yaml.safe_load(text)
    except yaml.constructor.ConstructorError as error:
        raise ConfigError(FIELD, filename, "only plain YAML values are allowed (no object tags)",
                          problem=f"uses a YAML tag{_where(error)}: {error.problem}") from None
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or "malformed YAML"
        raise ConfigError(FIELD, filename, "fix the file and try again",
                          problem=f"is not valid YAML: {problem}{_where(error)}") from None


def _where(error) -> str:
    mark = getattr(error, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
