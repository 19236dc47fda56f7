"""Benchmark of the Compare chart: build + serialize a figure of 20 runs x 10,000 steps.

Measures `plots.build_figure` and `fig.to_json()` (what Streamlit sends to the browser) for
the same synthetic runs with min/max downsampling (max_points 2000, the default) and without
it (max_points above the run length), plain and smoothed and grouped over seeds, side by
side in one run, and prints the machine it ran on. Budget: well under 1 s per figure.

    .venv/bin/python bench/bench_charts.py [--runs 20] [--steps 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import plots  # noqa: E402
from engine.events import STEP_LOSS, RunStatus  # noqa: E402


def synthetic(n_runs: int, n_steps: int):
    """A metrics frame like the store's (one STEP_LOSS row per step per run) and the runs:
    5 optimizers/lrs x (n_runs / 5) seeds, a noisy decaying loss with spikes, one diverged."""
    rng = np.random.default_rng(0)
    frames, runs = [], []
    t0 = 1_700_000_000.0
    steps = np.arange(1, n_steps + 1)
    for i in range(n_runs):
        rid = f"run-{i:03d}"
        lr = [0.1, 0.03, 0.01, 0.003, 0.001][i % 5]
        loss = 2.3 * np.exp(-steps * lr / 50) + 0.1 + 0.05 * rng.standard_normal(n_steps)
        loss[rng.integers(0, n_steps, 20)] *= 5                        # spikes
        status, reason = RunStatus.COMPLETED, ""
        if i == n_runs - 1:
            loss[n_steps // 2:] = np.nan
            status, reason = RunStatus.DIVERGED, f"loss is nan at step {n_steps // 2 + 1}"
        frames.append(pd.DataFrame({
            "id": np.arange(n_steps) + i * n_steps, "run": rid, "step": steps,
            "epoch": steps / 235.0, "name": STEP_LOSS, "value": loss,
            "time": t0 + steps * 0.01}))
        runs.append(SimpleNamespace(
            id=rid, name=f"run {i}", status=status, reason=reason, started_at=t0,
            last_step=n_steps, config={"optimizer": "sgd", "lr": lr, "seed": i // 5}))
    return pd.concat(frames, ignore_index=True), runs


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5, help="best of N timings")
    args = ap.parse_args(argv)

    frame, runs = synthetic(args.runs, args.steps)
    print(f"machine: {platform.platform()} · python {platform.python_version()} · "
          f"{platform.processor() or platform.machine()} · cpu count {os.cpu_count()}")
    print(f"data: {args.runs} runs x {args.steps:,} steps = {len(frame):,} points "
          f"(best of {args.repeat})")
    cases = [
        ("downsampled (max_points 2000)", dict(max_points=2000)),
        ("full (no downsampling)", dict(max_points=args.steps + 1)),
        ("downsampled + smoothing 0.9", dict(max_points=2000, smoothing=0.9)),
        ("full + smoothing 0.9", dict(max_points=args.steps + 1, smoothing=0.9)),
        ("downsampled, grouped by seed", dict(max_points=2000, average_over="seed")),
    ]
    print(f"{'case':34s} {'build s':>8s} {'to_json s':>10s} {'total s':>8s} {'traces':>7s} "
          f"{'points':>9s} {'JSON MB':>8s}")
    for label, kw in cases:
        opts = plots.ChartOptions(metric=STEP_LOSS, **kw)
        fig = plots.build_figure(frame, runs, opts)
        build = timed(lambda: plots.build_figure(frame, runs, opts), args.repeat)
        ser = timed(lambda: fig.to_json(), args.repeat)
        total = timed(lambda: plots.build_figure(frame, runs, opts).to_json(), args.repeat)
        points = sum(len(t.x) for t in fig.data if t.x is not None)
        size = len(fig.to_json()) / 1e6
        print(f"{label:34s} {build:8.3f} {ser:10.3f} {total:8.3f} {len(fig.data):7d} "
              f"{points:9,d} {size:8.2f}")


if __name__ == "__main__":
    main()
