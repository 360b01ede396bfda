"""Tests for gentools.data: digits split, tiny real IDX / CIFAR files, and error paths."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gentools.data import DATASETS, DataError, from_unit, images, load_images, to_unit
from gentools.data.images import CIFAR10_CLASSES, FASHION_CLASSES, MNIST_FILES, cifar10, mnist

# ---------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    if magic is None:
        magic = 0x00000800 | arr.ndim
    return struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.tobytes()


def make_mnist(folder: Path, gz: bool = False, n_train: int = 12, n_test: int = 3,
               h: int = 5, w: int = 4) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) + 7) % 10,
    }
    for name, arr in arrays.items():
        data = idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def make_cifar(
    folder: Path, rows: int = 3, n_test: int = 2, protocol: int = pickle.DEFAULT_PROTOCOL
) -> tuple[np.ndarray, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    xs, ys = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (rows, 3072), dtype=np.uint8)
        labels = [(i + k) % 10 for k in range(rows)]
        xs.append(data)
        ys.append(labels)
        with open(folder / f"data_batch_{i}", "wb") as f:
            batch = {b"data": data, b"labels": labels, b"batch_label": b"x",
                     b"filenames": [b"f%d.png" % k for k in range(rows)]}
            pickle.dump(batch, f, protocol=protocol)
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_labels = list(range(n_test))
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": test, b"labels": test_labels}, f, protocol=protocol)
    return np.concatenate(xs), np.concatenate(ys), test, np.array(test_labels)


# ---------------------------------------------------------------- digits


def test_digits_split_in_file_order():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    data = load_images("digits")
    assert data.name == "digits"
    assert data.levels == 17
    assert data.shape == (1, 8, 8)
    assert data.classes == [str(i) for i in range(10)]
    assert [len(s) for s in (data.train, data.val, data.test)] == [1000, 350, 447]
    for split in (data.train, data.val, data.test):
        x, y = split.tensors
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert x.shape[1:] == (1, 8, 8)
        assert int(x.min()) == 0 and int(x.max()) == 16
    np.testing.assert_array_equal(data.train.tensors[0][0, 0].numpy(), bunch.images[0])
    np.testing.assert_array_equal(data.val.tensors[0][0, 0].numpy(), bunch.images[1000])
    np.testing.assert_array_equal(data.test.tensors[0][-1, 0].numpy(), bunch.images[-1])
    assert int(data.train.tensors[1][0]) == bunch.target[0]
    assert int(data.val.tensors[1][0]) == bunch.target[1000]
    assert int(data.test.tensors[1][-1]) == bunch.target[-1]


def test_digits_rejects_other_val_size():
    with pytest.raises(ValueError, match="fixed"):
        load_images("digits", val_size=100)


def test_unit_round_trip():
    x = torch.arange(17, dtype=torch.uint8)
    u = to_unit(x, 17)
    assert u.dtype == torch.float32
    assert float(u[0]) == 0.0 and float(u[-1]) == 1.0
    assert torch.equal(from_unit(u, 17), x)
    clamped = from_unit(torch.tensor([-0.5, 0.49 / 255, 0.51 / 255, 2.0]), 256)
    assert clamped.dtype == torch.uint8
    assert clamped.tolist() == [0, 0, 1, 255]


# ---------------------------------------------------------------- MNIST


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_tiny_idx_files(tmp_path, gz):
    arrays = make_mnist(tmp_path, gz=gz)
    data = load_images("mnist", root=tmp_path, val_size=2)
    assert data.name == "mnist" and data.levels == 256
    assert data.shape == (1, 5, 4)
    assert [len(s) for s in (data.train, data.val, data.test)] == [10, 2, 3]
    train_x = arrays["train-images-idx3-ubyte"]
    train_y = arrays["train-labels-idx1-ubyte"]
    np.testing.assert_array_equal(data.train.tensors[0][:, 0].numpy(), train_x[:10])
    np.testing.assert_array_equal(data.val.tensors[0][:, 0].numpy(), train_x[10:])
    np.testing.assert_array_equal(data.train.tensors[1].numpy(), train_y[:10])
    np.testing.assert_array_equal(data.val.tensors[1].numpy(), train_y[10:])
    np.testing.assert_array_equal(data.test.tensors[0][:, 0].numpy(),
                                  arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(data.test.tensors[1].numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert data.train.tensors[0].dtype == torch.uint8
    assert data.train.tensors[1].dtype == torch.int64


def test_mnist_mixed_raw_and_gz(tmp_path):
    arrays = make_mnist(tmp_path, gz=True)
    gz_path = tmp_path / "t10k-images-idx3-ubyte.gz"
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(gzip.decompress(gz_path.read_bytes()))
    gz_path.unlink()
    data = mnist(tmp_path, val_size=2)
    np.testing.assert_array_equal(data.test.tensors[0][:, 0].numpy(),
                                  arrays["t10k-images-idx3-ubyte"])


def test_fashion_mnist_same_path(tmp_path):
    arrays = make_mnist(tmp_path, gz=True)
    data = load_images("fashion-mnist", root=str(tmp_path), val_size=2)
    assert data.name == "fashion-mnist"
    assert data.classes == FASHION_CLASSES and len(data.classes) == 10
    np.testing.assert_array_equal(data.train.tensors[0][:, 0].numpy(),
                                  arrays["train-images-idx3-ubyte"][:10])


def test_mnist_val_size_too_large(tmp_path):
    make_mnist(tmp_path)
    with pytest.raises(ValueError, match="val_size=12"):
        load_images("mnist", root=tmp_path, val_size=12)
    assert len(load_images("mnist", root=tmp_path, val_size=11).train) == 1


def test_mnist_missing_files_lists_expected(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_images("mnist", root=tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg
    for name in MNIST_FILES:
        assert name + "[.gz]" in msg
    assert msg.endswith("missing: t10k-labels-idx1-ubyte")


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_truncated_payload(tmp_path, gz):
    make_mnist(tmp_path, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = tmp_path / name
    raw = path.read_bytes()
    if gz:
        raw = gzip.compress(gzip.decompress(raw)[:-7])
    else:
        raw = raw[:-7]
    path.write_bytes(raw)
    with pytest.raises(DataError, match="payload") as info:
        load_images("mnist", root=tmp_path, val_size=2)
    assert str(path) in str(info.value)


def test_mnist_cut_gzip_stream(tmp_path):
    make_mnist(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError) as info:
        load_images("mnist", root=tmp_path, val_size=2)
    assert str(path) in str(info.value)


def test_mnist_wrong_magic(tmp_path):
    make_mnist(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(3, dtype=np.uint8), magic=0x00000803))
    with pytest.raises(DataError, match="magic") as info:
        load_images("mnist", root=tmp_path, val_size=2)
    assert str(path) in str(info.value)
    assert "0x00000801" in str(info.value)


def test_mnist_count_mismatch(tmp_path):
    make_mnist(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(11, dtype=np.uint8)))
    with pytest.raises(DataError, match="12 images"):
        load_images("mnist", root=tmp_path, val_size=2)


# ---------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize(("nested", "protocol"), [(False, 2), (True, pickle.DEFAULT_PROTOCOL)])
def test_cifar10_layouts_and_pixels(tmp_path, nested, protocol):
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    x_tr, y_tr, x_te, y_te = make_cifar(folder, protocol=protocol)
    data = load_images("cifar10", root=tmp_path, val_size=4)
    assert data.shape == (3, 32, 32) and data.levels == 256
    assert data.classes == CIFAR10_CLASSES
    assert [len(s) for s in (data.train, data.val, data.test)] == [11, 4, 2]
    # Row-major channel-first: pixel (c, i, j) lives at column c*1024 + i*32 + j.
    c, i, j = 2, 5, 17
    assert int(data.train.tensors[0][3, c, i, j]) == int(x_tr[3, c * 1024 + i * 32 + j])
    assert int(data.val.tensors[0][1, c, i, j]) == int(x_tr[12, c * 1024 + i * 32 + j])
    assert int(data.test.tensors[0][1, 0, 31, 0]) == int(x_te[1, 31 * 32])
    np.testing.assert_array_equal(data.train.tensors[0].reshape(11, -1).numpy(), x_tr[:11])
    np.testing.assert_array_equal(data.train.tensors[1].numpy(), y_tr[:11])
    np.testing.assert_array_equal(data.val.tensors[1].numpy(), y_tr[11:])
    np.testing.assert_array_equal(data.test.tensors[1].numpy(), y_te)
    assert data.test.tensors[1].dtype == torch.int64


def test_cifar10_missing_files(tmp_path):
    make_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError) as info:
        cifar10(tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg
    for name in ("data_batch_1", "data_batch_5", "test_batch"):
        assert name in msg
    assert msg.endswith("missing: data_batch_3")


class _Payload:
    """Unpickles into a call of exec: what a crafted batch would do to run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


@pytest.mark.parametrize("where", ["data", "labels"])
def test_cifar10_refuses_a_pickle_that_would_run_code(tmp_path, where):
    make_cifar(tmp_path)
    marker = tmp_path / "code-ran"
    batch = {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2]}
    batch[where.encode()] = _Payload(marker)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch))
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control")))  # the payload is live ...
    assert (tmp_path / "control").read_text() == "ran"
    with pytest.raises(DataError, match="refused to load builtins.exec") as info:
        cifar10(tmp_path, val_size=2)  # ... but the loader never runs it
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_cifar10_wrong_columns(tmp_path):
    make_cifar(tmp_path)
    path = tmp_path / "data_batch_2"
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((3, 3000), np.uint8), b"labels": [0, 1, 2]}, f)
    with pytest.raises(DataError, match="3072") as info:
        cifar10(tmp_path, val_size=2)
    assert str(path) in str(info.value)


def test_cifar10_label_count_mismatch(tmp_path):
    make_cifar(tmp_path)
    path = tmp_path / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match="labels") as info:
        cifar10(tmp_path, val_size=2)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- argument errors


def test_unknown_dataset_lists_names():
    with pytest.raises(ValueError) as info:
        load_images("svhn")
    for name in DATASETS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_no_folder_and_no_system_package_names_what_to_do(name, monkeypatch, tmp_path):
    missing = tmp_path / "not-installed"
    monkeypatch.setitem(images.SYSTEM_DIRS, "fashion-mnist", missing)
    with pytest.raises(FileNotFoundError) as info:
        load_images(name)
    msg = str(info.value)
    assert "data_dir" in msg and "nothing is downloaded" in msg
    if name == "fashion-mnist":
        assert str(missing) in msg and "apt-get install -y dataset-fashion-mnist" in msg


def test_fashion_mnist_without_a_folder_reads_the_system_package(monkeypatch, tmp_path):
    arrays = make_mnist(tmp_path, gz=True)
    monkeypatch.setitem(images.SYSTEM_DIRS, "fashion-mnist", tmp_path)
    for root in (None, ""):
        data = load_images("fashion-mnist", root, val_size=2)
        np.testing.assert_array_equal(data.test.tensors[0][:, 0].numpy(),
                                      arrays["t10k-images-idx3-ubyte"])
    with pytest.raises(FileNotFoundError, match="mnist"):
        load_images("mnist", None)  # the system folder serves fashion-mnist only


def test_a_folder_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_images("fashion-mnist", tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value) and "does not exist" in str(info.value)
