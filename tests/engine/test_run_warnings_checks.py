"""Which warning checks a run's stored metrics allow (engine.run_warnings.checks_made): a page
says "no X" only where the data could have shown an X."""

import pandas as pd

from engine.events import STEP_LOSS, TRAIN_LOSS, VAL_LOSS
from engine.run_warnings import CHECKS, GRAD_NORM, checks_made, metric_name


def frame(*names) -> pd.DataFrame:
    return pd.DataFrame({"step": [1] * len(names), "name": list(names),
                         "value": [1.0] * len(names)})


def test_losses_alone_allow_the_loss_and_overfitting_checks_only():
    made, missing = checks_made(frame(STEP_LOSS, TRAIN_LOSS, VAL_LOSS))
    assert made == ["spike, plateau or divergence of the loss", "overfitting"]
    assert missing == ["vanishing or exploding gradient", "odd update ratio", "dead layer",
                       "identical units"]


def test_per_layer_gradient_norms_allow_the_gradient_check():
    made, _ = checks_made(frame(STEP_LOSS, metric_name(GRAD_NORM, 0), metric_name(GRAD_NORM, 1)))
    assert "vanishing or exploding gradient" in made
    made, _ = checks_made(frame(metric_name(GRAD_NORM, 0)))      # one layer: no ratio to take
    assert "vanishing or exploding gradient" not in made


def test_nothing_stored_allows_nothing():
    made, missing = checks_made(frame())
    assert made == [] and missing == [check for check, _ in CHECKS]
