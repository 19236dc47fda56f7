"""Benchmark: this checkout against an earlier commit, side by side, in one run.

Speed must not regress when the training path changes: this script checks out REF (default:
the last commit before the one-loop restructuring) into a temporary git worktree and times
the same work with each tree's engine, alternating old/new over --rounds rounds (the best of
each, so a burst of load on this shared machine hurts both alike):
  epoch    one cached Fashion-MNIST epoch of the Homework 8 2x20 MLP (engine.trainer.train);
  pack K   one epoch of K packed members of the 2x20 MLP and of its depth-20 variant;
and once, for the ratio, the seed notebook's DataLoader epoch (bench/bench_train.py's loop).
Prints per measurement old s, new s, new/old, and for the epoch the seed loop's ratio with
each engine; for packs their time relative to one solo run of the same tree.

Usage: python bench/bench_before_after.py [--ref f699a96] [--data-dir ../shared/data]
       [--rounds 3] [--ks 8] [--train-subset 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run inside one tree's engine (PYTHONPATH); works with both the old API (packs.train_pack)
# and the new one (trainer.train_runs). Prints one JSON object.
MEASURE = r"""
import json, sys, time
import torch
from engine.config import RunConfig
from engine.data import prepare_data
from engine.packs import intra_op_threads
from engine.trainer import train
try:
    from engine.trainer import train_runs as pack
except ImportError:
    from engine.packs import train_pack as pack
args = json.loads(sys.argv[1])
def cfg(seed=0, **more):
    return RunConfig.from_dict({"dataset": "fashion-mnist", "data_dir": args["data_dir"],
        "epochs": 1, "train_subset": args["train_subset"], "device": "cpu",
        "diagnostics": False, "seed": seed, **more})
def timed(fn):
    start = time.perf_counter(); fn(); return time.perf_counter() - start
prepare_data(cfg(), "cpu")
out = {}
one = cfg()
torch.set_num_threads(intra_op_threads(one, 1))
train(one, run_id="w", emit=lambda e: None)                       # warm-up
out["epoch"] = timed(lambda: train(one, run_id="a", emit=lambda e: None))
for name, shape in (("hw8", {}), ("depth20", {"depth": 20})):
    solo = cfg(**shape)
    torch.set_num_threads(intra_op_threads(solo, 1))
    out[f"solo {name}"] = timed(lambda: train(solo, run_id="s", emit=lambda e: None))
    for k in args["ks"]:
        members = [cfg(seed=s, **shape) for s in range(k)]
        torch.set_num_threads(intra_op_threads(members[0], k))
        out[f"pack {name} K={k}"] = timed(lambda: pack(members, run_ids=[f"m{i}" for i in
                                          range(k)], emit=lambda e: None))
print(json.dumps(out))
"""


def measure(tree: Path, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    payload = json.dumps({"data_dir": args.data_dir, "train_subset": args.train_subset,
                          "ks": args.ks})
    done = subprocess.run([sys.executable, "-c", MEASURE, payload], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise SystemExit(f"measuring {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def seed_loop(args) -> float:
    """The notebook's loop, one epoch (bench/bench_train.py's, on its own extracted copy)."""
    import shutil
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_train import extracted_copy, seed_loop_epoch
    import torch
    torch.set_num_threads(1)
    root = extracted_copy(Path(args.data_dir))
    try:
        return min(seed_loop_epoch(root) for _ in range(2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="f699a96")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ks", default="8")
    parser.add_argument("--train-subset", type=int, default=0)
    args = parser.parse_args()
    args.data_dir = str(Path(args.data_dir).resolve())
    args.ks = [int(k) for k in args.ks.split(",")]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; old = {args.ref}, new = this checkout")
    with tempfile.TemporaryDirectory() as folder:
        old_tree = Path(folder) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old_tree),
                        args.ref], check=True, capture_output=True)
        try:
            runs = {"old": [], "new": []}
            for round_ in range(args.rounds):
                for name, tree in (("old", old_tree), ("new", ROOT)):
                    runs[name].append(measure(tree, args))
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(old_tree)], capture_output=True)
    best = {name: {key: min(r[key] for r in rounds) for key in rounds[0]}
            for name, rounds in runs.items()}
    seed = seed_loop(args) if not args.train_subset else None   # a whole epoch only
    print(f"\n{'measurement':<22} {'old s':>8} {'new s':>8} {'new/old':>8}")
    for key in best["old"]:
        old, new = best["old"][key], best["new"][key]
        print(f"{key:<22} {old:8.3f} {new:8.3f} {new / old:8.2f}")
    if seed is not None:
        print(f"\nseed notebook loop, one epoch: {seed:.2f} s; ratio seed/engine: "
              f"old {seed / best['old']['epoch']:.1f}x, new {seed / best['new']['epoch']:.1f}x")
    for key in best["old"]:
        if key.startswith("pack"):
            model = key.split()[1]
            print(f"{key}: old {best['old'][key] / best['old'][f'solo {model}']:.2f}x, new "
                  f"{best['new'][key] / best['new'][f'solo {model}']:.2f}x the time of one run")


if __name__ == "__main__":
    main()
