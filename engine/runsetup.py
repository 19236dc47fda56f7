"""What every run needs before its first step, in one place for the training loop and the probe.

This module owns: which device a run trains on (`resolve_device`, `available_devices`), the
seeded build of a run's model (`seeded_model`: initialization drawn from torch's global
generator under one process-wide lock, so two runs starting at once never interleave their
draws), dropout drawn from the run's own generator (`GeneratorDropout`,
`draw_dropout_from`), the words a failure is reported in (`describe_error`,
`OUT_OF_MEMORY`, `release_memory`), and what a run records about the code and machine that
produced it (`provenance`).

Reproducibility: initialization comes from `torch.manual_seed(cfg.seed)` taken under
GLOBAL_RNG_LOCK; shuffling and dropout masks come from the run's own CPU generator seeded
with cfg.seed. The same config and seed therefore give the same curve on the same device and
thread count, whether the run trains alone, in a pack, or beside other runs.
"""

from __future__ import annotations

import functools
import gc
import os
import platform
import subprocess
import threading
from pathlib import Path

import torch
from torch import nn

from engine.config import RunConfig

# Model construction draws from torch's process-wide generator; this lock keeps two runs
# starting at once from interleaving their draws (which would make init depend on timing).
GLOBAL_RNG_LOCK = threading.Lock()

OUT_OF_MEMORY = "out of memory"


# --- device ----------------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    """auto: cuda, then mps, then cpu. A named device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available here; "
                           "use device auto or cpu")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"device {name!r} does not exist; this machine has "
                           f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not _mps_available():
        raise RuntimeError(f"device {name!r} was asked for but MPS is not available here")
    return device


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def available_devices() -> list[str]:
    """Device names a run may ask for on this machine: auto, cpu, and what torch finds."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


# --- the seeded build ----------------------------------------------------------------------------

def seeded_model(cfg: RunConfig, input_shape: tuple, num_classes: int,
                 device: torch.device | str = "cpu") -> nn.Module:
    """cfg's model with cfg.seed's initialization, on `device`, its dropout drawn from a fresh
    generator seeded with cfg.seed (the run's own: pass `generator` to draw_dropout_from
    again when the run's generator must also shuffle)."""
    from engine.models import build_model   # lazy: the probe and the loop import this module
    with GLOBAL_RNG_LOCK:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, input_shape, num_classes)
    return model.to(device)


class GeneratorDropout(nn.Module):
    """Dropout whose masks come from the run's own generator (nn.Dropout uses the global one)."""

    def __init__(self, p: float, generator: torch.Generator):
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        # Masks are drawn on the CPU generator and moved: a CUDA tensor cannot use a CPU
        # generator, and a per-run CUDA generator would tie the run to one device.
        mask = torch.bernoulli(torch.full(x.shape, keep), generator=self.generator)
        return x * mask.to(x.device) / keep


def draw_dropout_from(model: nn.Module, generator: torch.Generator) -> None:
    """Replace every nn.Dropout in `model` by a GeneratorDropout drawing from `generator`."""
    for name, child in model.named_children():
        if isinstance(child, nn.Dropout):
            setattr(model, name, GeneratorDropout(child.p, generator))
        else:
            draw_dropout_from(child, generator)


# --- failures in words -------------------------------------------------------------------------

def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
        or "not enough memory" in text)


def describe_error(error: BaseException) -> str:
    """A failure as a run's reason: "out of memory", our own errors as their sentence, any
    other error with its type in front."""
    if is_out_of_memory(error):
        return OUT_OF_MEMORY
    message = str(error).strip() or type(error).__name__
    # Our own errors (missing data, bad device) read as sentences; others keep their type.
    if type(error).__name__ in ("DataMissingError", "DataCorruptError", "ConfigError",
                                "RuntimeError"):
        return message
    return f"{type(error).__name__}: {message}"


def release_memory() -> None:
    """After a failure (out of memory above all): free cycles holding big tensors. A run that
    ends normally frees its model by reference counting, so only failures pay for this."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- provenance --------------------------------------------------------------------------------

PACKAGE_VERSION = "0.1.0"     # Train Lab's version where there is no git checkout (pyproject)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`git describe --always --dirty --tags` of the checkout this engine runs from, e.g.
    "f699a96-dirty"; "trainlab 0.1.0" outside a checkout (a Ray node gets the package only)."""
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        try:
            out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty",
                                  "--tags"], capture_output=True, text=True, timeout=5)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return f"trainlab {PACKAGE_VERSION}"


def provenance(device: torch.device | str, *, pack_size: int = 1, pack_member: int = 0) -> dict:
    """What produced a run, stored with it: code version, library versions, device, intra-op
    thread count (it changes float summation order, so curves on a CPU depend on it), and
    the pack it trained in. Plain JSON-ready values."""
    import numpy
    return {"code_version": code_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "python": platform.python_version(),
            "device": str(device), "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count() or 0, "pack_size": pack_size,
            "pack_member": pack_member}
