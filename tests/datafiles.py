"""Tiny dataset archives in the official formats, written by the tests themselves.

The suite never needs ../shared: tests that train on "mnist" or "fashion-mnist" call
`write_idx_dataset` to lay out `<root>/<Folder>/raw/*-ubyte.gz` with a few random images.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding of a uint8 array: magic (0x08 = ubyte, ndim), sizes, raw bytes.
    A test may pass another `magic` to make a file the reader must refuse."""
    magic = (0x08 << 8 | array.ndim) if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(root: Path, dataset: str = "mnist", n_train: int = 64, n_test: int = 32,
                      seed: int = 0) -> Path:
    """Write the four official .gz archives of a small random image set; return `root`."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / FOLDERS[dataset] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    parts = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, array in parts.items():
        with gzip.open(raw / f"{name}.gz", "wb") as f:
            f.write(idx_bytes(np.asarray(array)))
    return Path(root)
