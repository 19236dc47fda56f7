"""Benchmark: what per-layer diagnostics cost a training step (engine/diagnostics.py).

Two measurements, both on the default run (Fashion-MNIST, 2x20 ReLU MLP, SGD lr 1e-3, batch
256) unless --depth says otherwise, with the dataset already cached:
1. the step loop alone: STEPS optimizer steps without a collector, then with one collecting
   every `diag_every` steps (the config's default), best of REPEATS each, interleaved;
2. one whole epoch through `trainer.train` with diagnostics off and on (evaluation included).
Prints seconds per step, seconds per epoch and the overhead ratios (on / off - 1). The
`diagnostics` option is on by default only while ratio 1 stays under 10%.

Usage: python bench/bench_diagnostics.py [--data-dir ../shared/data] [--depth 2] [--steps 400]
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
from engine.models import build_model  # noqa: E402
from engine.optim import build_optimizer  # noqa: E402
from engine.trainer import resolve_device, train  # noqa: E402

REPEATS = 5   # the machine is shared: the best of several interleaved runs is the cost


def step_loop(cfg: RunConfig, steps: int, collect: bool) -> float:
    """Seconds per optimizer step over `steps` steps (losses read back each step, as on CPU)."""
    device = resolve_device(cfg.device)
    data = prepare_data(cfg, device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.input_shape, data.num_classes).to(device)
    optimizer = build_optimizer(cfg, model.parameters())
    collector = diagnostics.Collector(
        model, optimizer, lambda s: s % cfg.diag_every == 0) if collect else None
    generator = torch.Generator().manual_seed(cfg.seed)
    batches = []
    while len(batches) < steps:
        batches += batch_indices(len(data.y_train), cfg.batch_size, generator, True, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for index in batches[:steps]:
        loss = F.cross_entropy(model(data.x_train[index]), data.y_train[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
        if collector:
            collector.take()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps


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
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)   # as the job manager runs a CPU run
    cfg = RunConfig(data_dir=args.data_dir, depth=args.depth, epochs=1, device=args.device)
    print(f"run: fashion-mnist, mlp depth {cfg.depth} width {cfg.width}, batch {cfg.batch_size}, "
          f"diag_every {cfg.diag_every}, device {args.device}, torch threads 1")
    step_loop(cfg, 20, False)                     # load and cache the data, warm up
    off, on = [], []
    for _ in range(REPEATS):
        off.append(step_loop(cfg, args.steps, False))
        on.append(step_loop(cfg, args.steps, True))
    step_off, step_on = min(off), min(on)
    print(f"step loop ({args.steps} steps, best of {REPEATS}): off {1e3 * step_off:.3f} ms/step, "
          f"on {1e3 * step_on:.3f} ms/step, overhead ratio {step_on / step_off - 1:+.1%}")
    epochs_off, epochs_on = [], []
    for _ in range(REPEATS):
        epochs_off.append(one_epoch(cfg.replace(diagnostics=False)))
        epochs_on.append(one_epoch(cfg.replace(diagnostics=True)))
    epoch_off, epoch_on = min(epochs_off), min(epochs_on)
    print(f"one epoch with evaluation (best of {REPEATS}): off {epoch_off:.3f} s, "
          f"on {epoch_on:.3f} s, overhead ratio {epoch_on / epoch_off - 1:+.1%}")


if __name__ == "__main__":
    main()
