"""Hostile or odd input refused at the door, cheaply and with one clear message: config-file
bombs, gzip bombs in the data directory, invisible characters in names, devices this machine
does not have, numbers in other scripts, and the CLI's smaller holes."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from engine import config
from engine.config import ConfigError, RunConfig
from engine.configfile import parse_config_bytes

ROOT = Path(__file__).resolve().parents[2]

LAUGHS = b"""a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""
# Few aliases, each fanning out: 6 aliases per level, 5 levels = 30 aliases, 6^5 = 7,776 leaves
# times 8 lines of 8: past the expanded-size cap without passing the alias cap.
FANOUT = b"a: &a [1,2,3,4,5,6,7,8]\n" + b"".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 6)}]\n".encode()
    for i in range(5))

BOMBS = {
    "laughs.yaml": (LAUGHS, "more than 32 YAML aliases"),
    "fanout.yaml": (FANOUT, "expands to more than"),
    "deep.yaml": (b"lr: " + b"[" * 10_000 + b"]" * 10_000, "levels deep"),
    "deep.json": (b'{"lr": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "levels deep"),
    "digits.yaml": (b"epochs: " + b"9" * 5000, "characters"),
    "digits.json": (b'{"epochs": ' + b"9" * 5000 + b"}", "a number of 5,000 characters"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_config_bombs_are_refused_with_little_memory_and_a_short_message(name):
    raw, words = BOMBS[name]
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as caught:
            RunConfig.from_dict(parse_config_bytes(raw, name))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    print(f"\n{name} ({len(raw):,} bytes): peak {peak / 1e6:.2f} MB; {message[:100]}")
    assert words in message and name in message
    assert len(message) < 400                      # never a copy of the hostile value
    assert peak < 8e6                              # a few MB, not gigabytes


def test_mixed_key_types_and_byte_order_marks():
    with pytest.raises(ConfigError, match="'mixed.yaml' has the key '1' at line 1, column 1, "
                                          "which YAML reads as a whole number, not text"):
        RunConfig.from_dict(parse_config_bytes(b"1: a\nlr: 0.1\n", "mixed.yaml"))
    for name, raw in (("bom.json", b'\xef\xbb\xbf{"lr": 0.1}'), ("bom.yaml", b"\xef\xbb\xbflr: 0.1")):
        assert parse_config_bytes(raw, name) == {"lr": 0.1}     # the same rule for both


# Issue 19: every number form YAML 1.1 reads, length-capped before it is converted. Each of
# these used to reach float() as an int of thousands of bits (OverflowError in config.coerce)
# or to fail inside PyYAML's own conversion (ValueError, IndexError).
HUGE_NUMBERS = {
    "hex": b"lr: 0x" + b"f" * 4090,
    "binary": b"lr: 0b" + b"1" * 2000,
    "octal": b"lr: 0" + b"7" * 2000,
    "base 60": b"lr: 1" + b":59" * 1300,
    "separators": b"lr: 1" + b"_000" * 1000,
    "tagged int": b'lr: !!int "0x' + b"f" * 4000 + b'"',
    "tagged float": b'lr: !!float "1' + b"0" * 400 + b'.5"',
    "long fraction": b"lr: 0." + b"1" * 400,
}


@pytest.mark.parametrize("form", sorted(HUGE_NUMBERS))
def test_yaml_numbers_of_every_form_are_length_capped_before_conversion(form):
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict(parse_config_bytes(HUGE_NUMBERS[form], "n.yaml"))
    message = str(caught.value)
    assert "config file: 'n.yaml' has a number of" in message
    assert "(at most 40) at line 1, column 5" in message and len(message) < 300


def test_coerce_names_the_field_for_an_int_too_large_for_a_float():
    for value in (16 ** 4090, -(10 ** 400)):
        with pytest.raises(ConfigError, match="^lr: .{1,80} is not allowed; must be a finite"):
            config.coerce("lr", value)
        with pytest.raises(ConfigError, match="^lr: "):
            RunConfig.from_dict({"lr": value})
    with pytest.raises(ConfigError, match="unknown option"):
        config.coerce(["lr"], 0.1)               # a list as a name: was a TypeError


# Values whose text PyYAML converts, and can fail to: each was a ValueError, IndexError,
# KeyError or AttributeError out of yaml.safe_load.
UNREADABLE = [
    (b"lr: 0b_", "'0b_'", "a whole number"),
    (b"lr: 0x_", "'0x_'", "a whole number"),
    (b"lr: !!int abc", "'abc'", "a whole number"),
    (b'lr: !!int ""', "''", "a whole number"),
    (b"lr: !!float abc", "'abc'", "a number"),
    (b"lr: !!bool maybe", "'maybe'", "true or false"),
    (b"lr: !!timestamp soon", "'soon'", "a date"),
    (b"lr: 2024-13-45", "'2024-13-45'", "a date"),
]


@pytest.mark.parametrize("raw, shown, kind", UNREADABLE, ids=[r.decode() for r, _, _ in UNREADABLE])
def test_values_yaml_cannot_convert_name_line_and_field(raw, shown, kind):
    with pytest.raises(ConfigError) as caught:
        parse_config_bytes(raw, "v.yaml")
    assert str(caught.value).startswith(f"config file: 'v.yaml' has {shown} at line 1, column 5 "
                                        f"(field lr), which is not {kind}")


REPEATS = [
    (b"lr: 0.1\nepochs: 2\nlr: 0.2\n", "c.yaml", "has the key 'lr' twice, at lines 1 and 3"),
    (b'{"lr": 0.1,\n "lr": 0.2}', "c.json", "has the key 'lr' twice, at lines 1 and 2"),
    (b"base:\n  lr: 1\n  lr: 2\n", "c.yaml", "has the key 'lr' twice in base, at lines 2 and 3"),
    (b'{"runs": [{"name": "a"},\n {"name": "b",\n  "name": "c"}]}', "c.json",
     "has the key 'name' twice in runs[1], at lines 2 and 3"),
]


@pytest.mark.parametrize("raw, name, words", REPEATS, ids=[w for _, _, w in REPEATS])
def test_a_key_given_twice_is_refused_with_both_lines(raw, name, words):
    with pytest.raises(ConfigError) as caught:
        parse_config_bytes(raw, name)
    assert f"'{name}' {words}" in str(caught.value) and "give each key once" in str(caught.value)


def test_a_complex_key_is_called_what_it_is_not_a_tag():
    for raw, kind in ((b"? [lr, epochs]\n: 1\n", "list"), (b"? {lr: 1}\n: 1\n", "mapping")):
        with pytest.raises(ConfigError) as caught:
            parse_config_bytes(raw, "k.yaml")
        assert f"has a {kind} as a key (a complex key) at line 1, column 3" in str(caught.value)
        assert "tag" not in str(caught.value)


def test_experiment_files_refuse_non_text_and_repeated_keys_with_file_line_and_field(tmp_path):
    from engine import experiments
    head = b"id: x\ntitle: t\nquestion: q\n"
    for raw, words in (
            (b"1: a\nx: b\n", "has the key '1' at line 1, column 1, which YAML reads as a whole number"),
            (b"null: a\n", "has the key 'null' at line 1, column 1, which YAML reads as null"),
            (head + b"base: {1: 2}\nruns: [{name: a}]\n", "key '1' at line 4, column 8 in base"),
            (head + b"runs: [{name: a, 3: 4, x: 1}]\n", "key '3' at line 4, column 18 in runs[0]"),
            (head + b"runs: [{name: a}]\ngrid: {1.5: [1]}\n", "key '1.5' at line 5, column 8 in grid"),
            (head + b"runs: [{name: a}]\nseeds: 1\nseeds: 2\n", "key 'seeds' twice, at lines 5 and 6"),
    ):
        with pytest.raises(ConfigError) as caught:
            experiments.parse_experiment(raw, "exp.yaml")
        assert str(caught.value).startswith("experiment file: 'exp.yaml' ") and words in str(caught.value)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * 70_000 + b"\n")
    with pytest.raises(ConfigError, match="experiment file: .*big.yaml' is 70,003 bytes"):
        experiments.load_file(big)
    with pytest.raises(ConfigError, match="experiment file: .*nope.yaml' does not exist"):
        experiments.load_file(tmp_path / "nope.yaml")


def test_cli_refuses_a_huge_hex_number_in_a_config_file(tmp_path):
    path = tmp_path / "hex.yaml"
    path.write_bytes(HUGE_NUMBERS["hex"])
    done = cli(tmp_path, "run", "--config", str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "error: config file: 'hex.yaml' has a number of 4,092 characters" in done.stderr
    assert not (tmp_path / "home").exists()


def test_error_messages_show_only_an_excerpt_of_a_huge_value():
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict({"optimizer": "x" * 1_000_000})
    assert len(str(caught.value)) < 300 and "..." in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict({"width": list(range(100_000))})
    assert len(str(caught.value)) < 300


def run_cli_watching_memory(args, env, limit_mb=600, timeout=60):
    """The CLI in a subprocess whose resident memory is watched (killed past limit_mb)."""
    process = subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def watch():
        while process.poll() is None:
            try:
                for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        peak[0] = max(peak[0], int(line.split()[1]) // 1024)
            except OSError:
                return
            if peak[0] > limit_mb:
                process.kill()
            time.sleep(0.02)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = process.communicate(timeout=timeout)
    watcher.join(1)
    return process.returncode, out, err, peak[0]


@pytest.mark.parametrize("name", ["laughs.yaml", "deep.json"])
def test_cli_refuses_config_bombs_without_growing(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(BOMBS[name][0])
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home")}
    code, _, err, peak = run_cli_watching_memory(["run", "--config", str(path)], env)
    print(f"\ncli {name}: exit {code}, peak RSS {peak} MB; {err.strip()[:120]}")
    assert code == 2 and BOMBS[name][1] in err and "Traceback" not in err
    assert not (tmp_path / "home" / "runs.db").exists()     # nothing written


# --- archives in the data directory ------------------------------------------------------------

def test_gzip_bombs_in_the_data_directory_are_refused_after_their_header(tmp_path):
    from engine.data import DataCorruptError, read_idx
    zeros = tmp_path / "zeros.gz"                  # 1 GB of zeros: magic number 0
    huge = tmp_path / "huge.gz"                    # a real header declaring 10^9 images
    longer = tmp_path / "longer.gz"                # a small header, then far more data
    chunk = bytes(1 << 20)
    with gzip.open(zeros, "wb", compresslevel=1) as f:
        for _ in range(1024):
            f.write(chunk)
    with gzip.open(huge, "wb", compresslevel=1) as f:
        f.write((0x0803).to_bytes(4, "big") + (10**9).to_bytes(4, "big")
                + (28).to_bytes(4, "big") * 2)
        for _ in range(64):
            f.write(chunk)
    with gzip.open(longer, "wb", compresslevel=1) as f:
        f.write((0x0803).to_bytes(4, "big") + (10).to_bytes(4, "big")
                + (28).to_bytes(4, "big") * 2)
        for _ in range(64):
            f.write(chunk)
    for path, words in ((zeros, "magic number"), (huge, "not a dataset file"),
                        (longer, "holds more bytes")):
        tracemalloc.start()
        try:
            with pytest.raises(DataCorruptError, match=words):
                read_idx(path, 0x0803)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        print(f"\n{path.name} ({path.stat().st_size:,} bytes on disk): peak {peak / 1e6:.2f} MB")
        assert peak < 8e6


def test_an_empty_dataset_fails_with_its_own_message(tmp_path):
    from engine.data import DataCorruptError, _read_idx_dataset
    from tests.datafiles import write_idx_dataset
    write_idx_dataset(tmp_path, "mnist", n_train=0, n_test=4)
    with pytest.raises(DataCorruptError, match="holds no images"):
        _read_idx_dataset("mnist", tmp_path)


def test_a_partly_extracted_cifar_folder_counts_as_missing(tmp_path):
    from engine.datafiles import CIFAR_FOLDER, missing_files
    (tmp_path / CIFAR_FOLDER).mkdir()
    (tmp_path / CIFAR_FOLDER / "data_batch_1").write_bytes(b"x")
    message = missing_files(RunConfig(dataset="cifar10", data_dir=str(tmp_path),
                                      model="three-layer-convnet"))
    assert message and "data_batch_2" in message


# --- names, tags, devices, numbers -------------------------------------------------------------

INVISIBLE = ["\u009b", "\u0085", "\u2028", "\u202e", "\u200b", "\x07"]


@pytest.mark.parametrize("char", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_names_and_tags_refuse_control_format_and_bidi_characters(char):
    with pytest.raises(ConfigError, match=f"name: .* contains control characters \\(U\\+{ord(char):04X}\\)"):
        config.parse_run_name(f"adam{char}run")
    with pytest.raises(ConfigError, match="tags: .* contains control characters"):
        config.parse_tags(["ok", f"bad{char}tag"])


def test_a_device_this_machine_lacks_is_refused_before_anything_is_stored(tmp_path):
    import torch
    from engine.jobs import check_device
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for device in ("cuda", "cuda:99"):
        with pytest.raises(ConfigError, match=f"device: '{device}' is not on this machine; "
                                              "this machine has: auto, cpu"):
            check_device(device)
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "engine", "run", "--dataset", "spirals",
                           "--device", "cuda:99"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "device: 'cuda:99' is not on this machine" in done.stderr
    assert not (tmp_path / "home" / "runs.db").exists()


@pytest.mark.parametrize("text", ["１０", "١٠", "1_0", "1" * 50, "٣.٥"])
def test_numbers_are_ascii_digits_only(text):
    with pytest.raises(ConfigError, match="epochs"):
        config.coerce("epochs", text)
    with pytest.raises(ConfigError, match="lr"):
        config.coerce("lr", text)


def test_over_budget_cnn_names_the_field_that_is_too_large():
    with pytest.raises(ConfigError, match="^channels: "):
        RunConfig(dataset="cifar10", model="preact-resnet", channels=[1024, 1024, 1024],
                  depth=10)


def cli(tmp_path, *args):
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_small_holes(tmp_path):
    done = cli(tmp_path, "run", "--dataset", "spirals", "--lr", "-1e-8")
    assert done.returncode == 2 and "lr: -1e-08 is not allowed" in done.stderr
    started = time.monotonic()
    done = cli(tmp_path, "run", "--dataset", "spirals", "--tags", "ok,bad\u202etag")
    assert done.returncode == 2 and "tags:" in done.stderr and "control characters" in done.stderr
    assert not (tmp_path / "home").exists()          # refused before the store was created
    print(f"\nbad tag refused in {time.monotonic() - started:.1f} s")
    done = cli(tmp_path, "run", "--help")
    assert done.stdout.count("default: 256") == 1      # batch size's default, printed once
