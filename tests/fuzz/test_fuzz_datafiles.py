"""Fuzzing dataset archives: IDX files (MNIST, Fashion-MNIST; gzipped or not) through
`data.read_idx` and through `data.prepare_data` over a generated data folder, CIFAR-10
archives (tar.gz headers with generated member names, sizes and types, members that are
generated pickles) through `data.prepare_data`, and pickles through the restricted
unpickler (`data.restricted_loads`). Each either loads or is refused with a DataMissingError
(DataCorruptError) naming the file; nothing else, within the harness's bounds."""

from __future__ import annotations

import gzip
import io
import math
import pickle
import pickletools
import tarfile
import tempfile
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st

from engine import data, datafiles
from engine.config import ConfigError, RunConfig
from tests.fuzz.harness import KNOWN_DEFECTS, MAX_PEAK_BYTES, examples, outcome, with_examples

IMAGES, LABELS = data.IDX_IMAGE_MAGIC, data.IDX_LABEL_MAGIC


# --- IDX ---------------------------------------------------------------------------------------

def idx_bytes(magic: int, dims, body: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + body


@st.composite
def damaged(draw, raw: bytes) -> bytes:
    """The bytes as they are (mostly), cut short, or with one byte changed."""
    how = draw(st.sampled_from(["none", "none", "cut", "flip"]))
    if how == "cut":
        return raw[:draw(st.integers(0, len(raw)))]
    if how == "flip" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        return raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1:]
    return raw


@st.composite
def valid_idx(draw, magic: int, dims: list) -> bytes:
    body = bytes([draw(st.integers(0, 9))]) * math.prod(dims)
    raw = idx_bytes(magic, dims, body)
    return gzip.compress(raw, compresslevel=1) if draw(st.booleans()) else raw


@st.composite
def idx_file(draw, magic=None, dims=None) -> tuple[bytes, tuple]:
    """(file bytes, declared shape): a valid file of a small shape, or a header (magic,
    dimensions) and a body that fits it or not; perhaps gzipped, perhaps cut short or with
    a byte changed."""
    if magic is None and draw(st.integers(0, 2)) == 0:
        magic, n = draw(st.sampled_from([IMAGES, LABELS])), draw(st.integers(0, 20))
        dims = [n, 28, 28] if magic == IMAGES else [n]
        return draw(valid_idx(magic, dims)), tuple(dims)
    if magic is None:
        magic = draw(st.one_of(st.sampled_from([IMAGES, LABELS, IMAGES, LABELS, 0, 0x0804,
                                                0x08FF, 0x0903]), st.integers(0, 2 ** 32 - 1)))
    ndim = magic & 0xFF
    if dims is None:
        dims = draw(st.lists(st.one_of(st.integers(0, 6), st.integers(0, 2 ** 32 - 1),
                                       st.sampled_from([28, 28, 64, 65, 60_000, 1_000_001])),
                             min_size=min(ndim, 3), max_size=min(ndim, 3)))
        dims += [draw(st.integers(0, 3))] * (min(ndim, 8) - len(dims))    # a few more, small
    declared = math.prod(dims) if dims else 0
    size = declared if declared <= 20_000 and draw(st.integers(0, 3)) else \
        draw(st.integers(0, 500))
    size = max(0, size + draw(st.sampled_from([0, 0, 0, -1, 1])))
    body = bytes([draw(st.integers(0, 12))]) * size       # labels 10..12: out of range
    raw = idx_bytes(magic, dims, body)
    if draw(st.booleans()):
        raw = gzip.compress(raw, compresslevel=1)
    return draw(damaged(raw)), tuple(dims)


def header_shape(raw: bytes) -> tuple | None:
    """The shape an IDX file's header declares, read from the bytes as read_idx reads them
    (gzipped or not; only the header is decompressed), or None when there is no header."""
    # Read in two pieces, as read_idx does: a stream whose end (and CRC) lies past the header
    # still has a header read_idx acts on (make fuzz: a damaged 91,968-image file's body was
    # allocated, but a whole-stream read here failed its CRC and allowed no memory for it).
    stream = gzip.GzipFile(fileobj=io.BytesIO(raw)) if raw[:2] == b"\x1f\x8b" \
        else io.BytesIO(raw)
    try:
        magic = stream.read(4)
        if len(magic) < 4:
            return None
        ndim = magic[3]
        dims = stream.read(4 * ndim)
    except (OSError, EOFError, zlib.error):
        return None
    if len(dims) < 4 * ndim:
        return None
    return tuple(int.from_bytes(dims[4 * i: 4 + 4 * i], "big") for i in range(ndim))


def write(folder: Path, name: str, raw: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path


PAST_IDX = [   # tests/engine/test_hostile_input.py: zeros, a header declaring 10^9 images, ...
    # make fuzz: a header changed after the file was made (65,536 images of 0x0 pixels)
    (b"\x00\x00\x08\x03\x00\x01\x00\x00" + bytes(8), (0, 0, 0)),
    (bytes(1 << 12), ()),
    ((0x0803).to_bytes(4, "big") + (10 ** 9).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2,
     (10 ** 9, 28, 28)),
    ((0x0803).to_bytes(4, "big") + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
     + bytes(1 << 14), (10, 28, 28)),
    (b"\x1f\x8b", ()), (b"", ()), ((0x0801).to_bytes(4, "big"), ()),
    # make fuzz: gzipped, a header of 91,968 images of 28x28 and a short body (CRC fails)
    (b"\x1f\x8b\x08\x00\x15\xa3\x11k\x04\xffc`\xe0`f`Lw```\x90\x01a\x9eA\x03\x00\x1c\x15"
     b"\xd0\n\x9a\x00\x00\x00", (91968, 28, 28)),
]


@examples(quick=80)
@given(idx_file(), st.sampled_from([IMAGES, LABELS]))
@with_examples(*((f, IMAGES) for f in PAST_IDX))
def test_idx_headers_are_checked_before_the_body_is_read(file, expected):
    raw, _ = file
    declared = header_shape(raw)       # the file may have been damaged after it was made
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), "x-idx3-ubyte.gz", raw)
        # A body as large as its (checked) header declares is read whole: that much memory is
        # the file's due, not a bomb's.
        limit = MAX_PEAK_BYTES + min(math.prod(declared) if declared else 0,
                                     data.MAX_IDX_BYTES)
        result, error = outcome(lambda: data.read_idx(path, expected),
                                refusals=(data.DataMissingError,), memory_limit=limit)
    event("loaded" if error is None else type(error).__name__)
    if error is not None:
        assert str(path) in str(error), str(error)
    else:
        assert result.dtype == np.uint8 and result.shape == declared
        assert len(declared) == expected & 0xFF and declared[0] <= data.MAX_IDX_EXAMPLES
        assert all(side <= data.MAX_IDX_SIDE for side in declared[1:])


def load(cfg: RunConfig):
    """prepare_data on the CPU, no download attempted; refusals: data files or config."""
    with mock.patch.object(datafiles, "try_download", lambda *a: False):
        return data.prepare_data(cfg, "cpu")


@st.composite
def idx_folder_files(draw) -> list[bytes]:
    """The four files of an MNIST folder: of one size and valid (then perhaps damaged), or
    each generated on its own."""
    if draw(st.booleans()):
        return [raw for raw, _ in draw(st.lists(idx_file(), min_size=4, max_size=4))]
    n_train, n_test = draw(st.integers(0, 40)), draw(st.integers(0, 10))
    files = [draw(valid_idx(IMAGES, [n_train, 28, 28])), draw(valid_idx(LABELS, [n_train])),
             draw(valid_idx(IMAGES, [n_test, 28, 28])), draw(valid_idx(LABELS, [n_test]))]
    if draw(st.booleans()):                              # one file damaged or replaced
        i = draw(st.integers(0, 3))
        files[i] = draw(st.one_of(damaged(files[i]), idx_file().map(lambda f: f[0])))
    return files


@examples(quick=30)
@given(idx_folder_files())
def test_a_folder_of_generated_idx_files_loads_or_names_a_file(files):
    with tempfile.TemporaryDirectory() as folder:
        raw_folder = Path(folder) / datafiles.IDX_FOLDERS["mnist"] / "raw"
        for raw, name in zip(files, datafiles.IDX_FILES.values()):
            write(raw_folder, name + ".gz", raw)
        cfg = RunConfig(dataset="mnist", data_dir=folder, val_split=0.0)
        # (up to MAX_IDX_BYTES per file when a header declares that much: checked, a file's due)
        result, error = outcome(lambda: load(cfg), refusals=(data.DataMissingError, ConfigError),
                                memory_limit=MAX_PEAK_BYTES + data.MAX_IDX_BYTES)
    event("loaded" if error is None else type(error).__name__)
    if isinstance(error, data.DataMissingError):
        assert folder in str(error), str(error)
    data.clear_cache()


# --- CIFAR-10 ----------------------------------------------------------------------------------

class Call:
    """Pickles as `fn(*args)`: how a hostile pickle calls an allowed global."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


# numpy's own (pickled as numpy._core.multiarray._reconstruct, which the unpickler allows as it
# allows the real batches' numpy.core name; a stand-in under the old name cannot be pickled).
_reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
# Sizes a pickle asks allowed globals for. A tiny pickle could make bytes(n), bytearray(n) and
# numpy's _reconstruct allocate n bytes (KNOWN_DEFECTS): capped at 1 MB while that stood.
BIG = 2 ** 20 if KNOWN_DEFECTS["pickle sizes unchecked"] else 2 ** 40
sizes = st.one_of(st.integers(0, 64), st.integers(0, BIG))
shapes = st.lists(st.integers(0, 64), max_size=3).map(tuple)
pickle_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10 ** 6), st.floats(), st.text(max_size=10),
    st.binary(max_size=64),
    st.builds(lambda n: np.zeros(n, np.uint8), st.integers(0, 3072 * 2)),
    st.builds(lambda n: np.zeros((n, 3072), np.uint8), st.integers(0, 3)),
    st.builds(lambda s: Call(bytes, (s,)), sizes), st.builds(lambda s: Call(bytearray, (s,)), sizes),
    st.builds(lambda s, d: Call(_reconstruct, (np.ndarray, s, d)),
              sizes.map(lambda n: (min(n, BIG),)), st.sampled_from([b"b", b"u1", b"f8"])),
    st.builds(lambda a: Call(np.dtype, (a,)), st.sampled_from(["u1", "f8", "O", "V8", "<i4"])),
    st.builds(lambda a: Call(eval, (a,)), st.just("1+1")),          # refused: not allowed
    st.builds(lambda a: Call(print, (a,)), st.text(max_size=5)),    # refused: not allowed
)
pickle_value = st.recursive(
    pickle_leaf, lambda inner: st.lists(inner, min_size=1, max_size=4)
    | st.dictionaries(st.sampled_from([b"data", b"labels", "data", "labels", b"x", 1]), inner,
                      min_size=1, max_size=3), max_leaves=8)


@st.composite
def pickle_bytes(draw) -> bytes:
    value = draw(pickle_value)
    try:
        # fix_imports: Python 2 module names (__builtin__), as the real batches have them
        raw = pickle.dumps(value, protocol=draw(st.sampled_from([2, 4])),
                           fix_imports=draw(st.booleans()))
    except (pickle.PicklingError, TypeError, ValueError, AttributeError):
        raw = b""
    if raw and draw(st.booleans()):
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1:]
    if draw(st.integers(0, 9)) == 0:
        raw = raw[:draw(st.integers(0, len(raw)))]
    return raw


MAX_MEMO_INDEX = 100_000     # a real CIFAR batch memoizes a few hundred objects


def asks_for_more_than_it_has(raw: bytes) -> bool:
    """A pickle whose opcodes make the unpickler allocate by a number they state (KNOWN_DEFECTS
    "pickle sizes unchecked"): a counted argument (BINBYTES, BINUNICODE, ...) or a FRAME longer
    than the data, or a memo index (PUT, BINPUT, LONG_BINPUT) past MAX_MEMO_INDEX (the C
    unpickler's memo is an array it grows to the index and zero-fills: 9 bytes can ask for
    gigabytes)."""
    try:
        for opcode, arg, _ in pickletools.genops(raw):
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > MAX_MEMO_INDEX:
                return True
            if opcode.name == "FRAME" and arg > len(raw):
                return True
    except ValueError as error:
        return "but only" in str(error)        # "expected N bytes in a bytes4, but only M remain"
    except Exception:
        return False
    return False


@examples(quick=80)
@given(st.one_of(pickle_bytes(), st.binary(max_size=200)))
@with_examples((b"B\x00\x00\x00\x04",),    # make fuzz: 5 bytes, 67 MB (KNOWN_DEFECTS)
               (b"\x80\x02]r\x00\x00\x00\x2eNa.",))   # make fuzz: 12 bytes, 6 GB touched
def test_restricted_unpickler_loads_plain_data_or_refuses(raw):
    if KNOWN_DEFECTS["pickle sizes unchecked"]:
        assume(not asks_for_more_than_it_has(raw))
    result, error = outcome(lambda: data.restricted_loads(raw, "test_batch"),
                            refusals=(data.DataCorruptError,))
    event(type(result).__name__ if error is None else type(error).__name__)
    if error is not None:
        assert "test_batch" in str(error)
        # restricted_loads turns any failure into DataCorruptError; running out of memory on
        # a few hundred bytes is a bomb, whatever the message says
        assert not isinstance(error.__cause__, MemoryError), raw[:100]


@pytest.mark.parametrize("call", [Call(bytearray, (2 ** 27,)), Call(bytes, (2 ** 27,)),
                                  Call(_reconstruct, (np.ndarray, (2 ** 27,), "b")),
                                  b"B" + (2 ** 27).to_bytes(4, "little"),
                                  b"\x80\x02]r" + (2 ** 23).to_bytes(4, "little") + b"."],
                         ids=["bytearray", "bytes", "_reconstruct", "BINBYTES", "LONG_BINPUT"])
def test_a_tiny_pickle_cannot_allocate_128_mb(call):
    raw = call if isinstance(call, bytes) else pickle.dumps(call, protocol=2, fix_imports=False)
    assert len(raw) < 100                       # (fix_imports=False: builtins.bytearray)
    outcome(lambda: data.restricted_loads(raw, "test_batch"), refusals=(data.DataCorruptError,))


GOOD_BATCH = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]},
                          protocol=2)


@st.composite
def cifar_archive(draw) -> bytes:
    """A tar.gz of the six batches: valid (then perhaps damaged), or with generated member
    names, types and pickles, then perhaps a header byte changed (sizes, types, checksums)
    or the archive cut short."""
    names = list(datafiles.CIFAR_TRAIN_BATCHES) + [datafiles.CIFAR_TEST_BATCH]
    valid = draw(st.booleans())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in names:
            member, payload, kind = f"{datafiles.CIFAR_FOLDER}/{name}", GOOD_BATCH, tarfile.REGTYPE
            if not valid:
                if draw(st.integers(0, 9)) == 0:
                    continue
                member = draw(st.sampled_from([member, member, name, f"../{name}", f"/{name}",
                                               f"x/{name}/y"]))
                payload = draw(st.one_of(st.just(GOOD_BATCH), pickle_bytes()))
                if KNOWN_DEFECTS["pickle sizes unchecked"]:
                    assume(not asks_for_more_than_it_has(payload))
                kind = draw(st.sampled_from([tarfile.REGTYPE] * 4 + [tarfile.DIRTYPE,
                                                                     tarfile.SYMTYPE]))
            info = tarfile.TarInfo(member)
            info.size, info.type = len(payload), kind
            tar.addfile(info, io.BytesIO(payload) if kind == tarfile.REGTYPE else None)
    raw = buffer.getvalue()
    for _ in range(draw(st.integers(0, 1 if valid else 3))):   # size field: bytes 124..135
        at = draw(st.one_of(st.integers(124, 135), st.integers(0, max(0, len(raw) - 1))))
        if at < len(raw):
            raw = raw[:at] + bytes([draw(st.sampled_from(b"0123456789 7\x00\xff"))]) \
                + raw[at + 1:]
    packed = gzip.compress(raw, compresslevel=1)
    if draw(st.integers(0, 5)) == 0:
        packed = packed[:draw(st.integers(0, len(packed)))]
    return packed


@examples(quick=30)
@given(cifar_archive())
def test_a_generated_cifar_archive_loads_or_names_the_archive(archive):
    with tempfile.TemporaryDirectory() as folder:
        write(Path(folder), datafiles.CIFAR_ARCHIVE, archive)
        cfg = RunConfig(dataset="cifar10", data_dir=folder, val_split=0.0)
        # Each member is read up to its cap (40 MB, preallocated by the read) one at a time.
        result, error = outcome(lambda: load(cfg), refusals=(data.DataMissingError, ConfigError),
                                memory_limit=MAX_PEAK_BYTES + data.CIFAR_MAX_BATCH_BYTES)
    event("loaded" if error is None else type(error).__name__)
    if isinstance(error, data.DataMissingError):
        assert folder in str(error) or "batch" in str(error), str(error)
    data.clear_cache()
