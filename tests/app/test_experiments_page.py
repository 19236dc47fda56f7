"""Tests of pages/experiments.py through AppTest, with the fake trainer of conftest.py: the
cards render with what is assumed and whether their dataset is here (before any click), a
card's Run launches its runs (tagged, seeds added on a second press), a click without the data
tries the offline download once per process, the charts carry the notebook's values in the
runs' colours, the results set the re-run checks, the notebook's claims and our expectations
apart, a sweep draws its summary chart, and an uploaded file is validated (a bad one names
file, line and field and launches nothing)."""

import re
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


def show_notebook(at, name):
    """Choose the notebook whose cards show ("All" for every card)."""
    at.button_group(key="exp_notebook").set_value(name).run()
    assert not at.exception, at.exception
    return at


def card_keys(at) -> list[str]:
    return [b.key.removeprefix("exp_run_") for b in at.button
            if b.key and b.key.startswith("exp_run_")]


def card_button(at, exp_id):
    return next(b for b in at.button if b.key == f"exp_run_{exp_id}")


def confirm(at, exp_id):
    """Tick the card's "start it anyway" when its estimate asks for one (as on Launch)."""
    boxes = [c for c in at.checkbox if c.key and c.key.startswith("exp_confirm_launch_")
             and c.key.endswith(f"_{exp_id}")]
    if boxes:
        boxes[0].check()
        at.run()
    return at


def test_cards_render_with_question_finding_assumptions_data_and_estimate(services, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("TRAINLAB_DATA_DIR", str(tmp_path / "empty"))
    at = show_notebook(run_page(), "All")
    text = " ".join(m.value for m in at.markdown)
    assert "Homework 8: SGD, momentum, RMSProp and Adam" in text
    assert "UofT tutorial: initializing every weight to zero" in text
    captions = " ".join(c.value for c in at.caption)
    assert "RMSProp (85.4%) and Adam (86.2%)" in captions
    assert "4 runs × 20 seeds = 80 runs" in captions and "Estimated: about" in captions
    # nothing claims exact settings where anything is assumed
    assert not re.search(r"\bexact\b", captions, re.IGNORECASE)
    assert len([b for b in at.button if b.key and b.key.startswith("exp_run_")]) == 21
    # assumptions in plain words: the notebook never prints cs231n's Adam learning rate
    assert "Assumed, not in the notebook" in text and "lr 0.001 (adam)" in text
    assert "Not expressible here" in text
    # before anything is clicked, every CIFAR card says its data is missing and where it goes
    warnings = [w.value for w in at.warning]
    assert sum(w.startswith("CIFAR-10 not found") for w in warnings) == 14
    assert any("cifar-10-python.tar.gz (163 MB" in w and str(tmp_path / "empty") in w
               for w in warnings)
    # 100 depth-20 runs: the estimate asks first, as the Launch page does
    assert card_button(at, "hw8-depth20").disabled
    assert any(c.key.endswith("_hw8-depth20") and c.label.startswith("Start it anyway")
               for c in at.checkbox if c.key)
    confirm(at, "hw8-depth20")
    assert not card_button(at, "hw8-depth20").disabled


def test_cards_show_one_notebook_and_a_link_opens_on_its_experiments_notebook(services):
    """Issue 20, part 9: one notebook's cards draw at a time (all 21 took about 1 s more to
    draw), Homework 8's first; a link to an experiment opens on its notebook's cards."""
    at = run_page()
    assert card_keys(at) == ["hw8-depth20", "hw8-optimizers"]
    assert at.button_group(key="exp_notebook").options[:2] == ["Homework 8 (2)", "cs231n (7)"]
    assert len(card_keys(show_notebook(at, "UofT tutorial"))) == 5
    assert len(card_keys(show_notebook(at, "All"))) == 21
    linked = AppTest.from_file(str(PAGE), default_timeout=120)
    linked.query_params["experiment"] = "uva-preact-resnet"
    linked.run()
    assert not linked.exception, linked.exception
    assert card_keys(linked) == ["uva-mlp-table", "uva-preact-resnet"]
    assert linked.selectbox(key="exp_results_choice").value == "uva-preact-resnet"
    # choosing another experiment for Results turns the cards to its notebook (its Run)
    linked.selectbox(key="exp_results_choice").set_value("cs231n-dropout").run()
    assert not linked.exception, linked.exception
    assert "cs231n-dropout" in card_keys(linked) and len(card_keys(linked)) == 7


def test_card_launches_its_runs_and_a_second_press_adds_seeds(services, data_dir):
    store, manager = services
    at = run_page()
    next(n for n in at.number_input if n.key == "exp_seeds_hw8-optimizers").set_value(1)
    at.run()
    confirm(at, "hw8-optimizers")
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
    confirm(at, "hw8-optimizers")
    card_button(at, "hw8-optimizers").click()
    at.run()
    seeds = sorted(r.config["seed"] for r in store.list_runs()
                   if "exp:hw8-optimizers" in r.tags and r.config["optimizer"] == "sgd")
    assert seeds == [0, 1]


def test_missing_data_refuses_and_asks_the_network_once(services, tmp_path, monkeypatch):
    store, _ = services
    monkeypatch.setenv("TRAINLAB_DATA_DIR", str(tmp_path / "nothing"))
    probes = []
    monkeypatch.setattr("engine.datafiles._failed_downloads", set())
    monkeypatch.setattr("engine.datafiles._mirror_reachable",
                        lambda dataset, timeout=1.0: probes.append(dataset) or False)
    at = show_notebook(run_page(), "cs231n")
    for _ in range(2):
        confirm(at, "cs231n-dropout")
        card_button(at, "cs231n-dropout").click()
        at.run()
        assert any("cifar10 data not found" in e.value for e in at.error)
    assert probes == ["cifar10"]        # the second click asks no one: it answers at once
    assert store.list_runs() == []


def test_results_draw_the_notebooks_values_and_set_claims_apart(services):
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
    (rerun,) = [t.value for t in at.table if "notebook's code re-run" in t.value.columns]
    assert set(rerun["run"]) == {"Plain", "Layer norm", "Batch norm", "Residual", "Shallow"}
    assert all(o.split(" ", 1)[1] in ("consistent", "differs", "too few seeds")
               for o in rerun["outcome"])
    # judged by the re-run, the printed values are markers on the charts: folded, not drawn
    assert not [d for d in at.dataframe if "printed in the notebook" in d.value.columns]
    at.session_state["exp_printed_open"] = True          # the user opens the box
    at = at.run()
    frames = [d.value for d in at.dataframe]
    printed = next(f for f in frames if "printed in the notebook" in f.columns)
    assert set(printed["outcome"]) == {"marker"}        # judged by the re-run, drawn as markers
    assert (printed[printed["metric"] == "val/acc"]["seeds"] == 2).all()
    text = " ".join(m.value for m in at.markdown)
    assert "The notebook's claims" in text and "The model doesn’t learn at all!" in text
    assert "(line 389)" in text
    assert "Our expectations" in text and "not the notebook's" in text
    words = ("holds", "does not hold", "not enough evidence", "not run")
    assert any(w in text for w in words)


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


def test_a_quick_run_from_a_card_shows_its_results_and_the_url_keeps_them(services, data_dir):
    """Issue 20, part 4: Results turns to the experiment just run, at the budget it ran (a
    quick run's results were hidden behind the quick toggle), and the URL says which, so a
    reload (a new session with the same URL) opens the same results."""
    store, manager = services
    at = run_page()
    exp_id = "hw8-optimizers"
    next(n for n in at.number_input if n.key == f"exp_seeds_{exp_id}").set_value(1)
    next(t for t in at.toggle if t.key == f"exp_quick_{exp_id}").set_value(True)
    at.run()
    confirm(at, exp_id)
    card_button(at, exp_id).click()
    at.run()
    assert not at.exception, at.exception
    runs = [r for r in store.list_runs() if f"exp:{exp_id}" in r.tags]
    assert len(runs) == 4
    assert at.selectbox(key="exp_results_choice").value == exp_id
    assert next(t for t in at.toggle if t.key == f"exp_show_quick_{exp_id}").value is True
    assert any("its results" in s.value for s in at.success)
    assert dict(at.query_params) == {"experiment": exp_id, "quick": "1"}
    wait_done(store, [r.id for r in runs])
    at.run()
    infos = " ".join(i.value for i in at.info)
    assert "No runs of this experiment" not in infos
    assert len(at.get("plotly_chart")) >= 1
    # a new session on the same URL opens the same results
    again = AppTest.from_file(str(PAGE), default_timeout=120)
    again.query_params["experiment"] = exp_id
    again.query_params["quick"] = "1"
    again.run()
    assert again.selectbox(key="exp_results_choice").value == exp_id
    assert next(t for t in again.toggle if t.key == f"exp_show_quick_{exp_id}").value is True


def test_a_url_naming_no_experiment_is_refused_by_name(services):
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.query_params["experiment"] = "hw9-nothing"
    at.run()
    assert not at.exception, at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "URL parameter experiment: 'hw9-nothing' is not allowed; allowed: " in warnings
    assert at.selectbox(key="exp_results_choice").index == 0
