"""Where each dataset's files live and whether they are there, without reading them.

This module owns the file names and folders of MNIST, Fashion-MNIST (the official IDX
archives under <data dir>/<Name>/raw/) and CIFAR-10 (the python archive or its extracted
folder), the message that tells a user which files to put where, and the one attempt to let
torchvision download them. Torch-free until a download is tried, so the pages can say "the
files are missing" without loading torch; engine/data.py reads the files.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from engine import config, paths

IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
IDX_FILES = {  # role -> file name without .gz (the archives come as .gz; plain files work too)
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"


def missing_message(dataset: str, folder: Path, missing: FileNotFoundError) -> str:
    if dataset == "cifar10":
        where = (f"put {CIFAR_ARCHIVE} (or its extracted folder {CIFAR_FOLDER}/ with "
                 f"{', '.join(CIFAR_TRAIN_BATCHES)}, {CIFAR_TEST_BATCH}) in {folder}/")
    else:
        raw = folder / IDX_FOLDERS[dataset] / "raw"
        names = ", ".join(f"{name}.gz" for name in IDX_FILES.values())
        where = f"put these 4 files (gzipped or not) in {raw}/: {names}"
    return (f"{dataset} data not found ({missing} is missing) and could not be downloaded "
            f"(no network?): {where}. "
            f"To use another folder, set TRAINLAB_DATA_DIR or pass --data-dir "
            f"(the run's data_dir option).")


def missing_files(cfg: config.RunConfig) -> str | None:
    """None when the run's dataset files are there (or could be fetched); else the message
    of the DataMissingError a run would end with. Cheap: looks for files, reads none."""
    if cfg.dataset in config.TOY_DATASETS:
        return None
    folder = paths.data_dir(cfg.data_dir)
    try:
        if cfg.dataset == "cifar10":
            wanted = CIFAR_TRAIN_BATCHES + (CIFAR_TEST_BATCH,)
            absent = [n for n in wanted if not (folder / CIFAR_FOLDER / n).is_file()]
            if absent and not (folder / CIFAR_ARCHIVE).is_file():
                # A partly extracted folder is as good as none: name what is missing.
                raise FileNotFoundError(str(folder / CIFAR_FOLDER / absent[0])
                                        if len(absent) < len(wanted)
                                        else str(folder / CIFAR_ARCHIVE))
        else:
            for name in IDX_FILES.values():
                idx_path(folder, cfg.dataset, name)
    except FileNotFoundError as missing:
        if try_download(cfg.dataset, folder):
            return None
        return missing_message(cfg.dataset, folder, missing)
    return None


def try_download(dataset: str, folder: Path) -> bool:
    """Let torchvision fetch the archives into the data folder; False when it cannot."""
    try:
        from torchvision import datasets
        cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST,
               "cifar10": datasets.CIFAR10}[dataset]
        # torchvision prints each failed mirror to stdout; our own message says it better.
        with contextlib.redirect_stdout(io.StringIO()):
            cls(root=str(folder), train=True, download=True)
            cls(root=str(folder), train=False, download=True)
        return True
    except Exception:   # no network, read-only folder, bad mirror: report the files instead
        return False


def idx_path(folder: Path, dataset: str, name: str) -> Path:
    raw = folder / IDX_FOLDERS[dataset] / "raw"
    for candidate in (raw / f"{name}.gz", raw / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(str(raw / f"{name}.gz"))
