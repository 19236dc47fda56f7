"""Benchmark: one epoch of the Homework 8 MLP on Fashion-MNIST, seed loop vs engine.

Both run in this one process, one after the other, on the same machine and thread count:
1. the loop as the seed notebook wrote it: torchvision FashionMNIST with
   Compose([ToTensor(), Normalize]), a DataLoader with batch 256 and shuffle, per-batch
   `.to(device)`, then a validation pass over the 10,000 test images;
2. the engine: `trainer.train` on the same config (2x20 ReLU MLP, SGD lr 1e-3, batch 256,
   one epoch), which also evaluates on 1,000 training and the 10,000 validation images.
The engine's time is shown with the dataset load (first run in the process) and without it
(cached, as every later run in the app sees). Prints both times and their ratio.

Usage: python bench/bench_train.py [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from engine.config import RunConfig  # noqa: E402
from engine.trainer import train  # noqa: E402

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def seed_loop_epoch(root: str, device: str = "cpu") -> float:
    """The Homework 8 notebook's data pipeline and training loop, one epoch; returns seconds."""
    from torch.utils.data import DataLoader
    from torchvision.datasets import FashionMNIST
    from torchvision.transforms import Compose, Normalize, ToTensor

    start = time.perf_counter()
    xforms = Compose([ToTensor(), Normalize((0.2860,), (0.3530,))])
    train_set = FashionMNIST(root=root, train=True, download=False, transform=xforms)
    valid_set = FashionMNIST(root=root, train=False, download=False, transform=xforms)
    train_loader = DataLoader(train_set, batch_size=256, shuffle=True)
    valid_loader = DataLoader(valid_set, batch_size=len(valid_set), shuffle=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 20), nn.ReLU(), nn.Linear(20, 20),
                          nn.ReLU(), nn.Linear(20, 10)).to(device)
    criterion = nn.CrossEntropyLoss()
    model.train()
    for x, y in train_loader:
        x, y = x.to(device), y.to(device)
        loss = criterion(model(x), y)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 1e-3 * p.grad
        loss.item()   # the seed reads every loss back for its running mean
    model.eval()
    with torch.no_grad():
        for x, y in valid_loader:
            x, y = x.to(device), y.to(device)
            (model(x).argmax(1) == y).float().sum().item()
    return time.perf_counter() - start


def engine_epoch(data_dir: str, device: str = "cpu") -> tuple[float, int]:
    """One epoch through the engine's trainer; returns (seconds, events emitted)."""
    events = []
    cfg = RunConfig(dataset="fashion-mnist", data_dir=data_dir, epochs=1, device=device)
    start = time.perf_counter()
    ended = train(cfg, run_id="bench", emit=events.append, should_stop=lambda: False)
    seconds = time.perf_counter() - start
    if ended.status != "completed":
        raise SystemExit(f"engine run ended {ended.status}: {ended.reason}")
    return seconds, len(events)


def extracted_copy(data_dir: Path) -> str:
    """torchvision reads the un-gzipped files and may write next to them: use a temp copy."""
    tmp = Path(tempfile.mkdtemp(prefix="trainlab-bench-"))
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        with gzip.open(data_dir / "FashionMNIST" / "raw" / f"{name}.gz") as src, \
                open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return str(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TRAINLAB_DATA_DIR")
                        or str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    if not (data_dir / "FashionMNIST" / "raw" / f"{FILES[0]}.gz").is_file():
        raise SystemExit(f"Fashion-MNIST archives not found under {data_dir}/FashionMNIST/raw")

    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    seed_root = extracted_copy(data_dir)
    try:
        engine_first, n_events = engine_epoch(str(data_dir), args.device)
        # best of 3: on a shared 2-core machine single timings of ~0.15 s jitter by 20%
        engine_cached = min(engine_epoch(str(data_dir), args.device)[0] for _ in range(3))
        seed_s = seed_loop_epoch(seed_root, args.device)
    finally:
        shutil.rmtree(seed_root, ignore_errors=True)
    print(f"seed loop (DataLoader + ToTensor + Normalize, batch 256): {seed_s:8.3f} s / epoch")
    print(f"engine, first run (includes loading the dataset):       {engine_first:8.3f} s / epoch"
          f"  ({n_events} events)")
    print(f"engine, dataset cached (every later run, best of 3):     {engine_cached:8.3f} s / epoch")
    print(f"speed-up vs seed loop: {seed_s / engine_first:6.1f}x including the load, "
          f"{seed_s / engine_cached:6.1f}x cached (aim: >= 30x)")


if __name__ == "__main__":
    main()
