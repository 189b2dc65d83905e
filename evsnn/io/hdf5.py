"""The native evsnn model file: one HDF5 file per :class:`~evsnn.SpikingModel`.

The layout is specified in ``docs/hdf5-format.md``. In short::

    bytes 0-511            user block: magic, length, SHA-256 of the rest (evsnn.io.integrity)
    /                      format="evsnn", format_version=2, dt, readout, output
    /input                 shape, encoding, max_rate, scale
    /populations           order = population names, in topological order
    /populations/<name>    shape, neuron kind, reset, ...; each per-neuron field (threshold, tau_mem, ...)
                           an attribute or a dataset; bias
    /projections           order = projection names
    /projections/<name>    source, target, op, delay; weight (dense/conv2d array
                           or an anndata-style csr_matrix group)
    /provenance            nested groups; arrays as datasets, other values JSON

Every group and dataset carries ``encoding-type`` and ``encoding-version``
(after anndata's element spec); readers dispatch on that pair, so files
written by every released version stay readable. Arrays are little-endian
float32/float64 (preserved bit for bit) or int64, gzip-compressed with the
shuffle filter and Fletcher-32 checksums.

Saving is atomic: the file is written beside the target and moved over it
with :func:`os.replace`, so a failure never leaves a half-written model under
the target name and never touches an existing file. Loading treats the file
as hostile: the digest is checked before libhdf5 parses anything, the bytes
checked are the bytes parsed (the file is read once, into memory), every link,
storage layout, filter, member and attribute is checked against the format
before any data is read, and every dataset's shape against the sizes the
model declares. Every failure raises :class:`~evsnn.errors.FormatError`
naming the path inside the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from .._version import __version__
from ..errors import (ConversionError, DependencyError, EvsnnWarning, FormatError, InputError, ModelError,
                      UnsupportedVersionError)
from ..model import INPUT, InputSpec, NeuronSpec, Population, Projection, SpikingModel
from ..ops import OPERATORS, Conv2d, Dense, Sparse
from . import integrity

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION", "IOSpec", "NoDigestWarning",
           "MAX_PROVENANCE_BYTES", "MAX_PROVENANCE_DEPTH", "MAX_NODES", "MAX_COMPRESSION_RATIO"]

FORMAT = "evsnn"
#: Integer version of the whole file layout; a file with a larger one is refused.
FORMAT_VERSION = 2

#: Total bytes of provenance (array data plus JSON text) a file may hold.
MAX_PROVENANCE_BYTES = 16 * 2**20
#: Deepest nesting of provenance mappings.
MAX_PROVENANCE_DEPTH = 16
#: Most groups plus datasets a file may hold.
MAX_NODES = 100_000
#: Largest declared-size / stored-size ratio of a compressed dataset. Deflate cannot expand
#: data more than 1032-fold, so a dataset declaring more is a compression bomb or damaged.
MAX_COMPRESSION_RATIO = 1100

#: HDF5 number types a file may hold, either byte order (evsnn writes little-endian).
_INT_TYPES = tuple(getattr(h5py.h5t, f"STD_{sign}{bits}{order}") for sign in "IU" for bits in (8, 16, 32, 64)
                   for order in ("LE", "BE"))
_FLOAT_TYPES = (h5py.h5t.IEEE_F32LE, h5py.h5t.IEEE_F32BE, h5py.h5t.IEEE_F64LE, h5py.h5t.IEEE_F64BE)
_TYPE_CLASSES = {h5py.h5t.INTEGER: "integer", h5py.h5t.FLOAT: "float", h5py.h5t.TIME: "time",
                 h5py.h5t.STRING: "string", h5py.h5t.BITFIELD: "bitfield", h5py.h5t.OPAQUE: "opaque",
                 h5py.h5t.COMPOUND: "compound", h5py.h5t.REFERENCE: "reference", h5py.h5t.ENUM: "enum",
                 h5py.h5t.VLEN: "variable-length sequence", h5py.h5t.ARRAY: "array"}

_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True, "fletcher32": True}
#: HDF5 filter ids that save writes and load accepts (H5Z_FILTER_DEFLATE, _SHUFFLE, _FLETCHER32).
_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32"}


class NoDigestWarning(EvsnnWarning):
    """A version-1 model file was loaded: it has no digest, so damage cannot be detected."""


# Warnings the child of load(isolate=True) may report, re-issued by name (any other as a UserWarning).
_WARNINGS: dict[str, type[Warning]] = {NoDigestWarning.__name__: NoDigestWarning}


@dataclass(frozen=True)
class IOSpec:
    """The ``(encoding-type, encoding-version)`` pair stamped on every element."""

    encoding_type: str
    encoding_version: str


MODEL = IOSpec("evsnn-model", "1.0.0")
INPUT_SPEC = IOSpec("input", "1.0.0")
ORDERED = IOSpec("ordered-group", "1.0.0")
#: Populations gained SRM's refractory amplitude (seed 003's 2 theta) in 1.2.0.
POPULATION = IOSpec("population", "1.2.0")
#: NIR's neurons (kinds, the ODE form, strict threshold, v_leak, any field per neuron).
POPULATION_1_1 = IOSpec("population", "1.1.0")
#: What evsnn 0.1 and 0.2 read and write; still written for the populations it holds (see _population_spec).
POPULATION_1_0 = IOSpec("population", "1.0.0")
PROJECTION = IOSpec("projection", "1.0.0")
ARRAY = IOSpec("array", "1.0.0")
CSR = IOSpec("csr_matrix", "0.1.0")  # anndata's sparse layout, readable by anndata.io.read_elem
DICT = IOSpec("dict", "1.0.0")

_ENC = ("encoding-type", "encoding-version")
#: Attributes each element may carry (beyond these nothing is allowed; provenance dicts hold any keys).
_ROOT_ATTRS = {*_ENC, "format", "format_version", "evsnn-version", "dt", "readout", "output"}
_INPUT_ATTRS = {*_ENC, "shape", "encoding", "max_rate", "scale"}
_ORDERED_ATTRS = {*_ENC, "order"}
_POPULATION_1_0_ATTRS = {*_ENC, "shape", "neuron", "reset", "v_reset", "beta", "v_init_fraction", "threshold",
                         "tau_syn", "tau_refr"}
_POPULATION_1_1_ATTRS = _POPULATION_1_0_ATTRS | {"tau_mem", "r", "v_leak", "w_in", "strict_threshold"}
#: Attributes of a population, by version; 1.1.0 adds NIR's fields, 1.2.0 the refractory amplitude.
_POPULATION_ATTRS = {POPULATION_1_0: _POPULATION_1_0_ATTRS, POPULATION_1_1: _POPULATION_1_1_ATTRS,
                     POPULATION: _POPULATION_1_1_ATTRS | {"refractory_amplitude"}}
#: Neuron fields that may be a dataset (one value per neuron) instead of an attribute, by version.
_POPULATION_ARRAYS = {POPULATION_1_0: ("threshold",), POPULATION_1_1: NeuronSpec.PER_NEURON,
                      POPULATION: NeuronSpec.PER_NEURON}
#: NeuronSpec fields in the order save writes them: 0.2.0's order first, so that a population 0.2.0 could save is
#: written byte for byte as 0.2.0 wrote it.
_NEURON_FIELDS = ("v_reset", "beta", "v_init_fraction", "tau_syn", "tau_refr", "threshold", "tau_mem", "r", "v_leak",
                  "w_in", "strict_threshold", "refractory_amplitude")
# a NeuronSpec field the file does not hold would be dropped by save without a word
assert {*_NEURON_FIELDS, "kind", "reset"} == {f.name for f in dataclasses.fields(NeuronSpec)}
assert set(_NEURON_FIELDS) <= _POPULATION_ATTRS[POPULATION]
#: Neuron kinds a version-1.0.0 population may hold.
_KINDS_1_0 = ("if", "lif", "srm")
_PROJECTION_ATTRS = {*_ENC, "source", "target", "op", "delay", "input_shape", "stride", "padding"}
_CSR_ATTRS = {*_ENC, "shape"}


# ======================================================================================
# Provenance rules, shared by save and load
# ======================================================================================
def _key_problem(key: object) -> str | None:
    """Why ``key`` cannot be a provenance key in a file, or None."""
    if not isinstance(key, str) or not key:
        return "must be a non-empty string"
    if "/" in key or "\x00" in key:
        return "must not contain '/' or NUL"
    if key.startswith((".", "encoding-")):
        return "must not start with '.' or the reserved prefix 'encoding-'"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (no lone surrogates)"
    return None


def _array_dtype_problem(dtype: np.dtype, shape: tuple[int, ...]) -> str | None:
    """Why an array of ``dtype`` and ``shape`` cannot be a provenance array in a file, or None."""
    ok = dtype.kind in "biu" or (dtype.kind == "f" and dtype.itemsize in (4, 8))
    if not ok:
        return f"arrays must be bool, integer, float32 or float64, got {dtype}"
    if len(shape) == 0:
        return "arrays must have at least one dimension, got a 0-d array (use a number or a 1-element array)"
    return None


class _Budget:
    """Bytes of provenance still allowed (:data:`MAX_PROVENANCE_BYTES`)."""

    def __init__(self) -> None:
        self.left = MAX_PROVENANCE_BYTES

    def spend(self, nbytes: int) -> bool:
        self.left -= nbytes
        return self.left >= 0


def _json_text(value: Any) -> str:
    return json.dumps(value, allow_nan=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, np.ndarray):
        raise TypeError("a list holding an array (store each array under its own key)")
    raise TypeError(f"a {type(value).__name__}")


# ======================================================================================
# Writing
# ======================================================================================
def save(model: SpikingModel, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` atomically (a temporary file, then :func:`os.replace`).

    Parameters
    ----------
    model : SpikingModel
    path : str or path-like
        Target file; an existing file is replaced only once the new one is
        complete, and left untouched if writing fails. A symbolic link is
        followed: the file it points to is replaced.

    Raises
    ------
    ModelError
        ``model`` is not a :class:`~evsnn.SpikingModel`.
    FormatError
        The model holds provenance that :func:`load` would refuse (the message
        names the path inside the file), or the file cannot be written.
    FileNotFoundError
        The target's directory does not exist.

    Examples
    --------
    >>> import numpy as np, evsnn, tempfile, os
    >>> m = evsnn.SpikingModel(evsnn.InputSpec((2,)), [evsnn.Population("out", (3,))],
    ...     [evsnn.Projection("w", "input", "out", evsnn.Dense(np.ones((3, 2), np.float32)))])
    >>> path = os.path.join(tempfile.mkdtemp(), "m.h5")
    >>> evsnn.save(m, path)
    >>> evsnn.load(path) == m
    True
    """
    if not isinstance(model, SpikingModel):
        raise ModelError(f"save: model must be a SpikingModel, got {type(model).__name__}.")
    shown = os.fspath(path)
    _check_provenance(shown, model.provenance, "/provenance", _Budget())
    target = os.path.realpath(shown)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{shown}: cannot save, directory {directory} does not exist.")
    if os.path.isdir(target):
        raise FormatError(f"{shown}: cannot save, it is a directory.")
    # the temporary name stays well under NAME_MAX (255 bytes) whatever the target's length
    prefix = "." + os.path.basename(target).encode("utf-8", "surrogateescape")[:64].decode("utf-8", "ignore") + "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    except OSError as err:
        raise FormatError(f"{shown}: cannot save: {err.strerror or err} (directory {directory}).") from err
    os.close(fd)
    try:
        with h5py.File(tmp, "w", track_order=True, userblock_size=integrity.USERBLOCK_SIZE) as f:
            _write_model(f, model)
        integrity.stamp(tmp)
        os.chmod(tmp, _file_mode(target))
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, FormatError):
            detail = str(err).replace(tmp, shown)
            raise FormatError(f"{shown}: cannot save: {detail}") from err
        raise


def _check_provenance(path: str, d: Mapping[str, Any], where: str, budget: _Budget, depth: int = 1) -> None:
    """Refuse provenance that the file cannot hold or :func:`load` would refuse, naming its path."""
    if depth > MAX_PROVENANCE_DEPTH:
        raise FormatError(f"{path}:{where}: provenance nests deeper than {MAX_PROVENANCE_DEPTH} mappings "
                          "(MAX_PROVENANCE_DEPTH).")
    for key, value in d.items():
        problem = _key_problem(key)
        if problem:
            raise FormatError(f"{path}:{where}: provenance key {key!r} {problem}.")
        at = f"{where}/{key}"
        if isinstance(value, Mapping):
            _check_provenance(path, value, at, budget, depth + 1)
            continue
        if isinstance(value, np.ndarray):
            problem = _array_dtype_problem(value.dtype, value.shape)
            nbytes = value.nbytes
        else:
            try:
                nbytes, problem = len(_json_text(value)), None
            except (TypeError, ValueError) as err:
                nbytes, problem = 0, f"value must be JSON-encodable, got {err}"
        if problem:
            raise FormatError(f"{path}:{at}: {problem}.")
        if not budget.spend(nbytes):
            raise FormatError(f"{path}:{at}: provenance exceeds {MAX_PROVENANCE_BYTES} bytes "
                              "(MAX_PROVENANCE_BYTES); keep large arrays in a separate file.")


def _file_mode(path: str) -> int:
    """Keep an existing file's permissions; new files get the usual umask-based mode."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _text(node: h5py.HLObject, name: str, value: str | list[str]) -> None:
    """Write a string (or a 1-D array of strings) as a *fixed-length* UTF-8 attribute.

    Fixed-length strings live inside the attribute itself; variable-length ones
    live in HDF5's global heap, whose parser crashes libhdf5 on crafted files
    (docs/hdf5-format.md, "Why strings are fixed-length").
    """
    encoded = [v.encode("utf-8") for v in value] if isinstance(value, list) else value.encode("utf-8")
    longest = max((len(v) for v in encoded), default=1) if isinstance(encoded, list) else len(encoded)
    node.attrs.create(name, np.array(encoded, dtype=f"S{max(longest, 1)}"),
                      dtype=h5py.string_dtype("utf-8", max(longest, 1)))


def _stamp(node: h5py.HLObject, spec: IOSpec) -> None:
    _text(node, "encoding-type", spec.encoding_type)
    _text(node, "encoding-version", spec.encoding_version)


def _write_array(group: h5py.Group, name: str, arr: np.ndarray) -> None:
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    filters = _COMPRESSION if arr.ndim and arr.size else {}
    ds = group.create_dataset(name, data=arr, **filters)
    _stamp(ds, ARRAY)


def _ints(values: tuple[int, ...]) -> np.ndarray:
    return np.asarray(values, dtype="<i8")


def _write_model(f: h5py.File, m: SpikingModel) -> None:
    _text(f, "format", FORMAT)
    f.attrs["format_version"] = np.int64(FORMAT_VERSION)
    _stamp(f, MODEL)
    _text(f, "evsnn-version", __version__)
    f.attrs["dt"] = np.float64(m.dt)
    _text(f, "readout", m.readout)
    _text(f, "output", m.output)

    g = f.create_group("input")
    _stamp(g, INPUT_SPEC)
    g.attrs["shape"] = _ints(m.input.shape)
    _text(g, "encoding", m.input.encoding)
    g.attrs["max_rate"] = np.float64(m.input.max_rate)
    g.attrs["scale"] = np.float64(m.input.scale)

    pops = f.create_group("populations")
    _stamp(pops, ORDERED)
    _text(pops, "order", [p.name for p in m.populations])
    for p in m.populations:
        _write_population(pops.create_group(p.name), p)

    projs = f.create_group("projections")
    _stamp(projs, ORDERED)
    _text(projs, "order", [pr.name for pr in m.projections])
    for pr in m.projections:
        _write_projection(projs.create_group(pr.name), pr)

    _write_dict(f.create_group("provenance", track_order=True), m.provenance)


def _population_spec(n: NeuronSpec) -> IOSpec:
    """The lowest population version that holds ``n``: 1.0.0 (which evsnn 0.1 and 0.2 read) unless ``n`` uses a
    field that 1.1.0 added (1.2.0: a refractory amplitude other than 1), so that files stay readable by the
    oldest release that can hold them."""
    if n.refractory_amplitude != 1.0:
        return POPULATION
    old = (n.kind in _KINDS_1_0 and not n.ode and not n.strict_threshold and set(n.arrays()) <= {"threshold"}
           and n.v_leak == 0 and n.w_in == 1)
    return POPULATION_1_0 if old else POPULATION_1_1


def _write_population(g: h5py.Group, p: Population) -> None:
    n = p.neuron
    spec = _population_spec(n)
    _stamp(g, spec)
    g.attrs["shape"] = _ints(p.shape)
    _text(g, "neuron", n.kind)
    _text(g, "reset", n.reset)
    for name in _NEURON_FIELDS:  # a number is an attribute, one value per neuron a dataset, a flag 0 or 1
        value = getattr(n, name)
        if value is None or name not in _POPULATION_ATTRS[spec]:
            continue
        if isinstance(value, np.ndarray):
            _write_array(g, name, value)
        elif isinstance(value, bool):
            g.attrs[name] = np.int64(value)
        else:
            g.attrs[name] = np.float64(value)
    if p.bias is not None:
        _write_array(g, "bias", p.bias)


def _write_projection(g: h5py.Group, pr: Projection) -> None:
    _stamp(g, PROJECTION)
    _text(g, "source", pr.source)
    _text(g, "target", pr.target)
    _text(g, "op", pr.op.kind)
    g.attrs["delay"] = np.int64(pr.delay)
    op = pr.op
    if isinstance(op, Sparse):
        w = g.create_group("weight")
        _stamp(w, CSR)
        w.attrs["shape"] = _ints(op.shape)
        _write_array(w, "data", op.data)
        _write_array(w, "indices", op.indices)
        _write_array(w, "indptr", op.indptr)
        return
    _write_array(g, "weight", op.weight)
    if isinstance(op, Conv2d):
        g.attrs["input_shape"] = _ints(op.input_shape)
        g.attrs["stride"] = _ints(op.stride)
        g.attrs["padding"] = _ints(op.padding)


def _write_dict(g: h5py.Group, d: Mapping[str, Any]) -> None:
    _stamp(g, DICT)
    for key, value in d.items():
        if isinstance(value, Mapping):
            _write_dict(g.create_group(key, track_order=True), value)
        elif isinstance(value, np.ndarray):
            _write_array(g, key, value)
        else:
            _text(g, key, _json_text(value))


# ======================================================================================
# Reading
# ======================================================================================
def load(path: str | os.PathLike, *, isolate: bool = False, timeout: float = 60.0) -> SpikingModel:
    """Read a model written by :func:`save` (or by any tool following ``docs/hdf5-format.md``).

    With ``isolate=True`` the file is parsed only in a child process, which
    saves the model it loaded into a private temporary directory; this
    process then loads that fresh file. A crafted file that crashes or hangs
    libhdf5 (no in-process check can stop a loop in C) then costs a
    ``FormatError`` instead of the caller's process. ``timeout`` (seconds,
    the child's start-up included) applies only with ``isolate=True``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    FormatError
        The path is not a regular file; the file is damaged (``checksum
        mismatch``), not HDF5, or not a valid evsnn model; or it reaches
        outside itself (links, external storage, virtual datasets) or declares
        more data than it holds. The message names the path inside the file.
        With ``isolate=True`` also: the child reader crashed, failed, or did
        not finish within ``timeout``.
    InputError
        ``timeout`` is not a positive number of seconds.
    UnsupportedVersionError
        The file (or one element of it) was written by a newer evsnn.

    Warns
    -----
    NoDigestWarning
        The file is in format version 1, which has no digest.
    """
    path = os.fspath(path)
    if isolate:
        return _load_isolated(path, timeout)
    data, layout = integrity.read_verified(path)
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except Exception as err:  # noqa: BLE001 - whatever libhdf5 says about a non-HDF5 file
        raise FormatError(
            f"{path}: file must be an HDF5 file written by evsnn.save(), got an unreadable or "
            f"truncated file ({_one_line(err)})."
        ) from err
    r = _Reader(path, layout)
    with f:
        try:
            _check_structure(r, f)
            model = _read_model(r, f, layout)
        except FormatError:
            raise
        except Exception as err:  # h5py/numpy surprises in a hostile file: never a raw KeyError
            raise FormatError(f"{path}: could not be read as an evsnn model: {type(err).__name__}: "
                              f"{_one_line(err)}") from err
    if layout == 1:
        warnings.warn(f"{path}: format version 1 has no digest, so damage to the file cannot be detected; "
                      "save it again to upgrade it to version 2.", NoDigestWarning, stacklevel=2)
    return model


# Errors the child may report that are re-raised as themselves; anything else is a reader failure.
_PASSED_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls for cls in (FormatError, UnsupportedVersionError, FileNotFoundError, PermissionError,
                                  ConversionError, DependencyError)}
_CHILD_CODE = "import sys; sys.path.insert(0, sys.argv[1]); from evsnn.io.hdf5 import _isolated_child; " \
              "_isolated_child(*sys.argv[2:])"


def _load_isolated(path: str, timeout: float, nir_dt: float | None = None) -> SpikingModel:
    """``load(path)`` run in a child process (see :func:`load`); the child's result arrives as an evsnn file.

    With ``nir_dt`` the child reads a NIR file instead (``evsnn.io.nir.from_nir(path, dt=nir_dt)``).
    """
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise InputError(f"load: timeout must be a positive number of seconds, got {timeout!r}.")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with tempfile.TemporaryDirectory(prefix="evsnn-load-") as tmp:
        copy, result = os.path.join(tmp, "model.h5"), os.path.join(tmp, "result.json")
        proc = subprocess.Popen([sys.executable, "-c", _CHILD_CODE, root, path, copy, result,
                                 "" if nir_dt is None else repr(float(nir_dt))],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)  # its own process group, killed whole on timeout
        stderr = None
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.returncode is None:  # timed out, or interrupted (Ctrl-C does not reach its process group)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        if stderr is None:
            raise FormatError(f"{path}: the reader did not finish within {timeout:g} s (it was run in an "
                              "isolated process and killed).")
        if proc.returncode < 0:
            raise FormatError(f"{path}: the reader crashed (signal {-proc.returncode}, "
                              f"{_signal_name(-proc.returncode)}); it was run in an isolated process.")
        try:
            with open(result, encoding="utf-8") as fh:
                outcome = json.load(fh)
        except (OSError, ValueError):
            last = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            raise FormatError(f"{path}: the reader failed (exit status {proc.returncode}: {last[0]}); it was "
                              "run in an isolated process.") from None
        for category, message in outcome["warnings"]:
            warnings.warn(message, _WARNINGS.get(category, UserWarning), stacklevel=3)
        if outcome["error"] is not None:
            name, message = outcome["error"]
            if name in _PASSED_ERRORS:
                raise _PASSED_ERRORS[name](message)
            raise FormatError(f"{path}: the reader failed ({name}: {_one_line(message)}).")
        return load(copy)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def _isolated_child(path: str, copy: str, result: str, nir_dt: str = "") -> None:
    """The child of ``load(isolate=True)``: load ``path`` (a NIR file when ``nir_dt`` is given), save the model to
    ``copy``, report to ``result`` (JSON)."""
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if nir_dt:
                from .nir import from_nir

                model = from_nir(path, dt=float(nir_dt))
            else:
                model = load(path)
            save(model, copy)
        except Exception as err:  # noqa: BLE001 - reported to the parent, which decides what it means
            error = [type(err).__name__, str(err)]
    with open(result, "w", encoding="utf-8") as fh:
        json.dump({"error": error, "warnings": [[w.category.__name__, str(w.message)] for w in caught]}, fh)


def _type_problem(tid: h5py.h5t.TypeID, *, dataset: bool, vlen_ok: bool) -> str | None:
    """Why a stored datatype is refused, or None; looks at the type only, never at a value.

    Attributes may be integers, IEEE floats and fixed-length strings; datasets
    integers, IEEE floats and h5py's bool (an int8 enum FALSE=0/TRUE=1).
    Variable-length strings (``vlen_ok``, format version 1 only) keep their
    values in HDF5's global heap, where crafted files crash libhdf5.
    """
    cls = tid.get_class()
    if cls == h5py.h5t.INTEGER and any(tid.equal(t) for t in _INT_TYPES):
        return None
    if cls == h5py.h5t.FLOAT and any(tid.equal(t) for t in _FLOAT_TYPES):
        return None
    if dataset and cls == h5py.h5t.ENUM and tid.get_size() == 1 and tid.dtype == np.dtype(bool):
        return None
    if not dataset and cls == h5py.h5t.STRING:
        if tid.get_cset() not in (h5py.h5t.CSET_ASCII, h5py.h5t.CSET_UTF8):
            return f"string type of unknown character set {tid.get_cset()} refused"
        if not tid.is_variable_str() or vlen_ok:
            return None
        return ("variable-length string refused: format version 2 stores strings as fixed-length "
                "UTF-8 (variable-length values live in HDF5's global heap, whose parser crafted files crash)")
    if cls == h5py.h5t.STRING and tid.is_variable_str():
        what = "variable-length string"
    else:
        what = f"{_TYPE_CLASSES.get(cls, f'class {cls}')} ({tid.get_size()} bytes)"
    allowed = "standard integers, IEEE float32/float64 or bool" if dataset else \
        "standard integers, IEEE floats or fixed-length strings"
    return f"datatype {what} refused: the format stores only {allowed}"


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


# --------------------------------------------------------------------------------------
# Structure: links, storage and filters of every node, before any data is read
# --------------------------------------------------------------------------------------
def _check_structure(r: _Reader, root: h5py.Group, *, strings: bool = False) -> None:
    """Refuse anything that reaches outside the file or that the format does not use.

    ``strings``: allow variable-length string datasets (NIR's files store node
    types and edges that way; evsnn's own format does not).
    """
    count = 0
    stack: list[tuple[h5py.Group, int]] = [(root, 0)]
    while stack:
        group, depth = stack.pop()
        if depth > MAX_PROVENANCE_DEPTH + 3:
            raise r.error(group, f"groups nest deeper than the format allows ({MAX_PROVENANCE_DEPTH + 3}).")
        r.check_attr_names(group)
        r.check_attr_types(group)
        for name in group:
            count += 1
            if count > MAX_NODES:
                raise r.error(root, f"file holds more than {MAX_NODES} groups and datasets (MAX_NODES).")
            where = _join(group, name)
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise r.error(where, f"external link to {link.filename!r}:{link.path!r} refused: a model file "
                                     "must not reach into other files.")
            if isinstance(link, h5py.SoftLink):
                raise r.error(where, f"soft link to {link.path!r} refused: the format uses no links.")
            if not isinstance(link, h5py.HardLink):
                raise r.error(where, f"link of type {type(link).__name__} refused: the format uses no links.")
            node = group[name]
            if isinstance(node, h5py.Group):
                stack.append((node, depth + 1))
            elif isinstance(node, h5py.Dataset):
                r.check_attr_names(node)
                r.check_attr_types(node)
                _check_storage(r, node, strings=strings)
            else:
                raise r.error(where, f"object of type {type(node).__name__} refused: the format holds only "
                                     "groups and datasets.")


def _check_storage(r: _Reader, ds: h5py.Dataset, *, strings: bool = False) -> None:
    """Contiguous, compact or chunked storage inside this file, filters that save uses, all data present."""
    dcpl = ds.id.get_create_plist()
    layout = dcpl.get_layout()
    if layout == h5py.h5d.VIRTUAL or ds.is_virtual:
        raise r.error(ds, "virtual dataset refused: its data would be read from other files.")
    if dcpl.get_external_count():
        names = [dcpl.get_external(i)[0] for i in range(dcpl.get_external_count())]
        raise r.error(ds, f"external raw storage in {names!r} refused: a model file must not read other files.")
    filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
    unknown = [f for f in filters if f not in _FILTERS]
    if unknown:
        raise r.error(ds, f"HDF5 filter(s) {unknown} refused: only {sorted(_FILTERS.values())} are allowed.")
    if len(set(filters)) != len(filters):
        raise r.error(ds, f"filter list {filters} repeats a filter.")
    if ds.shape is None:
        raise r.error(ds, "dataset with a null dataspace refused.")
    tid = ds.id.get_type()
    text = strings and tid.get_class() == h5py.h5t.STRING and math.prod(ds.shape) <= MAX_NODES
    problem = _type_problem(tid, dataset=not text, vlen_ok=text)
    if problem:
        raise r.error(ds, f"{problem}.")
    if text:  # a variable-length string stores pointers into the heap, not its declared bytes
        return
    declared = math.prod(ds.shape) * ds.dtype.itemsize
    stored = ds.id.get_storage_size()
    if layout == h5py.h5d.CHUNKED:
        chunks = dcpl.get_chunk()
        expected = math.prod(-(-n // c) for n, c in zip(ds.shape, chunks))
        if ds.id.get_num_chunks() != expected:
            raise r.error(ds, f"declares shape {ds.shape} but stores {ds.id.get_num_chunks()} of its {expected} "
                              "chunks: data missing (truncated or crafted file).")
        if declared > MAX_COMPRESSION_RATIO * stored + 2**16:
            raise r.error(ds, f"declares {declared} bytes in {stored} stored bytes, more than gzip can expand "
                              "(compression bomb or damaged file).")
    elif layout == h5py.h5d.CONTIGUOUS:
        if declared and stored != declared:
            raise r.error(ds, f"declares {declared} bytes but stores {stored}: data missing (truncated or "
                              "crafted file).")
        if filters:
            raise r.error(ds, "filters on a contiguous dataset refused.")
    elif layout != h5py.h5d.COMPACT:
        raise r.error(ds, f"storage layout {layout} refused.")


# --------------------------------------------------------------------------------------
# Typed access
# --------------------------------------------------------------------------------------
class _Reader:
    """Typed access to a file's nodes; every failure names the file and the node path."""

    def __init__(self, path: str, layout: int):
        self.path = path
        #: version-1 files were written with variable-length strings; version-2 files have none
        self.vlen_ok = layout == 1

    def error(self, node: h5py.HLObject | str, message: str, cls: type = FormatError) -> FormatError:
        where = node if isinstance(node, str) else node.name
        return cls(f"{self.path}:{where}: {_one_line(message)}")

    @contextlib.contextmanager
    def building(self, node: h5py.HLObject) -> Iterator[None]:
        """Turn IR validation errors into FormatErrors at ``node``."""
        try:
            yield
        except ModelError as err:
            raise self.error(node, str(err)) from err

    # -- nodes ------------------------------------------------------------------------
    def check_attr_names(self, node: h5py.HLObject, allowed: set[str] | None = None) -> None:
        """Attribute names: each once; only ``allowed`` ones when given."""
        names = list(node.attrs)
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise self.error(node, f"attribute(s) {dup} appear more than once.")
        if allowed is not None:
            extra = sorted(set(names) - allowed)
            if extra:
                raise self.error(node, f"unknown attribute(s) {extra}: the format does not define them.")

    def check_attr_types(self, node: h5py.HLObject) -> None:
        """Every attribute's stored type is one the format uses (:func:`_type_problem`), before any value is read."""
        for name in node.attrs:
            problem = _type_problem(node.attrs.get_id(name).get_type(), dataset=False, vlen_ok=self.vlen_ok)
            if problem:
                raise self.error(node, f"attribute {name!r}: {problem}.")

    def members(self, group: h5py.Group, allowed: Mapping[str, type]) -> None:
        """The group holds only ``allowed`` members, each of its kind (Group or Dataset)."""
        for name in group:
            kind = allowed.get(name)
            if kind is None:
                raise self.error(_join(group, name), "unknown member: the format does not define it.")
            if not isinstance(group[name], kind):
                raise self.error(_join(group, name), f"must be a {kind.__name__}.")

    def group(self, parent: h5py.Group, name: str) -> h5py.Group:
        node = parent.get(name)
        if not isinstance(node, h5py.Group):
            what = "is missing" if node is None else f"is a {type(node).__name__}"
            raise self.error(_join(parent, name), f"group must exist, but it {what}.")
        return node

    def check_spec(self, node: h5py.HLObject, *known: IOSpec) -> IOSpec:
        """The node's ``(encoding-type, encoding-version)``, which must be one of ``known`` (all of one type)."""
        etype = self.attr(node, "encoding-type", str)
        version = self.attr(node, "encoding-version", str)
        if etype != known[0].encoding_type:
            raise self.error(node, f"encoding-type must be {known[0].encoding_type!r}, got {etype!r}.")
        for spec in known:
            if version == spec.encoding_version:
                return spec
        raise self.error(
            node,
            f"encoding-version {version!r} of {etype!r} is not supported (this evsnn reads "
            f"{', '.join(repr(spec.encoding_version) for spec in known)}). Upgrade evsnn.",
            UnsupportedVersionError,
        )

    def dataset(self, parent: h5py.Group, name: str) -> h5py.Dataset:
        node = parent.get(name)
        if not isinstance(node, h5py.Dataset):
            what = "is missing" if node is None else f"is a {type(node).__name__}"
            raise self.error(_join(parent, name), f"dataset must exist, but it {what}.")
        self.check_spec(node, ARRAY)
        self.check_attr_names(node, set(_ENC))
        return node

    def array(self, parent: h5py.Group, name: str, *, kind: str, shape: tuple[int, ...] | None = None,
              ndim: int | None = None) -> np.ndarray:
        """A dataset as a native-endian array of ``kind`` ``"float"`` (float32/64), ``"int"`` or ``"numeric"``.

        ``shape`` (or at least ``ndim``) is checked before any data is read.
        """
        node = self.dataset(parent, name)
        self.check_dtype(node, kind)
        if shape is not None and node.shape != tuple(shape):
            raise self.error(node, f"must have shape {tuple(shape)} (declared by the model), got {node.shape}.")
        if ndim is not None and node.ndim != ndim:
            raise self.error(node, f"must have {ndim} dimension(s), got shape {node.shape}.")
        return self.read(node)

    def check_dtype(self, node: h5py.Dataset, kind: str) -> None:
        dt = node.dtype
        float_ok = dt.kind == "f" and dt.itemsize in (4, 8)
        ok = {"float": float_ok, "int": dt.kind in "iu", "numeric": float_ok or dt.kind in "biu"}[kind]
        if not ok:
            need = {"float": "float32 or float64", "int": "an integer type", "numeric": "numeric"}[kind]
            raise self.error(node, f"dtype must be {need}, got {dt}.")

    def read(self, node: h5py.Dataset) -> np.ndarray:
        try:
            data = node[()]
        except OSError as err:
            raise self.error(node, f"data is corrupt (checksum mismatch or truncated file): {err}") from err
        data = np.asarray(data)
        return data.astype(data.dtype.newbyteorder("="), copy=False)

    def attr(self, node: h5py.HLObject, name: str, kind: type | str) -> Any:
        """An attribute checked to be ``str``, ``int``, ``float``, ``"shape"`` (int tuple) or ``"json"``."""
        if name not in node.attrs:
            raise self.error(node, f"attribute {name!r} is missing.")
        aid = node.attrs.get_id(name)
        dims = aid.shape
        if kind == "shape":
            small = dims is not None and len(dims) == 1 and dims[0] <= 8
        else:
            small = dims is not None and len(dims) == 0
        if not small or aid.dtype.itemsize > (MAX_PROVENANCE_BYTES if kind == "json" else 2**20):
            need = "a 1-D integer array of at most 8 values" if kind == "shape" else "a scalar"
            raise self.error(node, f"attribute {name!r} must be {need}, got dataspace {dims} of {aid.dtype}.")
        try:
            value = node.attrs[name]
        except (OSError, TypeError, ValueError) as err:
            raise self.error(node, f"attribute {name!r} cannot be read: {err}") from err
        if isinstance(value, (bytes, np.bytes_)):
            value = self.decode(node, name, value)
        bad = False
        if kind is str or kind == "json":
            bad = not isinstance(value, str)
        elif kind is int:
            bad = isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
            value = None if bad else int(value)
        elif kind is float:
            bad = isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating))
            value = None if bad else float(value)
        elif kind == "shape":
            arr = np.asarray(value)
            bad = arr.ndim != 1 or arr.dtype.kind not in "iu"
            value = None if bad else tuple(int(v) for v in arr)
        if bad:
            need = {str: "a string", int: "an integer", float: "a number", "shape": "a 1-D integer array",
                    "json": "a JSON string"}[kind]
            shown = node.attrs[name]
            shown = shown.tolist() if isinstance(shown, (np.ndarray, np.generic)) else shown
            raise self.error(node, f"attribute {name!r} must be {need}, got {shown!r}.")
        if kind == "json":
            try:
                return json.loads(value)
            except (ValueError, RecursionError) as err:
                raise self.error(node, f"attribute {name!r} must be JSON text, got {value[:80]!r}.") from err
        return value

    def decode(self, node: h5py.HLObject, name: str, raw: bytes) -> str:
        """A fixed-length string attribute's bytes as text; invalid UTF-8 is refused."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.error(node, f"attribute {name!r} is not valid UTF-8: {err}.") from err

    def order(self, group: h5py.Group) -> list[str]:
        """The ``order`` attribute, checked against the group's members."""
        self.check_spec(group, ORDERED)
        self.check_attr_names(group, _ORDERED_ATTRS)
        if "order" not in group.attrs:
            raise self.error(group, "attribute 'order' is missing.")
        aid = group.attrs.get_id("order")
        dims = aid.shape
        if dims is None or len(dims) != 1 or dims[0] > MAX_NODES or aid.dtype.itemsize > 2**20:
            raise self.error(group, f"attribute 'order' must be a 1-D array of names, got dataspace {dims}.")
        raw = np.asarray(group.attrs["order"])
        if raw.ndim != 1 or raw.dtype.kind not in "OSU":
            raise self.error(group, f"attribute 'order' must be a 1-D array of names, got {raw!r}.")
        names = [self.decode(group, "order", v) if isinstance(v, bytes) else str(v) for v in raw]
        members = set(group.keys())
        if len(set(names)) != len(names) or set(names) != members:
            raise self.error(
                group,
                f"attribute 'order' must list each member once, got order {names[:20]} for members "
                f"{sorted(members)[:20]}.",
            )
        return names


def _join(parent: h5py.Group, name: str) -> str:
    return f"{parent.name.rstrip('/')}/{name}"


def _read_model(r: _Reader, f: h5py.File, layout: int) -> SpikingModel:
    if "format" not in f.attrs:
        raise r.error(f, "attribute 'format' is missing: this HDF5 file is not an evsnn model.")
    fmt = r.attr(f, "format", str)
    if fmt != FORMAT:
        raise r.error(f, f"attribute 'format' must be {FORMAT!r}, got {fmt!r}: not an evsnn model.")
    version = r.attr(f, "format_version", int)
    if version > FORMAT_VERSION or version < 1:
        raise r.error(
            f,
            f"format_version {version} is not supported (this evsnn {__version__} reads 1 to "
            f"{FORMAT_VERSION}). Upgrade evsnn to read files written by newer versions.",
            UnsupportedVersionError,
        )
    if version != layout:
        raise r.error(f, f"format_version {version} disagrees with the file's "
                         f"{'digest header' if layout == 2 else 'missing digest header'}: version-2 files carry "
                         "a digest, version-1 files none. The file was altered after it was saved.")
    r.check_spec(f, MODEL)
    r.check_attr_names(f, _ROOT_ATTRS)
    r.members(f, {"input": h5py.Group, "populations": h5py.Group, "projections": h5py.Group,
                  "provenance": h5py.Group})

    g = r.group(f, "input")
    r.check_spec(g, INPUT_SPEC)
    r.check_attr_names(g, _INPUT_ATTRS)
    r.members(g, {})
    with r.building(g):
        inp = InputSpec(
            shape=r.attr(g, "shape", "shape"),
            encoding=r.attr(g, "encoding", str),
            max_rate=r.attr(g, "max_rate", float),
            scale=r.attr(g, "scale", float),
        )

    pops_g = r.group(f, "populations")
    populations = [_read_population(r, r.group(pops_g, name)) for name in r.order(pops_g)]
    shapes = {INPUT: inp.shape, **{p.name: p.shape for p in populations}}
    projs_g = r.group(f, "projections")
    projections = [_read_projection(r, r.group(projs_g, name), shapes) for name in r.order(projs_g)]
    provenance = _read_dict(r, r.group(f, "provenance"), _Budget(), 1)

    with r.building(f):
        return SpikingModel(
            input=inp,
            populations=populations,
            projections=projections,
            output=r.attr(f, "output", str),
            readout=r.attr(f, "readout", str),
            dt=r.attr(f, "dt", float),
            provenance=provenance,
        )


def _read_population(r: _Reader, g: h5py.Group) -> Population:
    spec = r.check_spec(g, POPULATION, POPULATION_1_1, POPULATION_1_0)
    r.check_attr_names(g, _POPULATION_ATTRS[spec])
    r.members(g, {**{field: h5py.Dataset for field in _POPULATION_ARRAYS[spec]}, "bias": h5py.Dataset})
    name = g.name.rsplit("/", 1)[-1]
    with r.building(g):  # name and declared shape (and its size bound) first, before any array is read
        shape = Population(name=name, shape=r.attr(g, "shape", "shape")).shape
    kind = r.attr(g, "neuron", str)
    required = {"threshold", "v_reset", "beta", "v_leak", "w_in"} & _POPULATION_ATTRS[spec]
    fields: dict[str, Any] = {}
    for field in NeuronSpec.PER_NEURON:
        if field in g.attrs and field in g:
            raise r.error(g, f"{field} is both an attribute and a dataset; it must be one of them.")
        if field in g:
            fields[field] = r.array(g, field, kind="float", shape=shape)
        elif field in g.attrs or field in required:
            fields[field] = r.attr(g, field, float)
    if spec != POPULATION_1_0:
        strict = r.attr(g, "strict_threshold", int)
        if strict not in (0, 1):
            raise r.error(g, f"attribute 'strict_threshold' must be 0 or 1, got {strict}.")
        fields["strict_threshold"] = bool(strict)
    if "tau_refr" in g.attrs:
        fields["tau_refr"] = r.attr(g, "tau_refr", float)
    if "refractory_amplitude" in g.attrs:
        fields["refractory_amplitude"] = r.attr(g, "refractory_amplitude", float)
    with r.building(g):  # NeuronSpec checks which fields each kind needs, and their values
        neuron = NeuronSpec(kind=kind, reset=r.attr(g, "reset", str),
                            v_init_fraction=r.attr(g, "v_init_fraction", float), **fields)
    if spec == POPULATION_1_0 and kind not in _KINDS_1_0:
        raise r.error(g, f"neuron {kind!r} needs population encoding-version {POPULATION_1_1.encoding_version!r}; "
                         f"version {spec.encoding_version!r} holds only {', '.join(map(repr, _KINDS_1_0))}.")
    with r.building(g):
        bias = r.array(g, "bias", kind="float", shape=shape) if "bias" in g else None
        return Population(name=name, shape=shape, neuron=neuron, bias=bias)


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _read_dense(r: _Reader, g: h5py.Group, src: tuple[int, ...], dst: tuple[int, ...]) -> Dense:
    r.check_attr_names(g, _PROJECTION_ATTRS - {"input_shape", "stride", "padding"})
    return Dense(r.array(g, "weight", kind="float", shape=(_size(dst), _size(src))))


def _read_conv2d(r: _Reader, g: h5py.Group, src: tuple[int, ...], dst: tuple[int, ...]) -> Conv2d:
    input_shape = r.attr(g, "input_shape", "shape")
    stride = r.attr(g, "stride", "shape")
    padding = r.attr(g, "padding", "shape")
    if input_shape != src or len(dst) != 3 or len(stride) != 2 or len(padding) != 2:
        raise r.error(g, f"conv2d needs input_shape equal to the source's shape {src}, a (C, H, W) target "
                         f"(got {dst}), and 2 strides and paddings (got {stride}, {padding}).")
    node = r.dataset(g, "weight")
    r.check_dtype(node, "float")
    if node.ndim != 4:
        raise r.error(node, f"must have 4 dimension(s), got shape {node.shape}.")
    c_out, c_in, kh, kw = node.shape
    reach = (src[1] + 2 * padding[0], src[2] + 2 * padding[1])
    if c_out != dst[0] or c_in != src[0] or not (1 <= kh <= reach[0] and 1 <= kw <= reach[1]):
        raise r.error(node, f"must have shape ({dst[0]}, {src[0]}, kh, kw) with kh <= {reach[0]} and "
                            f"kw <= {reach[1]} (declared by the model), got {node.shape}.")
    return Conv2d(weight=r.read(node), input_shape=input_shape, stride=stride, padding=padding)


def _read_sparse(r: _Reader, g: h5py.Group, src: tuple[int, ...], dst: tuple[int, ...]) -> Sparse:
    r.check_attr_names(g, _PROJECTION_ATTRS - {"input_shape", "stride", "padding"})
    w = r.group(g, "weight")
    r.check_spec(w, CSR)
    r.check_attr_names(w, _CSR_ATTRS)
    r.members(w, {"data": h5py.Dataset, "indices": h5py.Dataset, "indptr": h5py.Dataset})
    shape = r.attr(w, "shape", "shape")
    n_out, n_in = _size(dst), _size(src)
    if shape != (n_out, n_in):
        raise r.error(w, f"attribute 'shape' must be {(n_out, n_in)} (target and source sizes), got {shape}.")
    nnz = r.dataset(w, "data").shape
    if len(nnz) != 1 or nnz[0] > n_out * n_in:
        raise r.error(_join(w, "data"), f"must be 1-D with at most {n_out * n_in} entries, got shape {nnz}.")
    with r.building(w):
        return Sparse(
            data=r.array(w, "data", kind="float", shape=nnz),
            indices=r.array(w, "indices", kind="int", shape=nnz),
            indptr=r.array(w, "indptr", kind="int", shape=(n_out + 1,)),
            shape=shape,
        )


_OP_READERS: dict[str, Callable[..., Any]] = {
    "dense": _read_dense,
    "conv2d": _read_conv2d,
    "sparse": _read_sparse,
}
assert _OP_READERS.keys() == OPERATORS.keys()


def _read_projection(r: _Reader, g: h5py.Group, shapes: Mapping[str, tuple[int, ...]]) -> Projection:
    r.check_spec(g, PROJECTION)
    r.check_attr_names(g, _PROJECTION_ATTRS)
    ends = {end: r.attr(g, end, str) for end in ("source", "target")}
    for end, name in ends.items():
        if name not in shapes or (end == "target" and name == INPUT):
            raise r.error(g, f"attribute {end!r} must name a population in /populations, got {name!r}.")
    op_kind = r.attr(g, "op", str)
    if op_kind not in _OP_READERS:
        raise r.error(g, f"attribute 'op' must be one of {sorted(_OP_READERS)}, got {op_kind!r}.")
    weight_kind = h5py.Group if op_kind == "sparse" else h5py.Dataset
    r.members(g, {"weight": weight_kind})
    with r.building(g):
        delay = r.attr(g, "delay", int)
        name = g.name.rsplit("/", 1)[-1]
        Projection(name=name, op=Dense(np.zeros((1, 1))), delay=delay, **ends)  # name and delay bounds first
        op = _OP_READERS[op_kind](r, g, shapes[ends["source"]], shapes[ends["target"]])
        return Projection(name=name, op=op, delay=delay, **ends)


def _read_dict(r: _Reader, g: h5py.Group, budget: _Budget, depth: int) -> dict[str, Any]:
    r.check_spec(g, DICT)
    r.check_attr_names(g)
    if depth > MAX_PROVENANCE_DEPTH:
        raise r.error(g, f"provenance nests deeper than {MAX_PROVENANCE_DEPTH} mappings (MAX_PROVENANCE_DEPTH).")
    out: dict[str, Any] = {}
    for key in [*(k for k in g.attrs if k not in _ENC), *g]:
        problem = _key_problem(key)
        if problem:
            raise r.error(g, f"provenance key {key!r} {problem}.")
        if key in out:
            raise r.error(_join(g, key), "provenance key is both an attribute and a member.")
        if key in g.attrs:
            spent = g.attrs.get_id(key).get_storage_size()  # a fixed-length string's bytes, known unread
            if spent <= budget.left:
                out[key] = r.attr(g, key, "json")
                if r.vlen_ok:  # version 1: the text was in the global heap; count what was read
                    spent = len(_json_text(out[key]))
        elif isinstance(g[key], h5py.Group):
            out[key] = _read_dict(r, g[key], budget, depth + 1)
            spent = 0
        else:
            node = r.dataset(g, key)
            r.check_dtype(node, "numeric")
            problem = _array_dtype_problem(node.dtype, node.shape)
            if problem:
                raise r.error(node, f"{problem}.")
            spent = math.prod(node.shape) * node.dtype.itemsize
            if spent <= budget.left:
                out[key] = r.read(node)
        if not budget.spend(spent):
            raise r.error(_join(g, key), f"provenance exceeds {MAX_PROVENANCE_BYTES} bytes (MAX_PROVENANCE_BYTES).")
    return out
