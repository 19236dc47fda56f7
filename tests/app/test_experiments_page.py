"""Tests of pages/experiments.py through AppTest, with the fake trainer of conftest.py: the
cards render, a card's Run launches its runs (tagged, seeds added on a second press), the
charts carry the notebook's values in the runs' colours, a sweep draws its summary chart, and
an uploaded file is validated (a bad one names file, line and field and launches nothing)."""

import time

import pytest
from streamlit.testing.v1 import AppTest

from engine import experiments
from engine.events import RunStatus
from tests.app.conftest import PAGES
from tests.datafiles import write_idx_dataset

PAGE = PAGES / "experiments.py"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    write_idx_dataset(tmp_path / "data", "fashion-mnist", n_train=16, n_test=8)
    monkeypatch.setenv("TRAINLAB_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def run_page() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def wait_done(store, ids, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store.flush()
        if all(store.get_run(r).status in RunStatus.TERMINAL for r in ids):
            return
        time.sleep(0.05)
    raise AssertionError("runs did not finish")


def card_button(at, exp_id):
    return next(b for b in at.button if b.key == f"exp_run_{exp_id}")


def test_cards_render_with_question_finding_and_estimate(services):
    at = run_page()
    text = " ".join(m.value for m in at.markdown)
    assert "Homework 8: SGD, momentum, RMSProp and Adam" in text
    assert "UofT tutorial: initializing every weight to zero" in text
    captions = " ".join(c.value for c in at.caption)
    assert "RMSProp (85.4%) and Adam (86.2%)" in captions
    assert "4 runs × 3 seeds = 12 runs · about" in captions
    assert len([b for b in at.button if b.key and b.key.startswith("exp_run_")]) == 17


def test_card_launches_its_runs_and_a_second_press_adds_seeds(services, data_dir):
    store, manager = services
    at = run_page()
    next(n for n in at.number_input if n.key == "exp_seeds_hw8-optimizers").set_value(1)
    card_button(at, "hw8-optimizers").click()
    at.run()
    assert not at.exception, at.exception
    runs = [r for r in store.list_runs() if "exp:hw8-optimizers" in r.tags]
    assert len(runs) == 4
    assert {r.config["optimizer"] for r in runs} == {"sgd", "course-momentum", "course-rmsprop",
                                                     "course-adam"}
    adam = next(r for r in runs if r.config["optimizer"] == "course-adam")
    assert (adam.config["beta2"], adam.config["eps"], adam.config["bias_correction"]) == \
        (0.99, 1e-7, False)
    wait_done(store, [r.id for r in runs])
    card_button(at, "hw8-optimizers").click()
    at.run()
    seeds = sorted(r.config["seed"] for r in store.list_runs()
                   if "exp:hw8-optimizers" in r.tags and r.config["optimizer"] == "sgd")
    assert seeds == [0, 1]


def test_missing_data_refuses_and_launches_nothing(services, tmp_path, monkeypatch):
    store, _ = services
    monkeypatch.setenv("TRAINLAB_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setattr("engine.datafiles.try_download", lambda *a: False)
    at = run_page()
    card_button(at, "uoft-zero-init").click()
    at.run()
    assert any("mnist data not found" in e.value for e in at.error)
    assert store.list_runs() == []


def test_results_draw_the_notebooks_values_and_claims(services):
    store, manager = services
    exp = experiments.catalogue()["hw8-depth20"]
    ids = experiments.submit(exp, manager, seeds=2)
    wait_done(store, ids)
    at = run_page()
    at.selectbox(key="exp_results_choice").set_value("hw8-depth20")
    at.run()
    assert not at.exception, at.exception
    charts = [c for c in at.get("plotly_chart")]
    assert len(charts) == len(exp.plots) + 1          # and the parallel coordinates
    spec = charts[0].proto.spec
    assert "notebook · Plain" in spec and "notebook · Residual" in spec
    frames = [d for d in at.dataframe]
    table = frames[0].value
    assert set(table["run"]) == {"Plain", "Layer norm", "Batch norm", "Residual"}
    # the fake trainer reports val/acc every epoch but no epoch loss: 2 seeds vs none
    assert (table[table["metric"] == "val/acc"]["seeds"] == 2).all()
    assert (table[table["metric"] == "train/epoch_loss"]["seeds"] == 0).all()
    claims = " ".join(m.value for m in at.markdown)
    assert "The plain 20-layer net stays at chance" in claims
    # the fake trainer's curves are identical for every run: nothing differs between runs
    assert "does not hold" in claims


def test_sweep_experiment_draws_its_summary_chart(services):
    store, manager = services
    exp = experiments.catalogue()["cs231n-batch-size"]
    ids = experiments.submit(exp, manager, seeds=2)
    wait_done(store, ids)
    at = run_page()
    at.selectbox(key="exp_results_choice").set_value("cs231n-batch-size")
    at.run()
    assert not at.exception, at.exception
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    sweep = next(s for s in specs if "vs batch_size" in s)
    assert '"type":"log"' in sweep.replace(" ", "")
    assert "norm=batch" in sweep and "norm=layer" in sweep and "norm=none" in sweep
    # parallel coordinates over the grid: an axis per varied option, one for the summary
    parallel = next(s for s in specs if "Every run: the options it varies" in s)
    assert '"label":"norm"' in parallel.replace(" ", "") and "batch_size" in parallel
    assert "final validation accuracy" in parallel


GOOD = b"""id: mine
title: My toy study
question: Does Adam beat SGD on blobs?
base: {dataset: gaussians, toy_samples: 64, width: [8], batch_size: 16, epochs: 1}
runs:
  - {name: adam, set: {optimizer: adam, lr: 0.05}}
  - {name: sgd, set: {optimizer: sgd, lr: 0.0001}}
seeds: 1
"""


def test_upload_adds_a_card_and_a_bad_file_names_line_and_field(services):
    store, _ = services
    at = run_page()
    at.file_uploader(key="exp_upload").set_value(
        ("mine.yaml", GOOD.replace(b"lr: 0.0001", b"lr: -1"), "application/x-yaml"))
    at.run()
    assert any("mine.yaml, line 7: runs[1].set.lr" in e.value.replace("\\", "")
               for e in at.error)
    assert not any(b.key == "exp_run_mine" for b in at.button)
    assert store.list_runs() == []
    at.file_uploader(key="exp_upload").set_value(("mine.yaml", GOOD, "application/x-yaml"))
    at.run()
    assert not at.exception, at.exception
    card_button(at, "mine").click()
    at.run()
    assert len([r for r in store.list_runs() if "exp:mine" in r.tags]) == 2


def test_typed_seeds_out_of_range_are_named_and_launch_nothing(services):
    store, _ = services
    at = run_page()
    next(n for n in at.number_input if n.key == "exp_seeds_hw8-optimizers").set_value(0)
    at.run()
    assert not at.exception
    assert any("Seeds: 0 is not allowed" in e.value for e in at.error)
    assert card_button(at, "hw8-optimizers").disabled
    assert store.list_runs() == []
