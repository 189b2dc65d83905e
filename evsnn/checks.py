"""Input checks shared by the IR, the file readers and (later) the engines.

In the spirit of scikit-learn's ``check_array``: one function converts and
validates, options are keyword-only, and ``where``/``name`` thread through so
that every message says which object and which field failed.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence

import numpy as np

from .errors import InputError, ModelError

__all__ = ["check_array", "check_name", "check_shape", "check_pair", "check_input_file", "check_output_path",
           "file_kind", "FLOAT_DTYPES"]

#: Floating dtypes the IR stores as they are (float64 is preserved bit for bit).
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_name(name: object, *, what: str) -> str:
    """Return ``name`` if it is a Python identifier (usable by Brian2, NIR and HDF5)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ModelError(
            f"{what} name must be an identifier (letters, digits, '_', not starting "
            f"with a digit), got {name!r}. Rename it, e.g. 'fc1' or 'conv2'."
        )
    return name


def check_array(
    value: object,
    *,
    where: str,
    name: str,
    kind: str = "float",
    ndim: int | None = None,
    shape: tuple[int, ...] | None = None,
    ensure_finite: bool = True,
    ensure_positive: bool = False,
) -> np.ndarray:
    """Convert ``value`` to a read-only array of the IR's dtypes and validate it.

    Parameters
    ----------
    value : array_like
        What the user gave.
    where : str
        The owner, for messages, e.g. ``"Projection 'fc1'"``.
    name : str
        The field, e.g. ``"weight"``.
    kind : {"float", "int"}, default="float"
        ``"float"`` keeps float32/float64 unchanged and casts integer or boolean
        input to float64; ``"int"`` casts integer input to int64.
    ndim, shape : optional
        Required number of dimensions / exact shape.
    ensure_finite, ensure_positive : bool
        Reject NaN/inf, or values <= 0.

    Returns
    -------
    numpy.ndarray
        A new, read-only, C-contiguous, native-endian array.

    Raises
    ------
    ModelError
        With a message naming ``where`` and ``name``.
    """
    try:
        arr = np.asarray(value)
    except Exception as err:  # ragged lists, objects numpy cannot convert
        raise ModelError(f"{where}: {name} must be an array, got {type(value).__name__}.") from err
    if kind == "float":
        if arr.dtype in FLOAT_DTYPES:
            dtype = arr.dtype.newbyteorder("=")
        elif arr.dtype.kind in "biu":
            dtype = np.dtype(np.float64)
        else:
            raise ModelError(
                f"{where}: {name} must have dtype float32 or float64, got {arr.dtype}. "
                "Cast it with .astype(np.float32)."
            )
    elif kind == "int":
        if arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.dtype.kind == "f"):
            raise ModelError(f"{where}: {name} must be an integer array, got dtype {arr.dtype}.")
        dtype = np.dtype(np.int64)
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown kind {kind!r}")
    if ndim is not None and arr.ndim != ndim:
        raise ModelError(f"{where}: {name} must have {ndim} dimensions, got shape {arr.shape}.")
    if shape is not None and arr.shape != tuple(shape):
        raise ModelError(f"{where}: {name} must have shape {tuple(shape)}, got {arr.shape}.")
    out = np.array(arr, dtype=dtype, order="C", copy=True)
    if kind == "float" and ensure_finite and out.size and not np.isfinite(out).all():
        bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise ModelError(
            f"{where}: {name} must be finite, got {bad} NaN/inf value(s). "
            "Check the source network for diverged weights."
        )
    if ensure_positive and out.size and not (out > 0).all():
        raise ModelError(f"{where}: {name} must be > 0, got minimum {out.min()!r}.")
    out.setflags(write=False)
    return out


def check_shape(value: object, *, where: str, name: str, ndim: int | None = None) -> tuple[int, ...]:
    """Return ``value`` as a tuple of positive ints (a population or input shape)."""
    if isinstance(value, (int, np.integer)):
        value = (value,)
    try:
        shape = tuple(int(v) for v in value)  # type: ignore[union-attr]
        ok = all(float(v) == int(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        ok = False
    if not ok or not shape or any(s <= 0 for s in shape) or (ndim is not None and len(shape) != ndim):
        need = f"{ndim} positive integers" if ndim else "a tuple of positive integers"
        raise ModelError(f"{where}: {name} must be {need}, got {value!r}.")
    return shape


def check_pair(value: object, *, where: str, name: str, minimum: int) -> tuple[int, int]:
    """Return an int or a pair of ints as a pair, each >= ``minimum`` (stride, padding)."""
    if isinstance(value, (int, np.integer)):
        value = (value, value)
    if (
        not isinstance(value, Sequence | np.ndarray)
        or len(value) != 2
        or not all(isinstance(v, (int, np.integer)) and v >= minimum for v in value)
    ):
        raise ModelError(f"{where}: {name} must be an int or a pair of ints >= {minimum}, got {value!r}.")
    return int(value[0]), int(value[1])


def check_input_file(path: str | os.PathLike, *, what: str) -> str:
    """Return ``path`` if it names a readable regular file; never opens it (a FIFO would block)."""
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{what} {path}: no such file.") from None
    except OSError as err:
        raise InputError(f"{what} {path}: cannot be read ({err.strerror}).") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{what} {path}: is a directory, expected a file.")
    if not stat.S_ISREG(mode):
        raise InputError(f"{what} {path}: must be a regular file, got {file_kind(mode)}.")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {path}: cannot be read (permission denied).")
    return path


def file_kind(mode: int) -> str:
    """What a ``stat`` mode names, for messages: "a regular file", "a directory", "a FIFO", ..."""
    for test, kind in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def check_output_path(path: str | os.PathLike, *, what: str, suffixes: Sequence[str] | None = None) -> str:
    """Return ``path`` if a file can be written there: its directory exists and is writable, it is no directory,
    and its name ends in one of ``suffixes`` (when given). Nothing is created."""
    path = os.fspath(path)
    if suffixes is not None and os.path.splitext(path)[1].lower() not in suffixes:
        raise InputError(f"{what} {path}: the file name must end in {', '.join(suffixes)}.")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise InputError(f"{what} {path}: the directory {folder} does not exist. Create it first.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: the directory {folder} is not writable.")
    if os.path.isdir(path):
        raise InputError(f"{what} {path}: is a directory, expected a file name.")
    return path
