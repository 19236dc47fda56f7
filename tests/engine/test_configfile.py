"""Config files: JSON and YAML read safely, every malformed or hostile file refused by name."""

import pytest

from engine.config import ConfigError, RunConfig
from engine.configfile import MAX_CONFIG_BYTES, load_config_file, parse_config_bytes


def test_json_and_yaml_give_the_same_config(tmp_path):
    (tmp_path / "a.json").write_text('{"optimizer": "adam", "width": [64, 32], "depth": 2}')
    (tmp_path / "a.yaml").write_text("optimizer: adam\nwidth: [64, 32]\ndepth: 2\n")
    from_json, from_yaml = load_config_file(tmp_path / "a.json"), load_config_file(tmp_path / "a.yaml")
    assert from_json == from_yaml == RunConfig(optimizer="adam", width=[64, 32], depth=2)


BAD_FILES = [
    (b'{"lr": 0.1,}', "a.json", "not valid JSON: Expecting property name enclosed in double "
                                "quotes at line 1, column 12"),
    (b'{\n  "lr": 0.1\n  "depth": 3\n}', "a.json", "at line 3, column 3"),
    (b"lr: [0.1\n", "a.yaml", "not valid YAML"),
    (b"!!python/object/apply:os.system ['touch /tmp/pwned']", "a.yaml", "uses a YAML tag"),
    (b"lr: !!python/name:os.system\n", "a.yml", "uses a YAML tag at line 1, column 5"),
    (b"", "a.json", "is empty"),
    (b"lr: 0.1", "a.txt", "allowed: files ending in .json, .yaml or .yml"),
    (b"- 1\n- 2\n", "a.yaml", "holds a list"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "a.json", "is binary"),
    (b"\xff\xfelr", "a.yaml", "non-UTF-8 byte"),
    (b"x" * (MAX_CONFIG_BYTES + 1), "a.json", f"at most {MAX_CONFIG_BYTES:,} bytes"),
]


@pytest.mark.parametrize("raw,name,message", BAD_FILES, ids=[m for _, _, m in BAD_FILES])
def test_bad_config_files_are_refused_with_a_clear_message(raw, name, message):
    with pytest.raises(ConfigError) as caught:
        parse_config_bytes(raw, name)
    assert str(caught.value).startswith(f"config file: {name!r}")
    assert message in str(caught.value)


def test_unknown_and_bad_options_in_a_file_name_the_field(tmp_path):
    (tmp_path / "a.yaml").write_text("optimiser: adam\n")
    with pytest.raises(ConfigError, match="optimiser: 'adam' is not allowed; unknown option"):
        load_config_file(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("lr: .nan\n")
    with pytest.raises(ConfigError, match="lr: nan is not allowed"):
        load_config_file(tmp_path / "b.yaml")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "nope.json")


def test_a_control_character_is_named_with_its_offset():
    with pytest.raises(ConfigError, match=r"character 0x0007 at offset 7: control characters"):
        parse_config_bytes(b"lr: 0.1\x07\n", "x.yaml")
