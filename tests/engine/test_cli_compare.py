"""`python -m engine compare` end to end on tiny real runs: the verdicts it prints are the
groups' numbers recomputed here from `show`, and bad flags get one line naming the flag."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
TOY = ["--dataset", "spirals", "--toy-samples", "64", "--width", "8", "--batch-size", "16",
       "--epochs", "2", "--lr", "0.05", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    env = {**os.environ, "TRAINLAB_HOME": str(tmp / "home"), "TRAINLAB_DB": str(tmp / "runs.db"),
           "TRAINLAB_DATA_DIR": str(tmp / "data")}

    def call(*args):
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    return call


@pytest.fixture(scope="module")
def grid(cli):
    """adam and sgd over seeds 1 and 2, tagged 'grid'; {id: (optimizer, seed, final %)}."""
    for opt in ("adam", "sgd"):
        for seed in ("1", "2"):
            done = cli("run", *TOY, "--optimizer", opt, "--seed", seed, "--tags", "grid")
            assert done.returncode == 0, done.stderr
    ids = [line.split()[0] for line in cli("runs").stdout.splitlines()[1:]]
    out = {}
    for rid in ids:
        shown = json.loads(cli("show", rid).stdout)
        out[rid] = (shown["config"]["optimizer"], shown["config"]["seed"],
                    100 * shown["final_metrics"]["val/acc"])
    return out


def test_compare_json_matches_the_runs_final_accuracies(cli, grid):
    done = cli("compare", "tag:grid", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["interval"] == "t"
    groups = {g["name"]: g for g in result["groups"]}
    assert set(groups) == {"adam", "sgd"} and result["summary"] == "final:val/acc"
    finals = {opt: np.array([v for o, s, v in sorted(grid.values(), key=lambda t: t[1])
                             if o == opt]) for opt in ("adam", "sgd")}
    for opt, x in finals.items():
        g = groups[opt]
        assert g["n"] == 2 and g["mean"] == pytest.approx(x.mean())
        assert g["std"] == pytest.approx(x.std(ddof=1))
        if g["std"] > 0:
            lo, hi = stats.t.interval(0.95, 1, loc=x.mean(), scale=stats.sem(x))
            assert (g["ci_low"], g["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    (pair,) = result["pairs"]
    a, b = finals[pair["a"]], finals[pair["b"]]
    assert pair["diff"] == pytest.approx(a.mean() - b.mean())
    assert {"ci_low", "ci_high", "p_welch", "p_holm", "effect_size", "prob_superiority",
            "verdict"} <= set(pair)
    if pair["p_welch"] is not None:
        assert pair["p_welch"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
        assert pair["p_holm"] == pytest.approx(pair["p_welch"])      # one comparison
    assert pair["paired_n"] == 2                                    # seeds 1 and 2 shared
    assert pair["verdict"].startswith((f"Probably real: {pair['a']} ", "Can't tell with "))


def test_compare_text_by_field_with_baseline_and_ids(cli, grid):
    ids = list(grid)
    done = cli("compare", *ids, "--group-by", "seed", "--summary", "best",
               "--baseline", "seed 1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "best validation accuracy (%) by seed (4 runs, 2 groups)"
    assert any(line.startswith("seed 1 ") for line in lines)
    boot = cli("compare", *ids, "--group-by", "seed", "--interval", "bootstrap", "--json")
    assert json.loads(boot.stdout)["interval"] == "bootstrap"
    assert "pairs (Welch p Holm-corrected over 1 comparisons):" in lines
    assert any("seed 2" in line and "seed 1" in line for line in lines[-2:])


def test_time_to_target_names_runs_that_never_reach_it(cli, grid):
    done = cli("compare", "tag:grid", "--summary", "steps_to:val/acc:101", "--json")
    assert done.returncode == 0, done.stderr
    groups = json.loads(done.stdout)["groups"]
    assert all(g["n"] == 0 for g in groups)
    assert all(r["reason"].startswith("never reached 101%") for g in groups for r in g["runs"])


@pytest.mark.parametrize("args,message", [
    (["--summary", "last:val/acc"], "--summary: 'last' is not allowed; allowed: final, best"),
    (["--summary", "final:val/accuracy"], "--summary: metric 'val/accuracy' has no values"),
    (["--summary", "steps_to:val/acc"], "--summary: steps_to needs a finite target"),
    (["--group-by", "colour"], "--group-by: 'colour' is not a config field; allowed: "),
    (["--baseline", "rmsprop"], "--baseline: 'rmsprop' is not a group; allowed: 'adam', 'sgd'"),
    (["--smoothing", "1.5", "--summary", "steps_to:val/acc:50"],
     "--smoothing: 1.5 must be >= 0 and < 1"),
    (["--smoothing", "x"], "--smoothing: 'x' is not a number"),
    (["--interval", "z"], "--interval: 'z' is not allowed; allowed: t, bootstrap"),
])
def test_bad_flags_exit_2_with_one_line_naming_the_flag(cli, grid, args, message):
    done = cli("compare", "tag:grid", *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_unknown_tag_says_which_tags_exist(cli, grid):
    done = cli("compare", "tag:nope")
    assert done.returncode == 2
    assert "run: 'tag:nope' matches no stored run; tags stored: grid" in done.stderr


def test_export_zip_with_a_grouping_holds_the_verdicts(cli, grid, tmp_path):
    import zipfile
    done = cli("export", *grid, "--format", "zip", "--out", str(tmp_path), "--name", "grid",
               "--group-by", "optimizer")
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(tmp_path / "grid.zip") as zf:
        names = set(zf.namelist())
        result = json.loads(zf.read("grid-verdicts.json"))
    assert {"grid-verdicts.csv", "grid-verdicts.json", "grid-strip.html"} <= names
    assert {g["name"] for g in result["groups"]} == {"adam", "sgd"}
    bad = cli("export", *grid, "--format", "zip", "--group-by", "colour")
    assert bad.returncode == 2 and "--group-by: 'colour' is not a config field" in bad.stderr


def test_change_one_thing_twin_keeps_the_seed_and_pairs_with_its_run(cli, grid):
    adam = next(rid for rid, (opt, seed, _) in grid.items() if opt == "adam" and seed == 2)
    done = cli("run", "--like", adam, "--optimizer", "momentum", "--seeds", "2", "--tags",
               "twins", "--quiet")
    assert done.returncode == 0, done.stderr
    twins = [json.loads(cli("show", line.split()[0]).stdout)
             for line in cli("runs").stdout.splitlines()[1:3]]
    base = json.loads(cli("show", adam).stdout)["config"]
    changed = [{k: v for k, v in twin["config"].items() if base.get(k, v) != v}
               for twin in sorted(twins, key=lambda t: t["config"]["seed"])]
    assert changed == [{"optimizer": "momentum"}, {"optimizer": "momentum", "seed": 3}]
    bad = cli("run", "--like", "nope")
    assert bad.returncode == 2 and "run: 'nope' matches 0 stored runs" in bad.stderr
