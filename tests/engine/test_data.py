"""engine.data: archive parsing, splits, normalization, caching, errors and toy sets.

Every test writes its own tiny archives into tmp_path; nothing reads /work/shared.
"""

import gzip
import io
import os
import pickle
import tarfile
import threading

import numpy as np
import pytest
import torch

from engine import config, data, datafiles
from tests.datafiles import idx_bytes

N_TRAIN, N_TEST = 32, 16


@pytest.fixture(autouse=True)
def _fresh_cache():
    data.clear_cache()
    yield
    data.clear_cache()


def tiny_images(n: int, offset: int) -> np.ndarray:
    # Pixel (i, r, c) = (offset + i + r + c) mod 256: every image different and recognisable.
    i, r, c = np.meshgrid(np.arange(n), np.arange(28), np.arange(28), indexing="ij")
    return ((offset + i + r + c) % 256).astype(np.uint8)


def write_idx_dataset(root, folder="FashionMNIST", gz=True):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": (tiny_images(N_TRAIN, 0), data.IDX_IMAGE_MAGIC),
        "train-labels-idx1-ubyte": (np.arange(N_TRAIN) % 10, data.IDX_LABEL_MAGIC),
        "t10k-images-idx3-ubyte": (tiny_images(N_TEST, 100), data.IDX_IMAGE_MAGIC),
        "t10k-labels-idx1-ubyte": ((np.arange(N_TEST) + 3) % 10, data.IDX_LABEL_MAGIC),
    }
    for name, (array, magic) in arrays.items():
        content = idx_bytes(array, magic)
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (raw / name).write_bytes(content)
    return raw


def fmnist_cfg(tmp_path, **changes):
    return config.RunConfig(dataset="fashion-mnist", data_dir=str(tmp_path), batch_size=4,
                            **changes)


def test_idx_shapes_labels_and_dataset_normalization(tmp_path):
    write_idx_dataset(tmp_path)
    d = data.prepare_data(fmnist_cfg(tmp_path), "cpu")
    assert d.x_train.shape == (N_TRAIN, 1, 28, 28) and d.x_train.dtype == torch.float32
    assert d.y_train.dtype == torch.int64 and d.y_train.tolist() == [i % 10 for i in range(N_TRAIN)]
    # val_split 0: validation is the official test split.
    assert d.x_val.shape == (N_TEST, 1, 28, 28)
    assert d.y_val.tolist() == [(i + 3) % 10 for i in range(N_TEST)]
    expected = (torch.from_numpy(tiny_images(N_TRAIN, 0)).float() / 255 - 0.2860) / 0.3530
    torch.testing.assert_close(d.x_train[:, 0], expected)
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert d.classes[0] == "T-shirt/top" and len(d.classes) == 10


def test_plain_idx_files_and_no_normalization(tmp_path):
    write_idx_dataset(tmp_path, folder="MNIST", gz=False)
    cfg = config.RunConfig(dataset="mnist", data_dir=str(tmp_path), batch_size=4,
                           input_norm="none")
    d = data.prepare_data(cfg, torch.device("cpu"))
    torch.testing.assert_close(d.x_val[:, 0], torch.from_numpy(tiny_images(N_TEST, 100)) / 255)
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0


def test_subset_validation_split_and_train_eval(tmp_path):
    write_idx_dataset(tmp_path)
    cfg = fmnist_cfg(tmp_path, train_subset=20, val_split=0.25, train_eval_size=6)
    d = data.prepare_data(cfg, "cpu")
    assert len(d.x_train) == 15 and len(d.x_val) == 5      # first 20, last quarter held out
    assert d.y_val.tolist() == [i % 10 for i in range(15, 20)]
    assert d.x_train_eval.shape == (6, 1, 28, 28)
    assert torch.equal(d.x_train_eval, d.x_train[:6]) and torch.equal(d.y_train_eval, d.y_train[:6])
    # train_eval_size larger than the training split is capped to it
    small = data.prepare_data(cfg.replace(train_eval_size=1000), "cpu")
    assert len(small.x_train_eval) == 15


def test_cache_returns_same_tensors_without_rereading(tmp_path, monkeypatch):
    raw = write_idx_dataset(tmp_path)
    first = data.prepare_data(fmnist_cfg(tmp_path), "cpu")
    for f in raw.iterdir():
        f.unlink()                                   # a re-read would now fail
    calls = []
    monkeypatch.setattr(data, "read_idx", lambda *a: calls.append(a))
    second = data.prepare_data(fmnist_cfg(tmp_path), "cpu")
    assert second is first and calls == []
    # Another split of the same dataset is built from the cached tensors (shared storage).
    other = data.prepare_data(fmnist_cfg(tmp_path, val_split=0.5), "cpu")
    assert len(other.x_train) == 16 and calls == []
    assert other.x_train.data_ptr() == first.x_train.data_ptr()


def test_concurrent_first_calls_load_once(tmp_path, monkeypatch):
    write_idx_dataset(tmp_path)
    real_read = data.read_idx
    calls = []

    def counting_read(path, magic):
        calls.append(path)
        return real_read(path, magic)

    monkeypatch.setattr(data, "read_idx", counting_read)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        data.prepare_data(fmnist_cfg(tmp_path), "cpu"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 4                             # 4 files, read once in all
    assert all(r is results[0] for r in results)


def test_missing_files_message_names_files_and_folder(tmp_path, monkeypatch):
    attempts = []
    monkeypatch.setattr(datafiles, "try_download",
                        lambda dataset, folder: attempts.append(dataset) or False)
    with pytest.raises(data.DataMissingError) as err:
        data.prepare_data(fmnist_cfg(tmp_path), "cpu")
    text = str(err.value)
    assert attempts == ["fashion-mnist"]
    assert str(tmp_path / "FashionMNIST" / "raw") in text
    for name in data.IDX_FILES.values():
        assert f"{name}.gz" in text
    assert "TRAINLAB_DATA_DIR" in text and "--data-dir" in text


def test_cifar_missing_message(tmp_path, monkeypatch):
    monkeypatch.setattr(datafiles, "try_download", lambda dataset, folder: False)
    cfg = config.RunConfig(dataset="cifar10", data_dir=str(tmp_path), batch_size=4,
                           model="three-layer-convnet")
    with pytest.raises(data.DataMissingError, match="cifar-10-python.tar.gz") as err:
        data.prepare_data(cfg, "cpu")
    assert str(tmp_path) in str(err.value) and "cifar-10-batches-py" in str(err.value)


def test_download_failure_is_reported_as_false(tmp_path, monkeypatch):
    import torchvision.datasets

    def no_network(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", no_network)
    assert datafiles.try_download("fashion-mnist", tmp_path) is False


@pytest.mark.parametrize("damage", ["truncated_gzip", "wrong_magic", "short_body"])
def test_corrupt_idx_file_names_the_file(tmp_path, damage):
    raw = write_idx_dataset(tmp_path)
    path = raw / "train-images-idx3-ubyte.gz"
    content = idx_bytes(tiny_images(N_TRAIN, 0), data.IDX_IMAGE_MAGIC)
    if damage == "truncated_gzip":
        path.write_bytes(gzip.compress(content)[:200])
    elif damage == "wrong_magic":
        path.write_bytes(gzip.compress(idx_bytes(tiny_images(N_TRAIN, 0), 0x0801)))
    else:
        path.write_bytes(gzip.compress(content[:-50]))
    with pytest.raises(data.DataCorruptError, match="train-images-idx3-ubyte.gz"):
        data.prepare_data(fmnist_cfg(tmp_path), "cpu")


def test_image_label_count_mismatch(tmp_path):
    raw = write_idx_dataset(tmp_path)
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(N_TEST - 1), data.IDX_LABEL_MAGIC)))
    with pytest.raises(data.DataCorruptError, match="t10k-labels"):
        data.prepare_data(fmnist_cfg(tmp_path), "cpu")


# --- CIFAR-10 ------------------------------------------------------------------------------

def cifar_batch(n: int, first_label: int) -> bytes:
    # Like the real batches: bytes keys, (n, 3072) uint8 rows (R plane, G plane, B plane).
    images = np.zeros((n, 3, 32, 32), dtype=np.uint8)
    images[:, 0], images[:, 1], images[:, 2] = 255, 51, 0
    labels = [(first_label + i) % 10 for i in range(n)]
    return pickle.dumps({b"data": images.reshape(n, 3072), b"labels": labels,
                         b"batch_label": b"tiny"}, protocol=2)


def write_cifar(root, test_batch: bytes | None = None, extracted=False):
    files = {f"data_batch_{i}": cifar_batch(2, 2 * (i - 1)) for i in range(1, 6)}
    files["test_batch"] = test_batch or cifar_batch(3, 7)
    if extracted:
        folder = root / "cifar-10-batches-py"
        folder.mkdir()
        for name, content in files.items():
            (folder / name).write_bytes(content)
        return
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


@pytest.mark.parametrize("extracted", [False, True])
def test_cifar_archive_and_folder(tmp_path, extracted):
    write_cifar(tmp_path, extracted=extracted)
    cfg = config.RunConfig(dataset="cifar10", data_dir=str(tmp_path), batch_size=2,
                           model="three-layer-convnet")
    d = data.prepare_data(cfg, "cpu")
    assert d.x_train.shape == (10, 3, 32, 32) and d.x_val.shape == (3, 3, 32, 32)
    assert d.y_train.tolist() == list(range(10)) and d.y_val.tolist() == [7, 8, 9]
    # Per-channel standardization: channel value (pixel/255 - mean_c) / std_c.
    mean, std = data.NORM_CONSTANTS["cifar10"]
    for c, pixel in enumerate((255, 51, 0)):
        expected = (pixel / 255 - mean[c]) / std[c]
        assert torch.allclose(d.x_train[:, c], torch.full((10, 32, 32), expected))
    assert d.classes[0] == "airplane"


class RunsShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"data": RunsShellCommand(marker)}, protocol=2)
    with pytest.raises(data.UnsafePickleError, match="system"):
        data.restricted_loads(evil, "evil_batch")
    assert not marker.exists()
    # The same refusal comes out of prepare_data for a poisoned archive, naming the batch.
    write_cifar(tmp_path, test_batch=evil)
    cfg = config.RunConfig(dataset="cifar10", data_dir=str(tmp_path), batch_size=2,
                           model="three-layer-convnet")
    with pytest.raises(data.DataCorruptError, match="test_batch"):
        data.prepare_data(cfg, "cpu")
    assert not marker.exists()


def test_restricted_unpickler_reads_arrays():
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, 4):
        loaded = data.restricted_loads(pickle.dumps({b"data": array}, protocol=protocol))
        assert np.array_equal(loaded[b"data"], array)


# --- toy sets and batches --------------------------------------------------------------------

@pytest.mark.parametrize("name", config.TOY_DATASETS)
def test_toy_sets(name):
    cfg = config.RunConfig(dataset=name, toy_samples=200, batch_size=8)
    d = data.prepare_data(cfg, "cpu")
    k = config.NUM_CLASSES[name]
    assert d.x_train.shape == (160, 2) and d.x_val.shape == (40, 2)   # 20% held out
    assert d.input_shape == (2,) and d.num_classes == k and len(d.classes) == k
    assert set(d.y_train.tolist()) == set(range(k)) and set(d.y_val.tolist()) == set(range(k))
    assert d.x_train.abs().max() < 1.6 and d.x_train.std() > 0.2    # about [-1, 1]
    again_points, again_labels = data.make_toy(name, 200, 0.1)     # fixed data seed
    assert np.array_equal(again_points[:160], d.x_train.numpy())
    assert np.array_equal(again_labels[:160], d.y_train.numpy())
    noisier, _ = data.make_toy(name, 200, 0.5)
    assert not np.allclose(noisier, again_points)


def test_toy_val_split_option():
    d = data.prepare_data(config.RunConfig(dataset="spirals", toy_samples=100, val_split=0.3,
                                           batch_size=8), "cpu")
    assert (len(d.x_train), len(d.x_val)) == (70, 30)


def test_batch_indices():
    batches = data.batch_indices(10, 4, torch.Generator().manual_seed(0), False, "cpu")
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert all(b.dtype == torch.int64 for b in batches)
    dropped = data.batch_indices(10, 4, torch.Generator().manual_seed(0), True, "cpu")
    assert [len(b) for b in dropped] == [4, 4]
    assert torch.equal(dropped[0], batches[0])          # same generator state, same order
    other = data.batch_indices(10, 4, torch.Generator().manual_seed(1), False, "cpu")
    assert not torch.equal(torch.cat(other), torch.cat(batches))
    exact = data.batch_indices(8, 4, torch.Generator().manual_seed(0), True, "cpu")
    assert [len(b) for b in exact] == [4, 4]


def test_spirals_look_like_spirals_at_the_default_noise():
    # Without noise each arm turns a full turn from the centre out (the old arms turned 4
    # radians); at the default noise a point's nearest neighbour is of its own arm (0.88
    # with the old formula, whose equal noise everywhere blurred the centre into blobs).
    points, labels = data.make_toy("spirals", 600, 0.0)
    for arm in range(3):
        xy = points[labels == arm]
        order = np.argsort(np.hypot(xy[:, 0], xy[:, 1]))
        turned = np.unwrap(np.arctan2(xy[order, 0], xy[order, 1]))
        assert abs(turned[-1] - turned[0]) > 0.95 * 2 * np.pi
    points, labels = data.make_toy("spirals", 600, config.RunConfig().toy_noise)
    distance = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distance, np.inf)
    assert (labels[distance.argmin(1)] == labels).mean() > 0.95
