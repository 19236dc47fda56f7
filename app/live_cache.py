"""Live-view reads: the per-session incremental metric cache.

This module owns what the Live page reads each tick: only the metric rows newer than the last
one seen (`after_id`), per run, appended to a per-session cache, so a tick costs a few small
indexed queries however long the runs are. The figures are drawn by engine/plots.py
(`live_figures`), like every other figure.
"""

from __future__ import annotations

import pandas as pd

from engine.events import STEP_LOSS, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS

LIVE_METRICS = (STEP_LOSS, TRAIN_LOSS, VAL_LOSS, TRAIN_ACC, VAL_ACC)
_EMPTY = pd.DataFrame({"id": pd.Series(dtype="int64"), "step": pd.Series(dtype="int64"),
                       "epoch": pd.Series(dtype="float64"), "name": pd.Series(dtype="object"),
                       "value": pd.Series(dtype="float64")})


def update_cache(cache: dict, store, run_ids) -> dict[str, pd.DataFrame]:
    """Bring each run's cached metrics up to date with one `after_id` read; drop runs no
    longer shown. Returns {run_id: frame with id, step, epoch, name, value}."""
    run_ids = list(run_ids)
    for rid in list(cache):
        if rid not in run_ids:
            del cache[rid]
    for rid in run_ids:
        entry = cache.setdefault(rid, {"after": 0, "frame": _EMPTY})
        new = store.read_metrics(rid, names=LIVE_METRICS, after_id=entry["after"])
        if len(new):
            new = new[["id", "step", "epoch", "name", "value"]]
            entry["frame"] = new if not len(entry["frame"]) else \
                pd.concat([entry["frame"], new], ignore_index=True)
            entry["after"] = int(new["id"].iloc[-1])
    return {rid: cache[rid]["frame"] for rid in run_ids}
