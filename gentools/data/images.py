"""Image datasets for gentools: offline loaders returning discrete-level uint8 tensors.

Every loader returns an :class:`ImageData` whose splits are ``TensorDataset``\\ s of
``(x, y)`` with ``x`` uint8 of shape ``(N, C, H, W)`` holding integer levels
``0 .. levels-1`` and ``y`` int64 labels.  Nothing is ever downloaded:

* ``digits``: scikit-learn's bundled 8x8 digits (17 levels), split in file order
  1000 / 350 / 447.
* ``mnist`` / ``fashion-mnist``: the four IDX files (raw or ``.gz``) in a local folder.
  Without a folder, ``fashion-mnist`` is read from Debian's ``dataset-fashion-mnist``
  package (:data:`SYSTEM_DIRS`) when it is installed.
* ``cifar10``: the "CIFAR-10 python version" batches in a local folder.  These are
  pickles (the dataset's own format); they are read with an unpickler that builds only
  what the real batches hold (dicts, lists, bytes, numbers and NumPy arrays) and refuses
  anything else, so a crafted file cannot run code.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")

DIGIT_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
# where a system package puts a data set: used when no folder is given
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
INSTALL_HINTS = {"fashion-mnist": "sudo apt-get install -y dataset-fashion-mnist"}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dims
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dim


class DataError(ValueError):
    """A dataset file exists but is corrupt, truncated or not in the expected format."""


@dataclass
class ImageData:
    """An image dataset split into train / val / test ``TensorDataset``\\ s of ``(x, y)``."""

    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    levels: int
    classes: list[str]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Image shape ``(C, H, W)``."""
        c, h, w = self.train.tensors[0].shape[1:]
        return (int(c), int(h), int(w))


def to_unit(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Map integer levels ``0 .. levels-1`` to floats in ``[0, 1]`` (``x / (levels-1)``)."""
    _check_levels(levels)
    return x.to(torch.float32) / (levels - 1)


def from_unit(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Map floats in ``[0, 1]`` to uint8 levels ``0 .. levels-1`` (rounded and clamped)."""
    _check_levels(levels)
    return (x.to(torch.float32) * (levels - 1)).round().clamp(0, levels - 1).to(torch.uint8)


def _check_levels(levels: int) -> None:
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be in 2..256 to fit uint8, got {levels}")


def _dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(
        torch.from_numpy(np.array(x, dtype=np.uint8, order="C")),
        torch.from_numpy(np.array(y, dtype=np.int64, order="C")),
    )


def _split(name: str, x: np.ndarray, y: np.ndarray, val_size: int) -> tuple[
        TensorDataset, TensorDataset]:
    """Train = first ``N - val_size`` rows, val = last ``val_size`` rows (file order)."""
    n = len(x)
    if val_size < 0:
        raise ValueError(f"val_size must be >= 0, got {val_size}")
    if val_size >= n:
        raise ValueError(f"{name}: val_size={val_size} leaves no training images "
                         f"(the training file holds {n}); use a val_size below {n}")
    cut = n - val_size
    return _dataset(x[:cut], y[:cut]), _dataset(x[cut:], y[cut:])


def digits() -> ImageData:
    """scikit-learn's 8x8 digits (levels 0..16), split in file order 1000 / 350 / 447."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8), values 0..16
    y = bunch.target.astype(np.int64)
    return ImageData(
        name="digits",
        train=_dataset(x[:1000], y[:1000]),
        val=_dataset(x[1000:1350], y[1000:1350]),
        test=_dataset(x[1350:], y[1350:]),
        levels=17,
        classes=list(DIGIT_CLASSES),
    )


def default_root(name: str) -> Path | None:
    """The folder a system package installed ``name`` in, or None when there is none."""
    folder = SYSTEM_DIRS.get(name)
    return folder if folder is not None and folder.is_dir() else None


def _require_root(name: str, root: str | os.PathLike | None) -> Path:
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    found = default_root(name)
    if found is not None:
        return found
    where = f"; {SYSTEM_DIRS[name]} does not exist" if name in SYSTEM_DIRS else ""
    hint = f" Install it with: {INSTALL_HINTS[name]}." if name in INSTALL_HINTS else ""
    raise FileNotFoundError(f"dataset {name!r} needs the folder that holds its files (data_dir "
                            f"in a notebook, root= in Python){where}; nothing is downloaded.{hint}")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read file ({e})") from e


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file, checking magic, dims and payload length."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: file too short for an IDX header ({len(raw)} bytes)")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise DataError(f"{path}: wrong IDX magic number 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(raw) - header
    if payload != expected:
        raise DataError(f"{path}: IDX payload is {payload} bytes but dims {dims} "
                        f"need {expected} (truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_files(folder: Path, names: tuple[str, ...], label: str,
                gz: bool) -> dict[str, Path]:
    suffix = "[.gz]" if gz else ""
    if not folder.is_dir():
        raise FileNotFoundError(f"{label}: the folder {folder} does not exist; it should hold "
                                f"{', '.join(n + suffix for n in names)}")
    found: dict[str, Path] = {}
    for name in names:
        for candidate in (name, name + ".gz") if gz else (name,):
            if (folder / candidate).is_file():
                found[name] = folder / candidate
                break
    missing = [n for n in names if n not in found]
    if missing:
        raise FileNotFoundError(
            f"{label} files not found in {folder}: expected "
            f"{', '.join(n + suffix for n in names)}; missing: {', '.join(missing)}")
    return found


def mnist(root: str | os.PathLike, kind: str = "mnist", val_size: int = 5000) -> ImageData:
    """MNIST or Fashion-MNIST from the four IDX files (raw or ``.gz``) in ``root``."""
    if kind not in ("mnist", "fashion-mnist"):
        raise ValueError(f"kind must be 'mnist' or 'fashion-mnist', got {kind!r}")
    folder = _require_root(kind, root)
    label = "MNIST" if kind == "mnist" else "Fashion-MNIST"
    files = _find_files(folder, MNIST_FILES, label, gz=True)
    arrays = {}
    for part in ("train", "t10k"):
        img_path = files[f"{part}-images-idx3-ubyte"]
        lab_path = files[f"{part}-labels-idx1-ubyte"]
        images = _read_idx(img_path, IDX_IMAGES_MAGIC)
        labels = _read_idx(lab_path, IDX_LABELS_MAGIC)
        if len(images) != len(labels):
            raise DataError(f"{img_path}: holds {len(images)} images but {lab_path} "
                            f"holds {len(labels)} labels")
        arrays[part] = (images[:, None], labels)
    (x_tr, y_tr), (x_te, y_te) = arrays["train"], arrays["t10k"]
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(f"{files['t10k-images-idx3-ubyte']}: image size {x_te.shape[2:]} "
                        f"differs from the training images {x_tr.shape[2:]}")
    train, val = _split(kind, x_tr, y_tr, val_size)
    classes = DIGIT_CLASSES if kind == "mnist" else FASHION_CLASSES
    return ImageData(kind, train, val, _dataset(x_te, y_te), 256, list(classes))


# The only globals a CIFAR-10 batch refers to: NumPy's array and dtype rebuilders (under
# their NumPy 1 and NumPy 2 module names), and the str-to-bytes encoder that a protocol-2
# pickle written by Python 3 uses for bytes. Everything else in a batch is a plain dict,
# list, bytes or int, which pickle builds without looking up any global.
_CIFAR_GLOBALS = {
    (module, name)
    for core in ("numpy.core", "numpy._core")
    for module, name in ((f"{core}.multiarray", "_reconstruct"), (f"{core}.numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a CIFAR-10 batch needs."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name}: a CIFAR-10 batch holds only NumPy arrays, "
                "lists, bytes and numbers"
            )
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 pickle batch -> (x uint8 (N, 3, 32, 32), y int64 (N,))."""
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a readable CIFAR-10 pickle ({e})") from e
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: expected a dict with keys b'data' and b'labels'")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
        raise DataError(f"{path}: b'data' must be a uint8 array of shape (N, 3072), got {desc}")
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise DataError(f"{path}: labels outside 0..9 (min {labels.min()}, max {labels.max()})")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def cifar10(root: str | os.PathLike, val_size: int = 5000) -> ImageData:
    """CIFAR-10 (python version) from ``root`` or ``root/cifar-10-batches-py``.

    The batches are pickles, read with an unpickler that refuses anything but the arrays,
    lists, bytes and numbers of a real batch (a DataError names the file).
    """
    folder = _require_root("cifar10", root)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    files = _find_files(folder, CIFAR10_FILES, "CIFAR-10", gz=False)
    batches = [_read_cifar_batch(files[n]) for n in CIFAR10_FILES[:5]]
    x_tr = np.concatenate([b[0] for b in batches])
    y_tr = np.concatenate([b[1] for b in batches])
    x_te, y_te = _read_cifar_batch(files["test_batch"])
    train, val = _split("cifar10", x_tr, y_tr, val_size)
    return ImageData("cifar10", train, val, _dataset(x_te, y_te), 256, list(CIFAR10_CLASSES))


def load_images(name: str = "digits", root: str | os.PathLike | None = None,
                val_size: int | None = None) -> ImageData:
    """Load one of :data:`DATASETS` by name; ``val_size=None`` uses the dataset default.

    ``digits`` needs no ``root`` and has a fixed 1000 / 350 / 447 split (``val_size``
    must be None or 350); the others read a local folder and default to ``val_size=5000``.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "digits":
        if val_size not in (None, 350):
            raise ValueError(f"digits has a fixed 1000/350/447 split; got val_size={val_size}")
        return digits()
    folder = _require_root(name, root)
    size = 5000 if val_size is None else val_size
    if name == "cifar10":
        return cifar10(folder, val_size=size)
    return mnist(folder, kind=name, val_size=size)
