"""IDX files and the MNIST data sets.

The MNIST test set (10,000 handwritten digits, 28x28, by Yann LeCun and
Corinna Cortes, licensed CC BY-SA 3.0) ships inside the package, so that a
fresh install runs offline. The standard split here: the first 8,000 images
for training/calibration, the last 2,000 for evaluation. Full MNIST or
Fashion-MNIST downloads are read from a user's directory with
:func:`load_idx_dir`, and a user's own samples (``.npy``, ``.npz`` or IDX,
as ``evsnn run --data`` takes them) with :func:`load_samples`.

IDX format: two zero bytes, a type code, the number of dimensions, then one
big-endian uint32 per dimension and the data, big-endian, row-major.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zipfile
import zlib
from importlib import resources
from typing import NamedTuple

import numpy as np

from ..errors import FormatError

__all__ = ["Split", "load_idx", "load_bundled_mnist", "mnist_split", "load_idx_dir", "load_samples"]

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


def _read_array(path: str, what: str) -> np.ndarray | dict[str, np.ndarray]:
    """The array of a ``.npy`` file, the arrays of a ``.npz`` file, or the array of an IDX file."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".npy", ".npz"):
        return load_idx(path)
    try:
        with open(path, "rb") as f:
            loaded = np.load(f, allow_pickle=False)
            return dict(loaded.items()) if suffix == ".npz" else loaded
    except (ValueError, EOFError, zipfile.BadZipFile) as err:  # pickled objects, truncated or not numpy at all
        got = ("a file in another format, or of pickled Python objects, which are not read (unpickling runs code)"
               if "pickle" in str(err)
               else "an empty or truncated file" if isinstance(err, EOFError) else f"{type(err).__name__}: {err}")
        raise FormatError(
            f"{path}: {what} must be a numpy {suffix} file of numeric arrays, got {got}. "
            f"Save them with np.save / np.savez."
        ) from err


def _check_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise FormatError(f"{where}: labels must be a 1-D integer array, got {y.ndim}-D {y.dtype}.")
    if len(y) != n:
        raise FormatError(f"{where}: number of labels must equal number of samples ({n}), got {len(y)}.")
    if n and y.min() < 0:
        raise FormatError(f"{where}: labels must be >= 0, got {int(y.min())}.")
    return y.astype(np.int64)


def load_samples(path: str | os.PathLike, *, labels: str | os.PathLike | None = None,
                 dtype: object = np.float32) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a user's samples, and their labels if there are any.

    Parameters
    ----------
    path : str or path-like
        ``.npy``: the samples, shape (N, *sample shape). ``.npz``: an array
        ``x`` (the samples) and optionally ``y`` (labels), nothing else. Any
        other name is read as an IDX file (raw or gzip): uint8 images of shape
        (N, H, W) become (N, 1, H, W) scaled to [0, 1], like the bundled MNIST;
        other IDX arrays are taken as they are.
    labels : str or path-like, optional
        A ``.npy`` or IDX file of integer labels, one per sample (for a
        ``.npz`` holding ``y``, leave it out).
    dtype : floating dtype, default=np.float32
        Dtype of integer or boolean samples (float samples keep theirs).

    Returns
    -------
    x : numpy.ndarray
        Shape (N, *sample shape); its shape is not checked against any model.
    y : numpy.ndarray or None
        int64 labels of shape (N,), or None without labels.

    Raises
    ------
    FormatError
        Not a readable numpy/IDX file, an ``.npz`` without ``x`` or with other
        members, non-numeric samples, or labels that are not one integer per sample.
    """
    path, dt = os.fspath(path), _float_dtype(dtype)
    data = _read_array(path, "samples")
    y = None
    if isinstance(data, dict):
        extra = sorted(set(data) - {"x", "y"})
        if "x" not in data or extra:
            raise FormatError(f"{path}: an .npz file of samples must hold an array 'x' and optionally labels 'y', "
                              f"got members {sorted(data)}. Save it with np.savez(path, x=samples, y=labels).")
        x, y = data["x"], data.get("y")
        if y is not None and labels is not None:
            raise FormatError(f"{path}: holds labels 'y', so no separate labels file can be given (got {labels}).")
    else:
        x = data
        if x.ndim == 3 and x.dtype == np.uint8 and os.path.splitext(path)[1].lower() not in (".npy", ".npz"):
            x = _scale(x, dt)  # IDX images, as the bundled MNIST
    if x.dtype.kind not in "biuf" or x.ndim < 1:
        raise FormatError(f"{path}: samples must be a numeric array of shape (N, *sample shape), "
                          f"got {x.ndim}-D {x.dtype}.")
    if x.dtype.kind != "f":
        x = x.astype(dt)
    if labels is not None:
        y = _read_array(os.fspath(labels), "labels")
        if isinstance(y, dict):
            raise FormatError(f"{labels}: labels must be a .npy or IDX file, got an .npz file.")
        return x, _check_labels(y, len(x), os.fspath(labels))
    return x, None if y is None else _check_labels(y, len(x), path)
