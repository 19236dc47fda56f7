"""The run's progress line, as Live and the Playground show it; table cells as text."""

import numpy as np

from app import widgets
from app.widgets import progress_line
from engine.events import RunStatus
from engine.jobs import Progress


def test_progress_line_of_a_running_paused_and_finished_run():
    running = Progress("r", RunStatus.RUNNING, step=50, total_steps=100, epoch=1.0, epochs=2,
                       elapsed_s=10.0, eta_s=10.0)
    fraction, text = progress_line(running)
    assert fraction == 0.5 and text == "epoch 2/2 · step 50/100 · 10 s left"
    running.paused = True
    assert progress_line(running)[1] == "epoch 2/2 · step 50/100 · paused"
    done = Progress("r", RunStatus.COMPLETED, step=100, total_steps=100, epoch=2.0, epochs=2,
                    elapsed_s=20.0)
    assert progress_line(done) == (1.0, "epoch 2/2 · step 100/100 · completed after 20 s")


def test_cell_text_reads_as_a_person_writes_numbers():
    assert widgets.cell_text(None) == "–" and widgets.cell_text(float("nan")) == "–"
    assert widgets.cell_text(160.0) == "160"                   # a step, stored as a float
    assert widgets.cell_text(np.float64(12345.0)) == "12345"   # not 1.234e+04
    assert widgets.cell_text(0.123456) == "0.1235"
    assert widgets.cell_text(2.5e-5) == "2.5e-05"
    assert widgets.cell_text(0.123456, 3) == "0.123"
    assert widgets.cell_text("adam") == "adam" and widgets.cell_text(3) == "3"


def test_plain_table_shades_the_marked_rows_and_shows_numbers_as_text():
    from streamlit.testing.v1 import AppTest

    def page():
        import pandas as pd

        from app import widgets
        widgets.plain_table(pd.DataFrame({"field": ["lr", "depth"], "a": [0.1, 2.0],
                                          "b": [None, 2.0]}), marked=[True, False])

    at = AppTest.from_function(page).run()
    assert not at.exception
    (table,) = at.table
    assert list(table.value["field"]) == ["lr", "depth"]          # the data, unchanged
    styles = table.proto.arrow_data.styler.styles
    assert "row0_col0" in styles and widgets.MARK_CSS.split(": ")[1] in styles
    assert "row1_" not in styles                                   # the unmarked row
    assert not at.dataframe                                        # no data grid
