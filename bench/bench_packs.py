"""Benchmark: K runs of one shape packed into one stacked model vs trained one by one.

For K = 1, 4, 8, 16 members of (a) the Homework 8 2x20 MLP ("hw8") and (b) its depth-20
variant ("depth20": 20 hidden layers of 20 ReLU units), one epoch of Fashion-MNIST each
(SGD lr 1e-3, batch 256, seeds 0..K-1), measured in this one process:
  packed      engine.trainer.train_runs on all K at once (one pack);
  one after another  engine.trainer.train K times in a row;
  concurrent  the job manager's workers (pack false, one run per core), K runs.
Every time (the best of --repeat) is divided by the time of ONE solo run of the same model,
measured first (after a warm-up run), and
printed as `pack <model> K=<k>: <x>x the time of one run` (and `one after another ...`,
`concurrent ...`). Diagnostics are off in every run unless --diagnostics (then packed and
solo runs both collect them). The dataset is read once before any timing (cached).
Threads: each run or pack gets engine.packs.intra_op_threads of its size, as in the app.

How far from the limit: for every packed MLP it also prints the pack's time against a floor
measured in the same run: only the batched matmuls of the pack's epoch (forward, weight and
input gradients of every training step, and the forward of its evaluations), timed alone on
the same shapes and threads. `floor` is what the arithmetic costs at the GEMM rate this CPU
reaches for those shapes; the rest is everything else (elementwise work, optimizer, loss,
indexing, Python).

With --threads it times one run of each model on 1 and on 2 intra-op threads.
With --grid it also trains the Homework 8 depth-20 grid (4 variants: plain, course layer
norm, course batch norm, post residual; x 3 seeds; --grid-epochs epochs) end to end through
the job manager, packed vs today's scheduling (pack false), and prints both wall times.

On CUDA (--device cuda) it adds K = 64 and prints the share of the packed run's time the
GPU was busy, from torch.cuda events around each training call's kernels (profiler).

Usage: python bench/bench_packs.py [--data-dir ../shared/data] [--ks 1,4,8,16]
       [--models hw8,depth20,mnist-cnn] [--train-subset N] [--modes packed,sequential,concurrent]
       [--grid] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.config import RunConfig  # noqa: E402
from engine.data import prepare_data  # noqa: E402
from engine.config import plan_steps, train_size  # noqa: E402
from engine.packs import intra_op_threads  # noqa: E402
from engine.trainer import resolve_device, train, train_runs  # noqa: E402

MODELS = {"hw8": dict(depth=2, width=[20]), "depth20": dict(depth=20, width=[20]),
          "mnist-cnn": dict(model="mnist-cnn")}     # the CNN: grouped convolutions
GRID_VARIANTS = {"plain": {}, "layer": dict(norm="layer", norm_impl="course"),
                 "batch": dict(norm="batch", norm_impl="course"), "residual": dict(residual="post")}


def base_config(args, model: str, seed: int = 0, **changes) -> RunConfig:
    return RunConfig.from_dict({"dataset": "fashion-mnist", "data_dir": args.data_dir,
                                "epochs": 1, "train_subset": args.train_subset,
                                "device": args.device, "diagnostics": args.diagnostics,
                                "seed": seed, **MODELS[model], **changes})


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def solo(cfg: RunConfig) -> None:
    torch.set_num_threads(intra_op_threads(cfg, 1))
    ended = train(cfg, run_id="solo", emit=lambda e: None)
    assert ended.status == "completed", ended


def packed(cfgs: list[RunConfig]) -> None:
    torch.set_num_threads(intra_op_threads(cfgs[0], len(cfgs)))
    ended = train_runs(cfgs, run_ids=[f"m{i}" for i in range(len(cfgs))], emit=lambda e: None)
    assert all(e.status == "completed" for e in ended), ended


def matmul_floor(cfg: RunConfig, members: int, device, repeat: int) -> float:
    """Seconds the batched matmuls of one packed epoch of an MLP take on their own: per
    training step, for each Linear (K, B, in) @ (K, in, out) forward, the weight gradient
    (K, in, B) @ (K, B, out) and, except the first layer's, the input gradient
    (K, B, out) @ (K, out, in); per evaluation the forward of every example, shared by the
    members ((n, in) @ (in, K*out) for the first layer, then batched). Same thread count."""
    widths = [784] + cfg.hidden_widths + [10]
    total = plan_steps(cfg, train_size(cfg))[2]        # steps of the epoch (the last batch
    batch = cfg.batch_size                              # counted full: a floor a bit high)
    evaluated = min(cfg.train_eval_size, train_size(cfg)) + 10_000   # train subset + test set
    torch.set_num_threads(intra_op_threads(cfg, members))
    tensors = []
    for a, b in zip(widths, widths[1:]):
        tensors.append((torch.randn(members, batch, a, device=device),
                        torch.randn(members, a, b, device=device),
                        torch.randn(members, batch, b, device=device)))
    eval_x = torch.randn(4096, widths[0], device=device)
    first_w = torch.randn(widths[0], members * widths[1], device=device)

    def step():
        for index, (x, w, g) in enumerate(tensors):
            torch.bmm(x, w)                                # forward
            torch.bmm(x.transpose(1, 2), g)                # weight gradient
            if index:
                torch.bmm(g, w.transpose(1, 2))            # input gradient

    def evaluation():
        for start in range(0, evaluated, 4096):
            n = min(4096, evaluated - start)
            eval_x[:n] @ first_w
            for x, w, _ in tensors[1:]:
                torch.bmm(torch.empty(members, n, w.shape[1], device=device), w)

    def epoch():
        for _ in range(total):
            step()
        evaluation()
        if device.type == "cuda":
            torch.cuda.synchronize()
    epoch()                                                # warm-up
    return min(timed(epoch) for _ in range(repeat))


def through_manager(cfgs: list[RunConfig], max_concurrent: int | None = None) -> float:
    """Wall seconds from submitting cfgs as one grid until every run has ended."""
    from engine.jobs import JobManager
    from engine.store import RunStore
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(Path(folder) / "bench.db")
        manager = JobManager(store, max_concurrent=max_concurrent)
        start = time.perf_counter()
        ids = manager.submit_many([(c, "", ()) for c in cfgs])
        while not all(manager.progress(r).status in ("completed", "failed", "diverged",
                                                     "stopped", "interrupted") for r in ids):
            time.sleep(0.01)
        took = time.perf_counter() - start
        bad = [manager.progress(r).reason for r in ids if manager.progress(r).status != "completed"]
        manager.shutdown(timeout=10)
        store.close()
        assert not bad, bad
        return took


def gpu_busy_share(cfgs: list[RunConfig]) -> tuple[float, float]:
    """(wall seconds, share of them the GPU ran kernels) for one packed run, via the
    profiler's CUDA kernel times (overlapping kernels are not expected: one stream)."""
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        packed(cfgs)
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    kernel_us = sum(e.self_device_time_total for e in prof.key_averages())
    return wall, kernel_us / 1e6 / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--ks", default="1,4,8,16")
    parser.add_argument("--models", default="hw8,depth20", help="also mnist-cnn (slow here)")
    parser.add_argument("--modes", default="packed,sequential,concurrent")
    parser.add_argument("--train-subset", type=int, default=0,
                        help="train on the first N images only (0 = all 60,000): a quick check")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many timings")
    parser.add_argument("--threads", action="store_true", help="also time one run of each "
                        "model on 1 and on 2 intra-op threads (run it beside a busy process too)")
    parser.add_argument("--diagnostics", action="store_true",
                        help="collect per-layer diagnostics in every run (default off)")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the matmul floor of each packed MLP")
    parser.add_argument("--grid", action="store_true")
    parser.add_argument("--grid-epochs", type=int, default=10)
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]

    def best(fn, seconds_fn=None) -> float:
        """The shortest of args.repeat timings (the least disturbed by other processes)."""
        return min(seconds_fn() if seconds_fn else timed(fn) for _ in range(args.repeat))
    modes = args.modes.split(",")
    device = resolve_device(args.device)
    if device.type == "cuda" and 64 not in ks:
        ks.append(64)
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, device {device}, "
          f"train subset {args.train_subset or 'all'}; load average {os.getloadavg()[0]:.2f}")
    prepare_data(base_config(args, "hw8"), device)        # read and cache the dataset once

    for model in args.models.split(","):
        one = base_config(args, model)
        solo(one)                                           # warm-up (allocator, kernels)
        t1 = best(lambda: solo(one))
        print(f"one {model} run: {t1:.2f} s ({intra_op_threads(one, 1)} thread)")
        if args.threads:
            for threads in (1, 2):
                def on_threads():
                    torch.set_num_threads(threads)
                    train(one, run_id="solo", emit=lambda e: None)
                print(f"threads {model}: {best(on_threads):.2f} s on {threads} thread(s)")
        for k in ks:
            cfgs = [base_config(args, model, seed=s) for s in range(k)]
            if "packed" in modes:
                if device.type == "cuda":
                    wall, busy = gpu_busy_share(cfgs)
                    print(f"pack {model} K={k}: {wall / t1:.2f}x the time of one run "
                          f"(GPU busy {busy:.0%} of it)")
                else:
                    took = best(lambda: packed(cfgs))
                    floor = ""
                    if not args.no_floor and one.model == "mlp":
                        f = matmul_floor(one, k, device, args.repeat)
                        floor = f"; {took:.2f} s against a matmul floor of {f:.2f} s " \
                                f"({took / f:.1f}x the floor)"
                    print(f"pack {model} K={k}: {took / t1:.2f}x the time of one run "
                          f"({intra_op_threads(one, k)} thread(s){floor})")
            if "sequential" in modes and k > 1:
                took = best(lambda: [solo(c) for c in cfgs])
                print(f"one after another {model} K={k}: {took / t1:.2f}x the time of one run")
            if "concurrent" in modes and k > 1:
                took = best(None, lambda: through_manager([c.replace(pack=False)
                                                           for c in cfgs]))
                print(f"concurrent {model} K={k}: {took / t1:.2f}x the time of one run")
        sys.stdout.flush()

    if args.grid:
        grid = [base_config(args, "depth20", seed=s, epochs=args.grid_epochs, **variant)
                for variant in GRID_VARIANTS.values() for s in range(3)]
        packed_s = through_manager(grid)
        today_s = through_manager([c.replace(pack=False) for c in grid])
        print(f"grid depth20 4 variants x 3 seeds, {args.grid_epochs} epochs: packed "
              f"{packed_s:.1f} s, today's scheduling {today_s:.1f} s "
              f"({today_s / packed_s:.2f}x faster packed)")


if __name__ == "__main__":
    main()
