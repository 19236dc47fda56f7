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
import socket
import threading
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


# torchvision's first mirror per dataset: probed (TCP connect, DOWNLOAD_PROBE_S) before a
# download is tried, so an offline machine says "not found" in about a second, not the 15 s
# torchvision spends on its mirrors.
MIRRORS = {"mnist": ("ossci-datasets.s3.amazonaws.com", 443),
           "fashion-mnist": ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
           "cifar10": ("www.cs.toronto.edu", 443)}
DOWNLOAD_PROBE_S = 1.0
_failed_downloads: set = set()      # (dataset, folder) this process tried and could not fetch
_download_lock = threading.Lock()


def _mirror_reachable(dataset: str, timeout: float = DOWNLOAD_PROBE_S) -> bool:
    """Whether the dataset's mirror answers a TCP connect within `timeout` seconds (a name
    lookup that hangs counts as no: the probe runs in a thread joined with the timeout)."""
    host, port = MIRRORS[dataset]
    answered = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answered.append(True)
        except OSError:
            pass
    thread = threading.Thread(target=probe, name="trainlab-mirror-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def try_download(dataset: str, folder: Path) -> bool:
    """Let torchvision fetch the archives into the data folder; False when it cannot. A
    failed attempt is not repeated in this process (a second Run costs nothing), and without
    a reachable mirror it fails in about DOWNLOAD_PROBE_S seconds."""
    key = (dataset, str(Path(folder).resolve()))
    with _download_lock:
        if key in _failed_downloads:
            return False
    if not _mirror_reachable(dataset) or not _download(dataset, folder):
        with _download_lock:
            _failed_downloads.add(key)
        return False
    return True


def _download(dataset: str, folder: Path) -> bool:
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
