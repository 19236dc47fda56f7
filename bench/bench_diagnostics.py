"""Benchmark: what per-layer diagnostics cost a training step (engine/diagnostics.py).

Measurements on the default run (Fashion-MNIST, 2x20 ReLU MLP, SGD lr 1e-3, batch 256)
unless --depth says otherwise, with the dataset already cached, interleaved, best of REPEATS:
1. the step loop alone (engine.stepper.SoloStepper, the loop's own step): STEPS steps without
   collecting, then collecting every `diag_every` steps (the config's default) with the
   per-layer statistics and histograms, then the statistics without histograms: the
   histograms' share of the cost separately;
2. one whole epoch through `trainer.train` with diagnostics off and on (evaluation included),
   and with sharpness estimated every --sharpness-every steps (off by default in a run).
Prints seconds per step and per epoch and the overhead ratios (on / off - 1). The
`diagnostics` option is on by default only while the step loop's ratio stays under 10%.

Usage: python bench/bench_diagnostics.py [--data-dir ../shared/data] [--depth 2] [--steps 400]
       [--sharpness-every 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from engine import diagnostics  # noqa: E402
from engine.config import RunConfig  # noqa: E402
from engine.data import batch_indices, prepare_data  # noqa: E402
from engine.stepper import SoloStepper  # noqa: E402
from engine.trainer import resolve_device, train  # noqa: E402

REPEATS = 5   # the machine is shared: the best of several interleaved runs is the cost


def step_loop(cfg: RunConfig, steps: int, collect: bool, histograms: bool = True) -> float:
    """Seconds per optimizer step over `steps` steps (losses read back each step, as on CPU);
    collecting every cfg.diag_every steps when `collect`, without the histograms when not
    `histograms`."""
    device = resolve_device(cfg.device)
    data = prepare_data(cfg, device)
    generator = torch.Generator().manual_seed(cfg.seed)
    stepper = SoloStepper(cfg, generator, data, device, 1)
    batches = []
    while len(batches) < steps:
        batches += batch_indices(len(data.y_train), cfg.batch_size, generator, True, device)
    real = diagnostics.layer_histograms
    if not histograms:
        diagnostics.layer_histograms = lambda layers, w, *rest: [{}] * len(w[0])
    try:
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for step, index in enumerate(batches[:steps], start=1):
            losses, _ = stepper.step(data.x_train[index][None], data.y_train[index][None],
                                     collect=collect and step % cfg.diag_every == 0)
            losses.tolist()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - started) / steps
    finally:
        diagnostics.layer_histograms = real


def one_epoch(cfg: RunConfig) -> float:
    started = time.perf_counter()
    end = train(cfg, run_id="bench", emit=lambda event: None)
    assert end.status == "completed", end
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--sharpness-every", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)   # as the job manager runs a CPU run
    cfg = RunConfig(data_dir=args.data_dir, depth=args.depth, epochs=1, device=args.device)
    print(f"run: fashion-mnist, mlp depth {cfg.depth} width {cfg.width}, batch {cfg.batch_size}, "
          f"diag_every {cfg.diag_every}, device {args.device}, torch threads 1")
    step_loop(cfg, 20, False)                     # load and cache the data, warm up
    off, on, plain = [], [], []
    for _ in range(REPEATS):
        off.append(step_loop(cfg, args.steps, False))
        on.append(step_loop(cfg, args.steps, True))
        plain.append(step_loop(cfg, args.steps, True, histograms=False))
    step_off, step_on, step_plain = min(off), min(on), min(plain)
    print(f"step loop ({args.steps} steps, best of {REPEATS}): off {1e3 * step_off:.3f} ms/step; "
          f"statistics and histograms {1e3 * step_on:.3f} ms/step, overhead ratio "
          f"{step_on / step_off - 1:+.1%}; without histograms {1e3 * step_plain:.3f} ms/step "
          f"({step_plain / step_off - 1:+.1%}): histograms {step_on / step_plain - 1:+.1%}")
    epochs_off, epochs_on, epochs_sharp = [], [], []
    for _ in range(REPEATS):
        epochs_off.append(one_epoch(cfg.replace(diagnostics=False)))
        epochs_on.append(one_epoch(cfg.replace(diagnostics=True)))
        epochs_sharp.append(one_epoch(cfg.replace(diagnostics=True,
                                                  sharpness_every=args.sharpness_every)))
    epoch_off, epoch_on, epoch_sharp = min(epochs_off), min(epochs_on), min(epochs_sharp)
    print(f"one epoch with evaluation (best of {REPEATS}): off {epoch_off:.3f} s, "
          f"on {epoch_on:.3f} s, overhead ratio {epoch_on / epoch_off - 1:+.1%}; with sharpness "
          f"every {args.sharpness_every} steps {epoch_sharp:.3f} s "
          f"({epoch_sharp / epoch_on - 1:+.1%} over diagnostics on)")


if __name__ == "__main__":
    main()
