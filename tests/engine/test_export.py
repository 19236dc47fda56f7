"""Tests of engine/export.py: CSV/JSON/HTML/PNG/SVG/ZIP exports, safe file names, export_runs
against a real RunStore."""

from __future__ import annotations

import io
import json
import math
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from engine import export, plots
from engine.events import (STEP_LOSS, VAL_ACC, VAL_LOSS, Evaluated, RunEnded, RunStarted,
                           RunStatus, StepLoss)
from engine.store import RunStore

HAVE_BROWSER = os.path.isfile("/usr/bin/chromium") or export.browser_path() is not None
needs_browser = pytest.mark.skipif(not HAVE_BROWSER, reason="no /usr/bin/chromium (nor any "
                                   "Chrome/Chromium): static PNG/SVG export cannot run here")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_runs(n_runs=3, n_steps=5000):
    runs, parts = [], []
    for i in range(n_runs):
        rid = f"run-{i}"
        runs.append(SimpleNamespace(
            id=rid, name=f"name {i}", status=RunStatus.COMPLETED, reason="", tags=["t"],
            created_at=1.0, started_at=2.0, ended_at=12.5, last_step=n_steps,
            total_steps=n_steps, params=10, device="cpu",
            config={"optimizer": ["sgd", "adam", "rmsprop"][i % 3], "lr": 0.01, "seed": i}))
        steps = np.arange(1, n_steps + 1)
        values = 1.0 / steps
        if i == 0 and n_steps > 7:
            values[7] = math.nan
        parts.append(pd.DataFrame({"id": steps + i * n_steps, "run": rid, "step": steps,
                                   "epoch": steps / 100, "name": STEP_LOSS, "value": values,
                                   "time": 1e9 + steps}))
    return pd.concat(parts, ignore_index=True), runs


@pytest.fixture(scope="module")
def small_fig():
    frame, runs = make_runs(2, 50)
    return plots.build_figure(frame, runs, plots.ChartOptions(metric=STEP_LOSS))


@pytest.fixture(scope="module")
def images(small_fig):
    """PNG and SVG of one figure, drawn once for the module (a browser start is ~2 s)."""
    if not HAVE_BROWSER:
        pytest.skip("no /usr/bin/chromium: static PNG/SVG export cannot run here")
    return export.figure_images(small_fig)


# --- data exports --------------------------------------------------------------------------

def test_csv_has_every_point_never_downsampled():
    frame, runs = make_runs(3, 5000)
    data = export.metrics_csv(frame, runs)
    back = pd.read_csv(io.BytesIO(data))
    assert list(back.columns) == export.CSV_COLUMNS
    assert len(back) == len(frame) == 15_000               # far above any max_points
    first = back[back["run_id"] == "run-0"]
    np.testing.assert_array_equal(first["step"], np.arange(1, 5001))
    assert (first["run_name"] == "name 0").all()
    assert math.isnan(first["value"].iloc[7])              # written as "nan", not dropped
    np.testing.assert_allclose(first["value"].iloc[:7], 1.0 / np.arange(1, 8))
    assert b"\nrun-0,name 0,8,0.08,train/step_loss,nan," in data


def test_csv_only_for_given_runs_and_empty_ok():
    frame, runs = make_runs(3, 10)
    back = pd.read_csv(io.BytesIO(export.metrics_csv(frame, runs[1:2])))
    assert set(back["run_id"]) == {"run-1"} and len(back) == 10
    assert export.metrics_csv(frame.iloc[:0], runs).decode().strip() == \
        ",".join(export.CSV_COLUMNS)


def test_json_round_trips_configs():
    _, runs = make_runs(3, 1)
    data = json.loads(export.configs_json(runs))
    assert [d["id"] for d in data] == ["run-0", "run-1", "run-2"]
    assert [d["config"] for d in data] == [r.config for r in runs]
    assert data[0]["duration_s"] == 10.5 and data[0]["tags"] == ["t"]
    assert data[0]["status"] == "completed" and data[0]["name"] == "name 0"


def test_html_is_self_contained(small_fig):
    html = export.figure_html(small_fig).decode()
    assert "<html>" in html[:200] and html.rstrip().endswith("</html>")
    assert "Plotly.newPlot" in html
    assert len(html) > 1_000_000                           # plotly.js is embedded ...
    assert not re.search(r"<script[^>]*\bsrc=", html)    # ... nothing fetched from a CDN
    assert "sgd" in html                                   # the legend label is in the data


# --- static images -------------------------------------------------------------------------

@needs_browser
def test_png_has_png_signature(images):
    assert images["png"].startswith(PNG_SIGNATURE) and len(images["png"]) > 5000


@needs_browser
def test_svg_parses_as_xml(images):
    root = ET.fromstring(images["svg"])
    assert root.tag.endswith("svg")
    assert b"sgd" in images["svg"]                         # legend text is vector text


def test_no_browser_raises_export_error_saying_html_still_works(small_fig, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    assert export.browser_path() is None
    with pytest.raises(export.ExportError, match="no browser") as info:
        export.figure_bytes(small_fig, "png")
    assert "HTML, CSV and JSON" in str(info.value)


def test_zip_without_browser_has_data_files_and_a_note(small_fig, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    frame, runs = make_runs(2, 50)
    zf = zipfile.ZipFile(io.BytesIO(export.zip_bytes(small_fig, frame, runs, base="cmp")))
    assert sorted(zf.namelist()) == ["NO_IMAGES.txt", "cmp.csv", "cmp.html", "cmp.json"]
    assert b"no browser" in zf.read("NO_IMAGES.txt")
    assert len(pd.read_csv(zf.open("cmp.csv"))) == 100


@needs_browser
def test_zip_bundles_all_five(small_fig, images):
    frame, runs = make_runs(2, 50)
    zf = zipfile.ZipFile(io.BytesIO(export.zip_bytes(small_fig, frame, runs, base="cmp",
                                                     images=images)))
    assert sorted(zf.namelist()) == ["cmp.csv", "cmp.html", "cmp.json", "cmp.png", "cmp.svg"]
    assert zf.read("cmp.png").startswith(PNG_SIGNATURE)


# --- safe file names -----------------------------------------------------------------------

@pytest.mark.parametrize("name, rule", [
    ("../x", "path separators"), ("/etc/passwd", "path separators"), ("..", "'..'"),
    ("a..b", "'..'"), ("a\nb", "control"), ("a\x00b", "control"), ("", "empty"),
    ("   ", "empty"), ("x" * 120, "too long"), (".hidden", "hidden"), ("a\\b", "separators"),
    ("x.png", "extension"), ("a:b", "must not contain"), (None, "text"),
])
def test_safe_export_path_refuses(tmp_path, name, rule):
    out = tmp_path / "exports"
    with pytest.raises(ValueError, match="name") as info:
        export.safe_export_path(name, "csv", out)
    assert rule in str(info.value) and repr(name) in str(info.value)
    assert isinstance(info.value, export.ExportError)


def test_safe_export_path_accepts_plain_names_inside_the_folder(tmp_path):
    out = tmp_path / "exports"
    assert export.safe_export_path("report", "csv", out) == (out / "report.csv").resolve()
    assert export.safe_export_path("report.CSV", "csv", out).name == "report.csv"
    assert export.safe_export_path("lr sweep v2", "png", out).name == "lr sweep v2.png"
    assert export.safe_export_path("a" * 116, "csv", out).name == "a" * 116 + ".csv"
    with pytest.raises(ValueError, match="fmt"):
        export.safe_export_path("report", "exe", out)


def test_safe_export_path_default_folder_is_export_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_EXPORT_DIR", str(tmp_path / "ex"))
    assert export.safe_export_path("r", "json").parent == (tmp_path / "ex").resolve()


def test_safe_export_path_refuses_symlink_out_of_the_folder(tmp_path):
    out, elsewhere = tmp_path / "exports", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "evil.csv").symlink_to(elsewhere / "target.csv")
    with pytest.raises(ValueError, match="outside the export folder"):
        export.safe_export_path("evil", "csv", out)


# --- export_runs against a real store --------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "runs.db")
    yield s
    s.close()


def fill(store, n_steps=40):
    ids = []
    for opt, lr in (("sgd", 0.1), ("adam", 0.01)):
        rid = store.create_run({"optimizer": opt, "lr": lr, "seed": 0}, name=f"{opt} run")
        store.record(RunStarted(rid, params=10, device="cpu", total_steps=n_steps,
                                steps_per_epoch=10))
        for step in range(1, n_steps + 1):
            store.record(StepLoss(rid, step, step / 10, 2.0 / step))
            if step % 10 == 0:
                store.record(Evaluated(rid, step, step / 10, {VAL_ACC: 0.5 + step / 100,
                                                              VAL_LOSS: 1.0 / step}))
        store.record(RunEnded(rid, RunStatus.COMPLETED, n_steps, ""))
        ids.append(rid)
    assert store.flush(10)
    return ids


def test_export_runs_writes_csv_json_html_inside_out_dir(store, tmp_path):
    ids = fill(store)
    out = tmp_path / "ex"
    csv_path = export.export_runs(store, ids, "csv", out_dir=out, name="cmp")
    assert csv_path == (out / "cmp.csv").resolve() and csv_path.is_file()
    back = pd.read_csv(csv_path)
    assert len(back) == len(store.read_metrics(ids))         # every stored point
    assert set(back["run_name"]) == {"sgd run", "adam run"}
    data = json.loads(export.export_runs(store, ids, "json", out_dir=out, name="cmp")
                      .read_text())
    assert {d["config"]["optimizer"] for d in data} == {"sgd", "adam"}
    html = export.export_runs(store, ids, "html", out_dir=out, name="cmp",
                              options=plots.ChartOptions(metric=VAL_LOSS)).read_text()
    assert "Plotly.newPlot" in html and "validation loss" in html
    assert sorted(p.name for p in out.iterdir()) == ["cmp.csv", "cmp.html", "cmp.json"]


def test_export_runs_default_name_and_folder(store, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_EXPORT_DIR", str(tmp_path / "default"))
    ids = fill(store, 10)
    path = export.export_runs(store, ids[:1], "csv")
    assert path.parent == (tmp_path / "default").resolve()
    assert path.name.startswith("trainlab-compare-") and path.suffix == ".csv"


def test_export_runs_refuses_unknown_ids_formats_and_bad_names(store, tmp_path):
    ids = fill(store, 10)
    out = tmp_path / "ex"
    with pytest.raises(ValueError, match="unknown run id.*nope"):
        export.export_runs(store, [ids[0], "nope"], "csv", out_dir=out)
    with pytest.raises(ValueError, match="unknown run id"):
        export.export_runs(store, ["../../etc"], "csv", out_dir=out)
    with pytest.raises(ValueError, match="fmt: 'pdf'"):
        export.export_runs(store, ids, "pdf", out_dir=out)
    with pytest.raises(ValueError, match="no run given"):
        export.export_runs(store, [], "csv", out_dir=out)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for bad in ("../x", "/etc/passwd", "a\nb", "x\x00"):
        with pytest.raises(ValueError, match="name"):
            export.export_runs(store, ids, "csv", out_dir=out, name=bad)
    after = sorted(p.name for p in tmp_path.rglob("*"))
    assert [p for p in after if p not in before] in ([], ["ex"])  # nothing written anywhere
    assert not (tmp_path / "x.csv").exists()


@needs_browser
def test_export_runs_png_through_the_browser(store, tmp_path):
    ids = fill(store, 10)
    path = export.export_runs(store, ids, "png", out_dir=tmp_path / "ex", name="chart")
    assert path.read_bytes().startswith(PNG_SIGNATURE)


# --- exports that stand alone (issue 12) -------------------------------------------------------

def test_csv_export_carries_each_runs_differing_config_fields():
    frame, runs = make_runs(3, 4)
    back = pd.read_csv(io.BytesIO(export.export_bytes("csv", None, frame, runs)))
    assert list(back.columns) == export.CSV_COLUMNS[:2] + ["label", "optimizer", "seed"] \
        + export.CSV_COLUMNS[2:]
    first = back.drop_duplicates("run_id").set_index("run_id")
    assert first.loc["run-1", "optimizer"] == "adam" and first.loc["run-2", "seed"] == 2
    assert first.loc["run-0", "label"] == "sgd · seed 0"          # describe.run_labels
    assert "lr" not in back.columns                                # equal for all: not a column


def test_html_loads_plotly_once_compressed_and_stays_small():
    frame, runs = make_runs(4, 5000)
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=STEP_LOSS, context=True))
    html = export.figure_html(fig)
    # plotly.js alone is 4.8 MB; the page holds it once, gzip+base64, plus 4 downsampled runs
    assert len(html) < 2_300_000
    assert html.count(b"DecompressionStream") == 1 and html.count(b"Plotly.newPlot") == 1
    packed = re.search(rb'id="plotly-gz">([^<]+)<', html).group(1)
    import base64
    import gzip
    from plotly.offline import get_plotlyjs
    assert gzip.decompress(base64.b64decode(packed)).decode() == get_plotlyjs()
    assert b"fashion-mnist" in html                   # the subtitle: what all runs share
