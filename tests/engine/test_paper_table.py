"""engine/paper_table.py: groups x summaries with mean and 95% interval by hand, the best cell
bold only when the verdicts say it is better than every other group, LaTeX/Markdown/CSV
output, and `engine compare --table`."""

import math

import pandas as pd
import pytest
from scipy import stats

from engine import paper_table
from engine.verdicts import parse_summary


def runs_and_frame(finals: dict):
    """Runs of two configurations (optimizer sgd/adam) over seeds with these final val/acc."""
    runs, rows = [], []
    for optimizer, values in finals.items():
        for seed, value in enumerate(values):
            rid = f"{optimizer}-{seed}"
            runs.append({"id": rid, "name": "", "status": "completed",
                         "config": {"optimizer": optimizer, "seed": seed, "dataset": "spirals"}})
            rows += [(rid, 10, 1.0, "val/acc", value / 100), (rid, 10, 1.0, "val/loss", 1 - value / 100)]
    frame = pd.DataFrame(rows, columns=["run", "step", "epoch", "name", "value"])
    frame["id"] = range(len(frame))
    frame["time"] = 0.0
    return runs, frame


def test_cells_are_mean_and_t_interval_and_the_clear_winner_is_bold():
    runs, frame = runs_and_frame({"sgd": [60.0, 61.0, 62.0, 61.5], "adam": [85.0, 86.0, 85.5, 86.5]})
    table = paper_table.build(frame, runs, [parse_summary("final:val/acc"),
                                            parse_summary("final:val/loss")])
    assert table.groups == ["sgd", "adam"]
    sgd = table.cells[("sgd", 0)]
    values = [60.0, 61.0, 62.0, 61.5]
    half = stats.t.ppf(0.975, 3) * stats.sem(values)
    assert sgd.mean == pytest.approx(61.125) and (sgd.high - sgd.low) / 2 == pytest.approx(half)
    assert sgd.n == 4
    assert table.cells[("adam", 0)].best and not sgd.best          # higher accuracy
    assert table.cells[("adam", 1)].best                           # lower loss
    latex = paper_table.render(table, "latex")
    assert r"\textbf{85.8 $\pm$" in latex and r"\toprule" in latex and "61.1" in latex
    markdown = paper_table.render(table, "markdown")
    assert "| sgd | 61.1 ± " in markdown and "**85.8 ± " in markdown
    csv = paper_table.render(table, "csv").splitlines()
    assert csv[0] == "group,summary,mean,ci_low,ci_high,n,best" and len(csv) == 5


def test_no_bold_when_the_data_cannot_tell():
    runs, frame = runs_and_frame({"sgd": [60.0, 70.0], "adam": [62.0, 69.0]})
    table = paper_table.build(frame, runs, [parse_summary("final:val/acc")])
    assert not any(c.best for c in table.cells.values())
    assert "cannot tell" in table.notes[0]
    assert "**" not in paper_table.render(table, "markdown").split("\n\n")[0]


def test_bad_format_is_named():
    runs, frame = runs_and_frame({"sgd": [60.0, 61.0]})
    with pytest.raises(ValueError, match="table: 'html' is not allowed; allowed: latex"):
        paper_table.render(paper_table.build(frame, runs, [parse_summary("final:val/acc")]),
                           "html")


def test_group_names_are_escaped_for_latex():
    assert paper_table._latex("a_b & 50% #1") == r"a\_b \& 50\% \#1"


def test_bar_figure_has_one_bar_per_group_with_its_interval():
    runs, frame = runs_and_frame({"sgd": [60.0, 61.0, 62.0], "adam": [85.0, 86.0, 87.0]})
    fig = paper_table.bar_figure(paper_table.build(frame, runs, [parse_summary("final:val/acc")]))
    (bar,) = fig.data
    assert list(bar.x) == ["sgd", "adam"] and bar.y[1] == pytest.approx(86.0)
    assert bar.error_y.array[0] == pytest.approx(stats.t.ppf(0.975, 2) * stats.sem([60, 61, 62]))


def test_cli_compare_table_latex(tmp_path, capsys):
    from engine.cli import main
    from engine.events import Evaluated, RunEnded, RunStarted
    from engine.store import RunStore
    db = tmp_path / "runs.db"
    store = RunStore(db)
    finals = {"sgd": [60.0, 61.0, 62.0], "adam": [85.0, 86.0, 87.0]}
    for optimizer, values in finals.items():
        for seed, value in enumerate(values):
            rid = store.create_run({"dataset": "spirals", "optimizer": optimizer, "seed": seed},
                                   tags=["hw"])
            store.record(RunStarted(rid, 10, "cpu", 10, 10, epochs=1))
            store.record(Evaluated(rid, 10, 1.0, {"val/acc": value / 100,
                                                  "val/loss": 1 - value / 100}))
            store.record(RunEnded(rid, "completed", 10))
    store.close()
    assert main(["--db", str(db), "compare", "tag:hw", "--summary", "final:val/acc",
                 "--summary", "best:val/loss", "--table", "latex"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(r"\begin{tabular}{lrrr}") and r"\textbf{86.0 $\pm$" in out
    assert "best validation loss" in out
    assert main(["--db", str(db), "compare", "tag:hw", "--table", "html"]) == 2
    assert "--table: 'html' is not allowed" in capsys.readouterr().err


def test_the_zip_export_holds_the_table_in_three_forms_and_its_bar_chart():
    import io
    import zipfile
    from engine import export, plots
    runs, frame = runs_and_frame({"sgd": [60.0, 61.0, 62.0], "adam": [85.0, 86.0, 87.0]})
    table = paper_table.build(frame, runs, [parse_summary("final:val/acc")])
    data = export.zip_bytes(plots.build_figure(frame, runs), frame, runs,
                            images={"png": b"", "svg": b""}, table=table)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert {"trainlab-compare-table.tex", "trainlab-compare-table.md",
            "trainlab-compare-table.csv", "trainlab-compare-bars.html"} <= set(names)
