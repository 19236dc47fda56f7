"""The verdict panel ("Is the difference real?") through AppTest, on a real RunStore: the
table's numbers, the strip plot's dots, one line per pair, runs without a value named."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from streamlit.testing.v1 import AppTest

from app.verdicts_ui import run_in_group
from engine import verdicts
from engine.config import RunConfig
from engine.events import VAL_ACC, VAL_LOSS, Evaluated, RunEnded, RunStarted, RunStatus, StepLoss
from tests.app.conftest import wait_idle

# final validation accuracy (fraction) of each (optimizer, seed); seeds shared by both
FINALS = {("adam", 1): 0.92, ("adam", 2): 0.93, ("adam", 3): 0.941,
          ("sgd", 1): 0.68, ("sgd", 2): 0.69, ("sgd", 3): 0.698}
BATCH = RunConfig().batch_size   # the runs' configs leave the batch size at its default


def add_run(store, optimizer, seed, final, *, diverge_at=None):
    rid = store.create_run({"optimizer": optimizer, "seed": seed, "lr": 0.01},
                           name=f"{optimizer}-{seed}")
    store.record(RunStarted(rid, params=10, device="cpu", total_steps=8, steps_per_epoch=4))
    for step in range(1, 9):
        if diverge_at and step >= diverge_at:
            store.record(StepLoss(rid, step, step / 4, float("nan")))
            store.record(RunEnded(rid, RunStatus.DIVERGED, step, f"loss is nan at step {step}"))
            return rid
        store.record(StepLoss(rid, step, step / 4, 1.0 / step))
        if step % 4 == 0:   # evaluations at steps 4 and 8; the last one is the final value
            store.record(Evaluated(rid, step, step / 4, {VAL_ACC: final - (0.1 if step == 4
                                                                          else 0.0),
                                                         VAL_LOSS: 1.0 / step}))
    store.record(RunEnded(rid, RunStatus.COMPLETED, 8, ""))
    return rid


@pytest.fixture
def filled(store):
    for (opt, seed), final in FINALS.items():
        add_run(store, opt, seed, final)
    add_run(store, "rmsprop", 1, 0.5, diverge_at=3)
    add_run(store, "rmsprop", 2, 0.5, diverge_at=6)
    assert store.flush(10)
    return store


def panel_script():
    from app import services, verdicts_ui
    store = services.get_store()
    runs = sorted(store.list_runs(), key=lambda r: r.created_at)
    verdicts_ui.verdict_panel_ui(store, runs)


def run_panel():
    at = AppTest.from_function(panel_script, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def group_rows(at) -> dict:
    frame = at.table[0].value
    return {row["group"]: row for row in frame.to_dict("records")}


def test_default_groups_everything_but_the_seed_with_exact_numbers(filled):
    at = run_panel()
    assert at.multiselect(key="verdicts_group_by").value == [verdicts.EXCEPT_SEED]
    rows = group_rows(at)
    assert set(rows) == {"adam", "sgd", "rmsprop"}
    adam = 100 * np.array([FINALS[("adam", s)] for s in (1, 2, 3)])
    lo, hi = stats.t.interval(0.95, 2, loc=adam.mean(), scale=stats.sem(adam))
    assert rows["adam"]["n"] == 3 and rows["adam"]["mean"] == pytest.approx(adam.mean())
    assert (rows["adam"]["ci low"], rows["adam"]["ci high"]) == (pytest.approx(lo),
                                                                 pytest.approx(hi))
    assert rows["adam"]["std"] == pytest.approx(adam.std(ddof=1))
    assert rows["rmsprop"]["n"] == 0 and rows["rmsprop"]["diverged"] == 2
    lines = [m.value for m in at.markdown if m.value.startswith("- ")]
    assert "- Probably real: adam ends higher than sgd by 24.1 points (95% CI of the " \
           "difference " in lines[0]
    assert "3 seeds each). A paired test over the 3 shared seeds gives 24.1" in lines[0]
    assert lines[1] == "- Can't compare adam and rmsprop: rmsprop has no run with a value"
    runs = next(t.value for t in at.table if "seed" in t.value.columns)      # run by run
    assert set(runs["run"]) == {"seed 1", "seed 2", "seed 3"}, set(runs["run"])  # not the group
    captions = [c.value for c in at.caption if "has no value" in c.value]
    assert captions[:2] == [
        "rmsprop: seed 1 has no value: diverged at step 3 before any finite val/acc",
        "rmsprop: seed 2 has no value: diverged at step 6: no final value"]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    dots = [t for t in spec["data"] if t["meta"]["kind"] == "runs"]
    assert [len(t["y"]) for t in dots] == [3, 3, 0]
    assert sorted(dots[0]["y"]) == pytest.approx(sorted(adam))


def test_summary_target_baseline_and_field_grouping(filled):
    at = run_panel()
    at.selectbox(key="verdicts_kind").set_value("steps_to").run()
    at.number_input(key=f"verdicts_target_{VAL_ACC}").set_value(90.0).run()
    assert not at.exception
    rows = group_rows(at)
    assert rows["adam"]["n"] == 3 and rows["adam"]["mean"] == 8.0     # crosses 90% at step 8
    assert rows["sgd"]["n"] == 0
    assert "never reached 90% (best 69.8)" in rows["sgd"]["without a value (why)"]
    # the run by run table: each adam run's step, epoch, examples and seconds to 90%
    runs = next(d.value for d in at.table if "steps" in d.value.columns)
    adam = runs[runs["group"] == "adam"]
    assert len(adam) == 3 and adam["steps"].tolist() == [8.0, 8.0, 8.0]
    assert (adam["examples"] == adam["steps"] * BATCH).all()
    assert runs[runs["group"] == "sgd"]["steps"].isna().all()
    at.selectbox(key="verdicts_kind").set_value("final").run()
    at.selectbox(key="verdicts_baseline").set_value("sgd").run()
    lines = [m.value for m in at.markdown if m.value.startswith("- ")]
    assert len(lines) == 2 and lines[0].startswith("- Probably real: adam ends higher than sgd "
                                                   "by 24.1 points")
    at.radio(key="verdicts_interval").set_value("bootstrap").run()
    lines = [m.value for m in at.markdown if m.value.startswith("- ")]
    assert lines[0].startswith("- Probably real: adam ends higher than sgd by 24.1 points "
                               "(95% bootstrap CI ")
    at.multiselect(key="verdicts_group_by").set_value(["seed"]).run()
    assert set(group_rows(at)) == {"seed 1", "seed 2", "seed 3"}
    assert at.selectbox(key="verdicts_baseline").value == verdicts_ui_all_pairs()


def verdicts_ui_all_pairs():
    from app.verdicts_ui import ALL_PAIRS
    return ALL_PAIRS


def test_one_run_asks_for_more(filled):
    def one():
        from app import services, verdicts_ui
        store = services.get_store()
        verdicts_ui.verdict_panel_ui(store, store.list_runs()[:1])
    at = AppTest.from_function(one, default_timeout=30)
    at.run()
    assert not at.exception and "at least two runs" in at.info[0].value


def test_compare_page_shows_the_panel_below_its_chart(filled):
    from pathlib import Path
    page = Path(__file__).resolve().parents[2] / "pages" / "compare.py"
    at = AppTest.from_file(str(page), default_timeout=30)
    at.run()
    at.multiselect(key="compare_runs").set_value([r.id for r in filled.list_runs()]).run()
    assert not at.exception, at.exception
    (panel,) = [e for e in at.expander if e.label == "Is the difference real?"]
    lines = [m.value for m in panel.markdown if m.value.startswith("- ")]
    assert lines[0].startswith("- Probably real: adam ends higher than sgd by 24.1 points")


def test_change_one_thing_launches_twins_with_the_same_seed(services, fake_trainer):
    store, manager = services
    add_run(store, "adam", 5, 0.9)
    add_run(store, "sgd", 5, 0.7)
    store.flush(10)
    at = run_panel()
    adam = next(r for r in store.list_runs() if r.config["optimizer"] == "adam")
    at.selectbox(key="verdicts_twin_run").set_value(adam.id).run()
    at.selectbox(key="verdicts_twin_field").set_value("optimizer").run()
    at.text_input(key="verdicts_twin_value").set_value("adamax").run()
    at.button(key="verdicts_twin_go").click().run()
    assert at.error and "optimizer: 'adamax' is not allowed" in at.error[0].value
    assert len(store.list_runs()) == 2                                # nothing launched
    at.text_input(key="verdicts_twin_value").set_value("momentum").run()
    at.number_input(key="verdicts_twin_seeds").set_value(2).run()
    at.button(key="verdicts_twin_go").click().run()
    assert not at.exception and "Launched 2 twin(s)" in at.success[0].value
    wait_idle(manager)
    from engine import describe
    base = describe.full_config(adam.config)
    twins = sorted((r.config for r in store.list_runs() if r.config["optimizer"] == "momentum"),
                   key=lambda c: c["seed"])
    changed = [{k: v for k, v in t.items() if v != base[k]} for t in twins]
    assert changed == [{"optimizer": "momentum"}, {"optimizer": "momentum", "seed": 6}]


def test_twin_seeds_out_of_range_are_named_and_launch_nothing(services):
    store, _ = services
    add_run(store, "adam", 5, 0.9)
    add_run(store, "sgd", 5, 0.7)
    store.flush(10)
    at = run_panel()
    at.text_input(key="verdicts_twin_value").set_value("momentum").run()
    at.number_input(key="verdicts_twin_seeds").set_value(0).run()
    assert not at.exception
    assert any("Seeds: 0 is not allowed" in e.value for e in at.error)
    assert at.button(key="verdicts_twin_go").disabled
    assert len(store.list_runs()) == 2


def test_the_numbers_behind_the_lines_are_drawn_only_when_opened(filled):
    at = run_panel()
    def pair_tables():
        return [t.value for t in at.table if "p welch" in t.value.columns]
    assert pair_tables() == []                       # folded: nothing sent
    at.session_state["verdicts_numbers_open"] = True
    at.run()
    assert not at.exception
    (pairs,) = pair_tables()
    assert {"a", "b", "diff", "ci low", "ci high", "p holm"} <= set(pairs.columns)
    assert len(pairs) == 3                           # adam, sgd, rmsprop: three pairs


def test_columns_that_say_nothing_are_left_out():
    from app.verdicts_ui import without_idle_columns
    none = pd.DataFrame({"name": ["a", "b"], "without_value": ["", None]})
    some = pd.DataFrame({"name": ["a", "b"], "without_value": ["", "diverged at step 3"]})
    assert list(without_idle_columns(none).columns) == ["name"]
    assert list(without_idle_columns(some).columns) == ["name", "without_value"]
    alone = pd.DataFrame({"group": ["a", "b"], "run": ["a", "b"], "value": [1.0, 2.0]})
    assert list(without_idle_columns(alone).columns) == ["group", "value"]
    seeded = pd.DataFrame({"group": ["a", "a"], "run": ["a · seed 1", "a · seed 2"]})
    assert list(without_idle_columns(seeded).columns) == ["group", "run"]


def test_one_run_groups_get_one_line_not_one_per_pair(store):
    # six optimizers with one run each: 15 pairs, none with a spread to judge
    for i, optimizer in enumerate(("sgd", "adam", "adamw", "rmsprop", "adagrad", "momentum")):
        add_run(store, optimizer, 1, 0.6 + 0.05 * i)
    assert store.flush(10)
    at = run_panel()
    lines = [m.value for m in at.markdown if m.value.startswith("- ")]
    assert lines == ["- Can't tell 15 pairs apart: sgd, adam, adamw, rmsprop, adagrad and "
                     "momentum have one run each, so there is no spread to judge their "
                     "differences (5.0 to 25.0 points) against; 3 or more seeds per group "
                     "would tell"]
    runs = at.table[1].value                  # run by run: each run is its group
    assert "run" not in runs.columns and len(runs) == 6


def test_the_pairs_numbers_leave_out_a_paired_test_that_was_not_made():
    from app.verdicts_ui import pair_numbers

    def group(name, xs, seeds):
        return verdicts.group_stats(name, [verdicts.RunValue(f"{name}{i}", f"{name} #{i}",
                                                             x, "", seed)
                                           for i, (x, seed) in enumerate(zip(xs, seeds))])
    summary = verdicts.Summary("final", VAL_ACC)
    apart = [group("a", [70.0, 71.0, 73.0], [1, 2, 3]), group("b", [60.0, 62.0, 61.0], [4, 5, 6])]
    shared = [apart[0], group("b", [60.0, 62.0, 61.0], [1, 2, 3])]
    for groups, paired in ((apart, False), (shared, True)):
        result = verdicts.Verdicts(summary, (verdicts.EXCEPT_SEED,), groups,
                                   verdicts.compare_groups(groups, summary))
        columns = set(pair_numbers(result).columns)
        assert {"a", "b", "diff", "ci low", "ci high", "p welch", "p holm"} <= columns
        assert ({"paired n", "paired diff", "paired p"} <= columns) is paired
        assert not ({"paired n", "paired diff", "paired p"} & columns) or paired


def test_a_run_is_named_within_its_group_once():
    assert run_in_group("rmsprop", "rmsprop · seed 1") == "rmsprop: seed 1"
    assert run_in_group("rmsprop", "rmsprop") == "rmsprop"
    assert run_in_group("adam", "run #3") == "adam: run #3"
