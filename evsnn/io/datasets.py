"""IDX files and the MNIST data sets.

The MNIST test set (10,000 handwritten digits, 28x28, by Yann LeCun and
Corinna Cortes, licensed CC BY-SA 3.0) ships inside the package, so that a
fresh install runs offline. The standard split here: the first 8,000 images
for training/calibration, the last 2,000 for evaluation. Full MNIST or
Fashion-MNIST downloads are read from a user's directory with
:func:`load_idx_dir`.

IDX format: two zero bytes, a type code, the number of dimensions, then one
big-endian uint32 per dimension and the data, big-endian, row-major.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from importlib import resources
from typing import NamedTuple

import numpy as np

from ..errors import FormatError

__all__ = ["Split", "load_idx", "load_bundled_mnist", "mnist_split", "load_idx_dir"]

_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_FIX = "The file is damaged or not an IDX file; download it again"
_MNIST_N = 10_000
_IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class Split(NamedTuple):
    """Images as float in [0, 1], shape (N, 1, H, W); labels int64, shape (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _read(path: str | os.PathLike) -> bytes:
    """Return the file's bytes, decompressed if they start with the gzip magic."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as err:  # BadGzipFile is an OSError
        raise FormatError(
            f"{path}: gzip stream must be complete and valid, got {type(err).__name__}: {err}. "
            f"{_FIX}."
        ) from err


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (detected from its first bytes).

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    numpy.ndarray
        A new, writable array in native byte order, with the file's shape.

    Raises
    ------
    FormatError
        Bad magic number, unknown type code, header or payload of the wrong size,
        or a corrupt gzip stream.
    """
    data = _read(path)
    if len(data) < 4:
        raise FormatError(f"{path}: IDX header must be at least 4 bytes, got {len(data)}. {_FIX}.")
    if data[:2] != b"\x00\x00":
        raise FormatError(
            f"{path}: IDX magic number must start with two zero bytes, got {data[:4]!r}. {_FIX}."
        )
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _DTYPES)
        raise FormatError(
            f"{path}: IDX type code must be one of {known}, got 0x{code:02X}. {_FIX}."
        )
    if ndim < 1:
        raise FormatError(f"{path}: IDX number of dimensions must be >= 1, got {ndim}. {_FIX}.")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise FormatError(
            f"{path}: IDX header must be {start} bytes for {ndim} dimensions, got {len(data)}. "
            f"{_FIX}."
        )
    dims = struct.unpack(f">{ndim}I", data[4:start])
    dtype = _DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - start != expected:
        raise FormatError(
            f"{path}: IDX payload must be {expected} bytes for shape {dims} of {dtype.name}, "
            f"got {len(data) - start}. The file is truncated or has trailing bytes; "
            f"download it again."
        )
    arr = np.frombuffer(data, dtype=dtype, offset=start).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _check_pair(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.ndim != 3 or images.dtype != np.uint8:
        raise FormatError(
            f"{where}: images must be a 3-D uint8 array (N, H, W), "
            f"got {images.ndim}-D {images.dtype}. Use the IDX image files (idx3-ubyte)."
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise FormatError(
            f"{where}: labels must be a 1-D integer array, got {labels.ndim}-D {labels.dtype}. "
            f"Use the IDX label files (idx1-ubyte)."
        )
    if len(images) != len(labels):
        raise FormatError(
            f"{where}: number of labels must equal number of images ({len(images)}), "
            f"got {len(labels)}. Use image and label files of the same set."
        )


def _scale(images: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return (images.astype(dtype) / dtype.type(255))[:, None]


def _float_dtype(dtype: object) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating dtype, got {dt}. Use np.float32 or np.float64.")
    return dt


def load_bundled_mnist() -> tuple[np.ndarray, np.ndarray]:
    """Return the bundled MNIST test set, unscaled.

    Returns
    -------
    images : numpy.ndarray
        uint8, shape (10000, 28, 28).
    labels : numpy.ndarray
        uint8, shape (10000,), digits 0..9.
    """
    folder = resources.files("evsnn.io") / "data" / "mnist"
    with resources.as_file(folder / f"{_IDX_NAMES['x_test']}.gz") as p:
        images = load_idx(p)
    with resources.as_file(folder / f"{_IDX_NAMES['y_test']}.gz") as p:
        labels = load_idx(p)
    _check_pair(images, labels, "bundled MNIST")
    return images, labels


def mnist_split(*, n_train: int = 8000, dtype: object = np.float32) -> Split:
    """The standard split of the bundled MNIST test set.

    Parameters
    ----------
    n_train : int, default=8000
        The first ``n_train`` images are for training/calibration, the rest
        (2,000 by default) for evaluation.
    dtype : floating dtype, default=np.float32
        Dtype of the images, scaled to [0, 1].

    Returns
    -------
    Split
        Images of shape (N, 1, 28, 28), labels int64.
    """
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)):
        raise ValueError(f"n_train must be an int, got {n_train!r}. Pass e.g. n_train=8000.")
    if not 0 < n_train < _MNIST_N:
        raise ValueError(
            f"n_train must be in 1..{_MNIST_N - 1} so that both parts are non-empty, "
            f"got {n_train}. Pass e.g. n_train=8000."
        )
    dt = _float_dtype(dtype)
    images, labels = load_bundled_mnist()
    x, y = _scale(images, dt), labels.astype(np.int64)
    return Split(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def load_idx_dir(path: str | os.PathLike, *, dtype: object = np.float32) -> Split:
    """Read a full MNIST or Fashion-MNIST download (the four train/t10k IDX files).

    Parameters
    ----------
    path : str or path-like
        Directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or
        with a ``.gz`` suffix (the raw file is read if both exist).
    dtype : floating dtype, default=np.float32
        Dtype of the images, scaled to [0, 1].

    Returns
    -------
    Split
        Images of shape (N, 1, H, W), labels int64.

    Raises
    ------
    FileNotFoundError
        The directory or some of the four files are missing (all are listed).
    FormatError
        A file is not valid IDX, or images and labels do not match.
    """
    dt = _float_dtype(dtype)
    folder = os.fspath(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"{folder}: must be an existing directory of IDX files, got no such directory. "
            f"Pass the folder where MNIST or Fashion-MNIST was downloaded."
        )
    found, missing = {}, []
    for key, stem in _IDX_NAMES.items():
        names = [stem, stem + ".gz"]
        hit = next((n for n in names if os.path.isfile(os.path.join(folder, n))), None)
        if hit is None:
            missing.append(stem)
        else:
            found[key] = os.path.join(folder, hit)
    if missing:
        accepted = ", ".join(_IDX_NAMES.values())
        raise FileNotFoundError(
            f"{folder}: IDX files must all be present, got {', '.join(missing)} missing. "
            f"Accepted names: {accepted}, each optionally with '.gz'."
        )
    arrays = {key: load_idx(p) for key, p in found.items()}
    _check_pair(arrays["x_train"], arrays["y_train"], f"{folder} (train)")
    _check_pair(arrays["x_test"], arrays["y_test"], f"{folder} (t10k)")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise FormatError(
            f"{folder}: t10k image size must equal train image size "
            f"{arrays['x_train'].shape[1:]}, got {arrays['x_test'].shape[1:]}. "
            f"Use files from the same data set."
        )
    return Split(
        _scale(arrays["x_train"], dt),
        arrays["y_train"].astype(np.int64),
        _scale(arrays["x_test"], dt),
        arrays["y_test"].astype(np.int64),
    )
