"""The run's progress line, as Live and the Playground show it."""

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
