"""Datasets as tensors on the device: reading the archives, toy sets, splits and batches.

This module owns turning a run's data options into `PreparedData`: the training split, the
validation split, a fixed training-evaluation subset, all as float32 / int64 tensors already
on the device. A dataset is read and converted ONCE per process and device (cached, with a
lock so two runs starting together do not both load it); every split is a slice (a view) of
the cached tensors, so runs that differ only in subset or validation split share memory.

Image archives are parsed here with gzip + numpy (the data folder may be read-only), and the
CIFAR-10 pickles are read with a restricted unpickler that only rebuilds numpy arrays and
plain containers. Batches are drawn by shuffled index (`batch_indices`), never by a
per-sample DataLoader.
"""

from __future__ import annotations

import gzip
import zlib
import io
import math
import pickle
import pickletools
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine import config, datafiles, paths
from engine.datafiles import (CIFAR_ARCHIVE, CIFAR_FOLDER, CIFAR_TEST_BATCH,
                              CIFAR_TRAIN_BATCHES, IDX_FILES, idx_path)


class DataMissingError(RuntimeError):
    """The dataset's files are not there; the message says which files to put where."""


class DataCorruptError(DataMissingError):
    """A dataset file exists but cannot be read; the message names the file and the problem.

    A subclass of DataMissingError because the fix is the same: put a good copy there.
    """


class UnsafePickleError(DataCorruptError):
    """A CIFAR batch file asked to load something other than arrays and plain containers."""


@dataclass
class PreparedData:
    x_train: torch.Tensor        # (N, C, H, W) images or (N, 2) points, float32, on the device
    y_train: torch.Tensor        # (N,) int64 class indices
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_train_eval: torch.Tensor   # the first train_eval_size training examples (fixed subset)
    y_train_eval: torch.Tensor
    input_shape: tuple           # shape of one example, e.g. (1, 28, 28) or (2,)
    num_classes: int
    classes: list


# --- dataset facts ---------------------------------------------------------------------------

IDX_IMAGE_MAGIC = 0x00000803   # unsigned bytes, 3 dimensions (N, rows, cols)
IDX_LABEL_MAGIC = 0x00000801   # unsigned bytes, 1 dimension (N,)

CLASSES = {
    "mnist": ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five",
              "6 - six", "7 - seven", "8 - eight", "9 - nine"],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                      "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                "ship", "truck"],
    "spirals": ["arm 0", "arm 1", "arm 2"],
    "circles": ["inner circle", "outer circle"],
    "xor": ["x*y < 0", "x*y > 0"],
    "gaussians": ["blob 0", "blob 1", "blob 2", "blob 3"],
}

# Per-channel pixel mean and std on the [0, 1] scale, for input_norm "dataset".
# Fashion-MNIST's are the Homework 8 seed's; the others are the usual published values.
NORM_CONSTANTS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}

# Toy sets are generated from this fixed seed, so every run seed sees the same points.
TOY_DATA_SEED = 20_240_601
SPIRAL_TURN = 2 * math.pi        # radians each spiral arm turns from centre to rim


# --- the per-process cache ----------------------------------------------------------------

_cache_lock = threading.Lock()
_key_locks: dict[tuple, threading.Lock] = {}
_base_cache: dict[tuple, tuple] = {}        # (dataset, source, input_norm, device) -> tensors
_prepared_cache: dict[tuple, PreparedData] = {}


def clear_cache() -> None:
    """Forget every loaded dataset (frees its memory once no run holds it)."""
    with _cache_lock:
        _base_cache.clear()
        _prepared_cache.clear()


def _lock_for(key: tuple) -> threading.Lock:
    with _cache_lock:
        return _key_locks.setdefault(key, threading.Lock())


def prepare_data(cfg: config.RunConfig, device) -> PreparedData:
    """The run's splits as tensors on `device`, loading the dataset on first use only."""
    device = torch.device(device)
    toy = cfg.dataset in config.TOY_DATASETS
    if toy:
        source = (cfg.toy_samples, cfg.toy_noise)
        norm = "none"   # toy points are already on a [-1, 1] scale
    else:
        source = (str(paths.data_dir(cfg.data_dir).resolve()),)
        norm = cfg.input_norm
        if norm == "raw-mean-image":    # the mean image depends on which images train
            norm = (norm, cfg.val_from, cfg.val_split)
    base_key = (cfg.dataset, source, norm, str(device))
    key = base_key + (cfg.train_subset, cfg.val_split, cfg.train_eval_size, cfg.val_from,
                      cfg.val_size)
    with _lock_for(base_key):
        prepared = _prepared_cache.get(key)
        if prepared is not None:
            return prepared
        base = _base_cache.get(base_key)
        if base is None:
            base = _load_toy(cfg, device) if toy else _load_images(cfg, device)
            with _cache_lock:
                _base_cache[base_key] = base
        prepared = _split(cfg, *base)
        with _cache_lock:
            _prepared_cache[key] = prepared
        return prepared


def _split(cfg, x_pool, y_pool, x_test, y_test) -> PreparedData:
    """Views into the cached tensors: first train_subset, validation from the end of those."""
    n_train, n_val = config.split_sizes(cfg, len(x_pool))
    x_train, y_train = x_pool[:n_train], y_pool[:n_train]
    if cfg.val_from:
        end = cfg.val_from + cfg.val_size
        if end > len(x_pool):
            raise config.ConfigError("val_from", cfg.val_from, f"val_from + val_size must be at "
                                     f"most the {len(x_pool):,} training examples found")
        x_val, y_val = x_pool[cfg.val_from:end], y_pool[cfg.val_from:end]
    elif n_val:
        x_val, y_val = x_pool[n_train:n_train + n_val], y_pool[n_train:n_train + n_val]
    else:
        x_val, y_val = x_test, y_test
    n_eval = min(cfg.train_eval_size, n_train)
    return PreparedData(
        x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
        x_train_eval=x_train[:n_eval], y_train_eval=y_train[:n_eval],
        input_shape=tuple(x_pool.shape[1:]), num_classes=config.NUM_CLASSES[cfg.dataset],
        classes=list(CLASSES[cfg.dataset]),
    )


def batch_indices(n: int, batch_size: int, generator: torch.Generator, drop_last: bool,
                  device, *, shuffle: bool = True,
                  replacement: bool = False) -> list[torch.Tensor]:
    """One epoch of index batches (the generator is the run's own, on the CPU): a fresh
    permutation (shuffle), the examples in order (no shuffle: the same batches every epoch),
    or, with replacement, as many batches of batch_size examples drawn independently at
    random as a pass would have (cs231n's Solver)."""
    if replacement:
        count = n // batch_size if drop_last else math.ceil(n / batch_size)
        draws = torch.randint(n, (max(count, 1), batch_size), generator=generator)
        return list(draws.to(device))
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    batches = list(order.to(device).split(batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


# --- image sets ----------------------------------------------------------------------------

def _load_images(cfg, device):
    """(x_pool, y_pool, x_test, y_test) on the device, pixels scaled and normalized there."""
    folder = paths.data_dir(cfg.data_dir)
    reader = _read_cifar if cfg.dataset == "cifar10" else _read_idx_dataset
    try:
        arrays = reader(cfg.dataset, folder)
    except FileNotFoundError as missing:
        try:
            if not datafiles.try_download(cfg.dataset, folder):
                raise missing
            arrays = reader(cfg.dataset, folder)
        except FileNotFoundError as still_missing:
            raise DataMissingError(datafiles.missing_message(cfg.dataset, folder, still_missing)) \
                from None
    x_train, y_train, x_test, y_test = arrays
    mean, std = NORM_CONSTANTS[cfg.dataset]
    train = _to_device(x_train, y_train, device, cfg.input_norm, mean, std)
    test = _to_device(x_test, y_test, device, cfg.input_norm, mean, std)
    if cfg.input_norm == "mean-image":
        # the mean training image (per pixel and channel, on the [0, 1] scale, over every
        # training image) is subtracted from every image, training and test alike.
        mean_image = train[0].mean(dim=0, keepdim=True)
        train[0].sub_(mean_image)
        test[0].sub_(mean_image)
    elif cfg.input_norm == "raw-mean-image":
        # cs231n's and ECE C147's get_CIFAR10_data: pixels stay 0-255 and the mean image of
        # the training split (X_train: the first 49,000 images, validation 49000-49999 held
        # out) is subtracted from every image. The scale matters: the notebooks' first losses
        # (2.5-2.9 for the 5x100 net at weight scale 5e-2) come from raw-scale inputs.
        train[0].mul_(255.0)
        test[0].mul_(255.0)
        used = raw_mean_count(cfg, len(train[0]))
        mean_image = train[0][:used].mean(dim=0, keepdim=True)
        train[0].sub_(mean_image)
        test[0].sub_(mean_image)
    return (*train, *test)


def raw_mean_count(cfg, pool: int) -> int:
    """How many leading training images the raw-mean-image mean is taken over: the training
    split before any train_subset (cs231n takes the mean of its 49,000 training images, then
    subsamples): images before val_from, or the part val_split leaves, else all of them."""
    if cfg.val_from:
        return min(cfg.val_from, pool)
    return max(1, pool - int(round(pool * cfg.val_split)))


def _to_device(images: np.ndarray, labels: np.ndarray, device, input_norm, mean, std):
    # Move uint8 (4x smaller than float32) and scale on the device. Arrays parsed straight
    # from the file bytes are read-only, which torch.from_numpy warns about: copy those.
    if not images.flags.writeable or not images.flags.c_contiguous:
        images = np.array(images, order="C")
    x = torch.from_numpy(images).to(device).float().div_(255.0)
    if input_norm == "dataset":
        shape = (1, len(mean), 1, 1)
        x.sub_(torch.tensor(mean, device=device).view(shape))
        x.div_(torch.tensor(std, device=device).view(shape))
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    return x, y


def _read_idx_dataset(dataset: str, folder: Path):
    found = {role: idx_path(folder, dataset, name) for role, name in IDX_FILES.items()}
    x_train = read_idx(found["train_images"], IDX_IMAGE_MAGIC)
    y_train = read_idx(found["train_labels"], IDX_LABEL_MAGIC)
    x_test = read_idx(found["test_images"], IDX_IMAGE_MAGIC)
    y_test = read_idx(found["test_labels"], IDX_LABEL_MAGIC)
    for images, labels, role in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(images) == 0:
            raise DataCorruptError(f"{found[role + '_images']} holds no images; replace it "
                                   "with the real file")
        if len(images) != len(labels):
            raise DataCorruptError(f"{found[role + '_images']} has {len(images)} images but "
                                   f"{found[role + '_labels']} has {len(labels)} labels")
        if labels.size and labels.max() >= config.NUM_CLASSES[dataset]:
            raise DataCorruptError(f"{found[role + '_labels']} has label {labels.max()}, "
                                   f"expected 0..{config.NUM_CLASSES[dataset] - 1}")
    return x_train[:, None], y_train, x_test[:, None], y_test   # images as (N, 1, H, W)


# What an IDX file may declare before anything is decompressed: at most this many examples
# of at most 64x64 pixels (MNIST-style sets are 60,000 x 28 x 28 = 47 MB). A gzip bomb
# declares nothing sensible, or a size past MAX_IDX_BYTES, and is refused after 16 bytes.
MAX_IDX_EXAMPLES = 1_000_000
MAX_IDX_SIDE = 64
MAX_IDX_BYTES = MAX_IDX_EXAMPLES * 28 * 28 // 4 + 16   # ~196 MB, 4x the real training file


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """An IDX file (gzipped or not) as a uint8 array. The header is checked first and the
    body is read only up to the size it declares (plus one byte, to catch a longer file), so
    a file that decompresses to gigabytes costs a few kilobytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            magic_bytes = f.read(4)
            if len(magic_bytes) < 4:
                raise DataCorruptError(f"{path} is too short to be an IDX file "
                                       f"({len(magic_bytes)} bytes)")
            magic = int.from_bytes(magic_bytes, "big")
            if magic != expected_magic:
                raise DataCorruptError(f"{path} is not the expected IDX file: magic number "
                                       f"0x{magic:08x}, expected 0x{expected_magic:08x}")
            ndim = magic & 0xFF
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise DataCorruptError(f"{path} is truncated inside its header")
            shape = tuple(int.from_bytes(dims[4 * i: 4 + 4 * i], "big") for i in range(ndim))
            _check_idx_shape(path, shape)
            size = int(np.prod(shape))
            body = f.read(size + 1)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataCorruptError(f"cannot read {path}: {err} (damaged or truncated download? "
                               f"replace the file)") from err
    if len(body) != size:
        raise DataCorruptError(f"{path} holds {'more' if len(body) > size else len(body)} "
                               f"bytes of data but its header {shape} says {size} (truncated "
                               "or damaged; replace the file)")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _check_idx_shape(path: Path, shape: tuple) -> None:
    if not shape or shape[0] > MAX_IDX_EXAMPLES or any(d > MAX_IDX_SIDE for d in shape[1:]) \
            or int(np.prod(shape)) > MAX_IDX_BYTES:
        raise DataCorruptError(f"{path} declares {shape} values, more than an image set of "
                               f"at most {MAX_IDX_EXAMPLES:,} examples of {MAX_IDX_SIDE}x"
                               f"{MAX_IDX_SIDE} pixels; it is not a dataset file (replace it)")


# --- CIFAR-10 --------------------------------------------------------------------------------

class RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and plain containers only; anything else is refused.

    CIFAR-10's batches are pickles, and a pickle can run any code while it loads. These are
    the only globals the real batches (written by Python 2 + numpy) and their Python 3
    re-pickles name.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),   # how Python 3 writes bytes at pickle protocol 2
        ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"),
        ("builtins", "bytes"), ("builtins", "bytearray"), ("builtins", "str"),
        ("builtins", "int"), ("builtins", "float"), ("builtins", "set"),
        ("__builtin__", "dict"), ("__builtin__", "list"), ("__builtin__", "tuple"),
        ("__builtin__", "str"), ("__builtin__", "int"), ("__builtin__", "float"),
    }

    # Globals that allocate by a number the pickle states: bytes(n), bytearray(n),
    # ndarray(shape), _reconstruct(ndarray, shape, dtype). Each call is checked against the
    # pickle's own size first (a real batch's arrays are filled from bytes it holds), so a
    # 30-byte pickle cannot ask for a gigabyte.
    SIZED = {("builtins", "bytes"), ("builtins", "bytearray"), ("numpy", "ndarray"),
             ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}

    def __init__(self, file, *, max_bytes: int, **kwargs):
        super().__init__(file, **kwargs)
        self.max_bytes = max_bytes       # the most any one call may allocate

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise UnsafePickleError(f"refusing to load {module}.{name} from a data pickle: "
                                    f"only numpy arrays and plain containers are allowed")
        if module.startswith("numpy") and module.endswith("multiarray"):
            found = getattr(_numpy_multiarray(), name)   # old and new names, same functions
        else:
            found = super().find_class(module, name)
        if (module, name) in self.SIZED:
            return _within(found, f"{module}.{name}", self.max_bytes)
        return found


def _asked_bytes(what: str, args: tuple) -> int:
    """Bytes a call of an allocating global asks for (0 when it states no size)."""
    if what.endswith(("bytes", "bytearray")):
        return args[0] if args and isinstance(args[0], int) else 0
    if what.endswith("_reconstruct"):
        args = args[1:]                               # (subtype, shape, dtype)
    shape = args[0] if args else ()
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    try:
        item = np.dtype(args[1]).itemsize if len(args) > 1 else 8
    except (TypeError, ValueError):
        item = 8
    return math.prod(int(d) for d in shape) * max(item, 1) \
        if all(isinstance(d, int) for d in shape) else 0


def _within(function, what: str, max_bytes: int):
    """`function`, refusing a call that asks for more than `max_bytes`. A checked global
    passed as an argument (ndarray as _reconstruct's subtype) is passed on as itself."""
    def checked(*args, **kwargs):
        args = tuple(getattr(a, "checked_original", a) for a in args)
        asked = _asked_bytes(what, args)
        if asked > max_bytes:
            raise DataCorruptError(f"{what} asks for {asked:,} bytes, more than the "
                                   f"{max_bytes:,} bytes of the file itself")
        return function(*args, **kwargs)
    checked.checked_original = function
    return checked


MAX_PICKLE_MEMO = 100_000   # memo slots a data pickle may name (a real batch uses a few hundred)


def _check_pickle_sizes(data: bytes) -> None:
    """Every length a pickle's opcodes state against the data it holds, before unpickling:
    the C unpickler allocates a counted argument (BINBYTES and the like) or a FRAME at the
    stated length before it finds the data missing (5 bytes can ask for 4 GB), and grows its
    memo to a PUT's index, zero-filled (9 bytes touched 6 GB). pickletools reads the same
    opcodes without allocating what they state (0.6 s for a 46 MB CIFAR-like batch here: a
    few seconds on a CIFAR-10 load that gunzips 163 MB first)."""
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > MAX_PICKLE_MEMO:
            raise DataCorruptError(f"names memo slot {arg:,}; a data pickle uses at most "
                                   f"{MAX_PICKLE_MEMO:,}")
        if opcode.name == "FRAME" and arg > len(data):
            raise DataCorruptError(f"declares a frame of {arg:,} bytes in {len(data):,}")


def _numpy_multiarray():
    try:   # numpy 2 renamed numpy.core to numpy._core; the real batches name numpy.core
        from numpy._core import multiarray
    except ImportError:   # numpy 1.x
        from numpy.core import multiarray
    return multiarray


def restricted_loads(data: bytes, source: str = "pickle"):
    """Unpickle CIFAR-style data safely; any problem is a DataCorruptError naming `source`."""
    try:
        _check_pickle_sizes(data)
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1",
                                   max_bytes=len(data)).load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{source}: {err}") from None
    except Exception as err:
        raise DataCorruptError(f"cannot read {source}: {err} (damaged file? replace it)") from err


def _cifar_batch(data: bytes, source: str):
    batch = restricted_loads(data, source)
    if not isinstance(batch, dict):
        raise DataCorruptError(f"{source} is not a CIFAR-10 batch (a {type(batch).__name__})")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    try:
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (KeyError, ValueError) as err:
        raise DataCorruptError(f"{source} is not a CIFAR-10 batch: {err}") from err
    if len(images) != len(labels) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataCorruptError(f"{source} has {len(images)} images, {len(labels)} labels "
                               f"(labels must be 0..9)")
    return images, labels


CIFAR_MAX_BATCH_BYTES = 40 * 1024 * 1024


def _cifar_files(folder: Path) -> dict[str, bytes]:
    """Batch name -> raw bytes, from the extracted folder or straight out of the archive."""
    wanted = CIFAR_TRAIN_BATCHES + (CIFAR_TEST_BATCH,)
    extracted = folder / CIFAR_FOLDER
    if all((extracted / name).is_file() for name in wanted):
        return {name: (extracted / name).read_bytes() for name in wanted}
    archive = folder / CIFAR_ARCHIVE
    if not archive.is_file():
        raise FileNotFoundError(str(archive))
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:   # one pass: never extracts, the folder may be read-only
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in wanted:
                    # A batch is 30.7 MB; a member declaring far more is not one (checked
                    # before reading, and the read is capped at what it declares).
                    if member.size > CIFAR_MAX_BATCH_BYTES:
                        raise DataCorruptError(f"{archive}: {member.name} declares "
                                               f"{member.size:,} bytes, more than a CIFAR-10 "
                                               "batch; replace the archive")
                    found[name] = tar.extractfile(member).read(CIFAR_MAX_BATCH_BYTES)
    except (OSError, EOFError, tarfile.TarError) as err:
        raise DataCorruptError(f"cannot read {archive}: {err} (damaged or truncated download? "
                               f"replace the file)") from err
    missing = [name for name in wanted if name not in found]
    if missing:
        raise DataCorruptError(f"{archive} lacks {', '.join(missing)}; is it the CIFAR-10 "
                               f"python version?")
    return found


def _read_cifar(dataset: str, folder: Path):
    files = _cifar_files(folder)
    train = [_cifar_batch(files[name], name) for name in CIFAR_TRAIN_BATCHES]
    x_test, y_test = _cifar_batch(files[CIFAR_TEST_BATCH], CIFAR_TEST_BATCH)
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return x_train, y_train, x_test, y_test


# --- toy sets ----------------------------------------------------------------------------------

def _load_toy(cfg, device):
    points, labels = make_toy(cfg.dataset, cfg.toy_samples, cfg.toy_noise)
    x = torch.from_numpy(points).to(device)
    y = torch.from_numpy(labels).to(device)
    # Toy sets have no official test split; split_sizes always holds some points out, so the
    # "test" tensors here are never used (an empty view keeps the signature uniform).
    return x, y, x[:0], y[:0]


def make_toy(name: str, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """`n` shuffled 2-D points (float32, about [-1, 1]) and their int64 labels.

    `noise` is the std of Gaussian noise added to each coordinate, in input units. Spirals:
    that std at the arms' outer end (radius 1), shrinking in proportion to the radius towards
    the centre, where the arms meet. The generator is seeded with TOY_DATA_SEED, so the same
    options always give the same points.
    """
    rng = np.random.default_rng(TOY_DATA_SEED)
    k = config.NUM_CLASSES[name]
    labels = np.arange(n) % k                       # classes as balanced as n allows
    u = rng.uniform(0.0, 1.0, size=n)
    scale = np.ones((n, 1))                         # noise std per point, times `noise`
    if name == "spirals":
        # k arms, radius 0..1, each turning SPIRAL_TURN radians (one full turn). Along a ray
        # the arms are only (2 pi / k) / SPIRAL_TURN = 0.33 apart, and closer still near the
        # centre, so a noise of the same std everywhere (as before: arms of 4 radians, noise
        # 0.1 everywhere) blurred them into overlapping blobs; noise in proportion to the
        # radius keeps the arms' gap-to-noise ratio the same from the centre out.
        angle = u * SPIRAL_TURN + labels * (2 * np.pi / k)
        points = np.stack([u * np.sin(angle), u * np.cos(angle)], axis=1)
        scale = u[:, None]
    elif name == "circles":      # inner circle radius 0.5, outer radius 1
        angle = u * 2 * np.pi
        radius = np.where(labels == 0, 0.5, 1.0)
        points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    elif name == "xor":          # uniform in the square; class = sign of x*y
        points = rng.uniform(-1.0, 1.0, size=(n, 2))
        labels = (points[:, 0] * points[:, 1] > 0).astype(np.int64)
    elif name == "gaussians":    # four blobs of std 0.15 at (+-0.5, +-0.5)
        centers = np.array([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])
        points = centers[labels] + rng.normal(0.0, 0.15, size=(n, 2))
    else:
        raise ValueError(f"unknown toy set {name!r}; allowed: {', '.join(config.TOY_DATASETS)}")
    points = points + rng.normal(0.0, noise, size=(n, 2)) * scale
    order = rng.permutation(n)   # shuffled, so the held-out tail has every class
    return points[order].astype(np.float32), labels[order].astype(np.int64)
