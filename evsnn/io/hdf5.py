"""The native evsnn model file: one HDF5 file per :class:`~evsnn.SpikingModel`.

The layout is specified in ``docs/hdf5-format.md``. In short::

    /                      format="evsnn", format_version=1, dt, readout, output
    /input                 shape, encoding, max_rate, scale
    /populations           order = population names, in topological order
    /populations/<name>    shape, neuron kind, reset, ...; threshold; bias
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
as untrusted: every missing or mistyped field raises
:class:`~evsnn.errors.FormatError` naming the path inside the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from .._version import __version__
from ..errors import FormatError, ModelError, UnsupportedVersionError
from ..model import InputSpec, NeuronSpec, Population, Projection, SpikingModel
from ..ops import OPERATORS, Conv2d, Dense, Sparse

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION", "IOSpec"]

FORMAT = "evsnn"
#: Integer version of the whole file layout; a file with a larger one is refused.
FORMAT_VERSION = 1

_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True, "fletcher32": True}


@dataclass(frozen=True)
class IOSpec:
    """The ``(encoding-type, encoding-version)`` pair stamped on every element."""

    encoding_type: str
    encoding_version: str


MODEL = IOSpec("evsnn-model", "1.0.0")
INPUT_SPEC = IOSpec("input", "1.0.0")
ORDERED = IOSpec("ordered-group", "1.0.0")
POPULATION = IOSpec("population", "1.0.0")
PROJECTION = IOSpec("projection", "1.0.0")
ARRAY = IOSpec("array", "1.0.0")
CSR = IOSpec("csr_matrix", "0.1.0")  # anndata's sparse layout, readable by anndata.io.read_elem
DICT = IOSpec("dict", "1.0.0")


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
        complete, and left untouched if writing fails.

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
        raise TypeError(f"save: model must be a SpikingModel, got {type(model).__name__}.")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        with h5py.File(tmp, "w", track_order=True) as f:
            _write_model(f, model)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _file_mode(path: str) -> int:
    """Keep an existing file's permissions; new files get the usual umask-based mode."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _stamp(node: h5py.HLObject, spec: IOSpec) -> None:
    node.attrs["encoding-type"] = spec.encoding_type
    node.attrs["encoding-version"] = spec.encoding_version


def _write_array(group: h5py.Group, name: str, arr: np.ndarray) -> None:
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    filters = _COMPRESSION if arr.ndim and arr.size else {}
    ds = group.create_dataset(name, data=arr, **filters)
    _stamp(ds, ARRAY)


def _ints(values: tuple[int, ...]) -> np.ndarray:
    return np.asarray(values, dtype="<i8")


def _write_model(f: h5py.File, m: SpikingModel) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = np.int64(FORMAT_VERSION)
    _stamp(f, MODEL)
    f.attrs["evsnn-version"] = __version__
    f.attrs["dt"] = np.float64(m.dt)
    f.attrs["readout"] = m.readout
    f.attrs["output"] = m.output

    g = f.create_group("input")
    _stamp(g, INPUT_SPEC)
    g.attrs["shape"] = _ints(m.input.shape)
    g.attrs["encoding"] = m.input.encoding
    g.attrs["max_rate"] = np.float64(m.input.max_rate)
    g.attrs["scale"] = np.float64(m.input.scale)

    pops = f.create_group("populations")
    _stamp(pops, ORDERED)
    pops.attrs["order"] = [p.name for p in m.populations]
    for p in m.populations:
        _write_population(pops.create_group(p.name), p)

    projs = f.create_group("projections")
    _stamp(projs, ORDERED)
    projs.attrs["order"] = [pr.name for pr in m.projections]
    for pr in m.projections:
        _write_projection(projs.create_group(pr.name), pr)

    _write_dict(f.create_group("provenance", track_order=True), m.provenance)


def _write_population(g: h5py.Group, p: Population) -> None:
    _stamp(g, POPULATION)
    n = p.neuron
    g.attrs["shape"] = _ints(p.shape)
    g.attrs["neuron"] = n.kind
    g.attrs["reset"] = n.reset
    g.attrs["v_reset"] = np.float64(n.v_reset)
    g.attrs["beta"] = np.float64(n.beta)
    g.attrs["v_init_fraction"] = np.float64(n.v_init_fraction)
    if n.kind == "srm":
        g.attrs["tau_syn"] = np.float64(n.tau_syn)
        g.attrs["tau_refr"] = np.float64(n.tau_refr)
    if isinstance(n.threshold, np.ndarray):
        _write_array(g, "threshold", n.threshold)
    else:
        g.attrs["threshold"] = np.float64(n.threshold)
    if p.bias is not None:
        _write_array(g, "bias", p.bias)


def _write_projection(g: h5py.Group, pr: Projection) -> None:
    _stamp(g, PROJECTION)
    g.attrs["source"] = pr.source
    g.attrs["target"] = pr.target
    g.attrs["op"] = pr.op.kind
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
            g.attrs[key] = json.dumps(value, allow_nan=True)


# ======================================================================================
# Reading
# ======================================================================================
def load(path: str | os.PathLike) -> SpikingModel:
    """Read a model written by :func:`save` (or by any tool following ``docs/hdf5-format.md``).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    FormatError
        The file is not HDF5, is truncated or corrupt, or is not a valid evsnn
        model; the message names the path inside the file.
    UnsupportedVersionError
        The file (or one element of it) was written by a newer evsnn.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file.")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise FormatError(
            f"{path}: file must be an HDF5 file written by evsnn.save(), got an unreadable or "
            f"truncated file ({err})."
        ) from err
    with f:
        try:
            return _read_model(_Reader(path), f)
        except FormatError:
            raise
        except Exception as err:  # h5py/numpy surprises in a hostile file: never a raw KeyError
            raise FormatError(f"{path}: could not be read as an evsnn model: {type(err).__name__}: {err}") from err


class _Reader:
    """Typed access to a file's nodes; every failure names the file and the node path."""

    def __init__(self, path: str):
        self.path = path

    def error(self, node: h5py.HLObject | str, message: str, cls: type = FormatError) -> FormatError:
        where = node if isinstance(node, str) else node.name
        return cls(f"{self.path}:{where}: {message}")

    @contextlib.contextmanager
    def building(self, node: h5py.HLObject) -> Iterator[None]:
        """Turn IR validation errors into FormatErrors at ``node``."""
        try:
            yield
        except ModelError as err:
            raise self.error(node, str(err)) from err

    # -- nodes ------------------------------------------------------------------------
    def group(self, parent: h5py.Group, name: str) -> h5py.Group:
        node = parent.get(name)
        if not isinstance(node, h5py.Group):
            what = "is missing" if node is None else f"is a {type(node).__name__}"
            raise self.error(_join(parent, name), f"group must exist, but it {what}.")
        return node

    def check_spec(self, node: h5py.HLObject, expected: IOSpec) -> None:
        etype = self.attr(node, "encoding-type", str)
        version = self.attr(node, "encoding-version", str)
        if etype != expected.encoding_type:
            raise self.error(node, f"encoding-type must be {expected.encoding_type!r}, got {etype!r}.")
        if version != expected.encoding_version:
            raise self.error(
                node,
                f"encoding-version {version!r} of {etype!r} is not supported (this evsnn reads "
                f"{expected.encoding_version!r}). Upgrade evsnn.",
                UnsupportedVersionError,
            )

    def array(self, parent: h5py.Group, name: str, *, kind: str, ndim: int | None = None) -> np.ndarray:
        """A dataset as a native-endian array of ``kind`` ``"float"`` (float32/64), ``"int"`` or ``"numeric"``."""
        node = parent.get(name)
        where = _join(parent, name)
        if not isinstance(node, h5py.Dataset):
            what = "is missing" if node is None else f"is a {type(node).__name__}"
            raise self.error(where, f"dataset must exist, but it {what}.")
        self.check_spec(node, ARRAY)
        dt = node.dtype
        float_ok = dt.kind == "f" and dt.itemsize in (4, 8)
        ok = {"float": float_ok, "int": dt.kind in "iu", "numeric": float_ok or dt.kind in "biu"}[kind]
        if not ok:
            need = {"float": "float32 or float64", "int": "an integer type", "numeric": "numeric"}[kind]
            raise self.error(where, f"dtype must be {need}, got {dt}.")
        if ndim is not None and node.ndim != ndim:
            raise self.error(where, f"must have {ndim} dimension(s), got shape {node.shape}.")
        try:
            data = node[()]
        except OSError as err:
            raise self.error(where, f"data is corrupt (checksum mismatch or truncated file): {err}") from err
        data = np.asarray(data)
        return data.astype(data.dtype.newbyteorder("="), copy=False)

    def attr(self, node: h5py.HLObject, name: str, kind: type | str) -> Any:
        """An attribute checked to be ``str``, ``int``, ``float``, ``"shape"`` (int tuple) or ``"json"``."""
        if name not in node.attrs:
            raise self.error(node, f"attribute {name!r} is missing.")
        try:
            value = node.attrs[name]
        except (OSError, TypeError, ValueError) as err:
            raise self.error(node, f"attribute {name!r} cannot be read: {err}") from err
        if isinstance(value, (bytes, np.bytes_)):
            value = value.decode("utf-8", errors="replace")
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
            except ValueError as err:
                raise self.error(node, f"attribute {name!r} must be JSON text, got {value!r}.") from err
        return value

    def order(self, group: h5py.Group) -> list[str]:
        """The ``order`` attribute, checked against the group's members."""
        self.check_spec(group, ORDERED)
        if "order" not in group.attrs:
            raise self.error(group, "attribute 'order' is missing.")
        raw = np.asarray(group.attrs["order"])
        if raw.ndim != 1 or raw.dtype.kind not in "OSU":
            raise self.error(group, f"attribute 'order' must be a 1-D array of names, got {raw!r}.")
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in raw]
        members = set(group.keys())
        if len(set(names)) != len(names) or set(names) != members:
            raise self.error(
                group,
                f"attribute 'order' must list each member once, got order {names} for members "
                f"{sorted(members)}.",
            )
        return names


def _join(parent: h5py.Group, name: str) -> str:
    return f"{parent.name.rstrip('/')}/{name}"


def _read_model(r: _Reader, f: h5py.File) -> SpikingModel:
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
    r.check_spec(f, MODEL)

    g = r.group(f, "input")
    r.check_spec(g, INPUT_SPEC)
    with r.building(g):
        inp = InputSpec(
            shape=r.attr(g, "shape", "shape"),
            encoding=r.attr(g, "encoding", str),
            max_rate=r.attr(g, "max_rate", float),
            scale=r.attr(g, "scale", float),
        )

    pops_g = r.group(f, "populations")
    populations = [_read_population(r, r.group(pops_g, name)) for name in r.order(pops_g)]
    known = {"input", *(p.name for p in populations)}
    projs_g = r.group(f, "projections")
    projections = [_read_projection(r, r.group(projs_g, name), known) for name in r.order(projs_g)]
    provenance = _read_dict(r, r.group(f, "provenance"))

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
    r.check_spec(g, POPULATION)
    kind = r.attr(g, "neuron", str)
    if "threshold" in g.attrs:
        threshold: float | np.ndarray = r.attr(g, "threshold", float)
    else:
        threshold = r.array(g, "threshold", kind="float")
    srm = {name: r.attr(g, name, float) for name in ("tau_syn", "tau_refr") if kind == "srm"}
    with r.building(g):
        neuron = NeuronSpec(
            kind=kind,
            threshold=threshold,
            reset=r.attr(g, "reset", str),
            v_reset=r.attr(g, "v_reset", float),
            beta=r.attr(g, "beta", float),
            v_init_fraction=r.attr(g, "v_init_fraction", float),
            **srm,
        )
        bias = r.array(g, "bias", kind="float") if "bias" in g else None
        return Population(name=g.name.rsplit("/", 1)[-1], shape=r.attr(g, "shape", "shape"), neuron=neuron,
                          bias=bias)


def _read_dense(r: _Reader, g: h5py.Group) -> Dense:
    return Dense(r.array(g, "weight", kind="float", ndim=2))


def _read_conv2d(r: _Reader, g: h5py.Group) -> Conv2d:
    return Conv2d(
        weight=r.array(g, "weight", kind="float", ndim=4),
        input_shape=r.attr(g, "input_shape", "shape"),
        stride=r.attr(g, "stride", "shape"),
        padding=r.attr(g, "padding", "shape"),
    )


def _read_sparse(r: _Reader, g: h5py.Group) -> Sparse:
    w = r.group(g, "weight")
    r.check_spec(w, CSR)
    with r.building(w):
        return Sparse(
            data=r.array(w, "data", kind="float", ndim=1),
            indices=r.array(w, "indices", kind="int", ndim=1),
            indptr=r.array(w, "indptr", kind="int", ndim=1),
            shape=r.attr(w, "shape", "shape"),
        )


_OP_READERS: dict[str, Callable[[_Reader, h5py.Group], Any]] = {
    "dense": _read_dense,
    "conv2d": _read_conv2d,
    "sparse": _read_sparse,
}
assert _OP_READERS.keys() == OPERATORS.keys()


def _read_projection(r: _Reader, g: h5py.Group, known: set[str]) -> Projection:
    r.check_spec(g, PROJECTION)
    ends = {end: r.attr(g, end, str) for end in ("source", "target")}
    for end, name in ends.items():
        if name not in known:
            raise r.error(g, f"attribute {end!r} must name a population in /populations, got {name!r}.")
    op_kind = r.attr(g, "op", str)
    if op_kind not in _OP_READERS:
        raise r.error(g, f"attribute 'op' must be one of {sorted(_OP_READERS)}, got {op_kind!r}.")
    with r.building(g):
        op = _OP_READERS[op_kind](r, g)
        return Projection(name=g.name.rsplit("/", 1)[-1], op=op, delay=r.attr(g, "delay", int), **ends)


def _read_dict(r: _Reader, g: h5py.Group) -> dict[str, Any]:
    r.check_spec(g, DICT)
    out: dict[str, Any] = {}
    for key in g.attrs:
        if not key.startswith("encoding-"):
            out[key] = r.attr(g, key, "json")
    for key, node in g.items():
        out[key] = _read_dict(r, node) if isinstance(node, h5py.Group) else r.array(g, key, kind="numeric")
    return out
