r"""NIR exchange: :func:`to_nir` and :func:`from_nir` (docs/nir.md).

NIR (the Neuromorphic Intermediate Representation) describes a network as
continuous-time nodes joined by edges. evsnn maps them onto its IR:

- neuron nodes (``IF``, ``LIF``, ``CubaLIF``, ``LI``, ``CubaLI``, ``I``,
  ``Threshold``) become populations, in the ODE form of
  :class:`~evsnn.NeuronSpec` (``Threshold``: the stateless discrete kind);
- every chain of linear nodes between two populations (``Affine``,
  ``Linear``, ``Scale``, ``Conv1d``, ``Conv2d``, ``SumPool2d``,
  ``AvgPool2d``, ``Flatten``, ``Delay``, and the ``Input``/``Output`` of a
  nested subgraph) becomes one projection: the chain's maps composed into
  one operator (a convolution while that stays exact, else a dense or CSR
  matrix), its delays summed into steps of ``dt``, its biases pushed
  through the rest of the chain into the target's bias;
- a cycle (a recurrent edge) gets a delay of one step where it has none:
  a spike travels once around the loop per step, as in every timestep
  simulator.

Anything else is a :class:`~evsnn.errors.ConversionError` naming the node
key and its type. A file is read only after the checks of evsnn's own model
files (a regular file, no links or external storage, declared sizes
present), then by the ``nir`` package itself.

Exporting writes each population as the NIR node whose ODE it obeys: a
discrete-form neuron of a converted model becomes an ``IF`` with ``R = 1``
(a spike of weight ``w`` still makes ``v`` jump by ``w``) or a ``LIF`` with
:math:`\tau = -dt/\ln\beta` and :math:`R = \tau`, its bias the held current
that adds the same per step. What NIR cannot say (a subtracting reset,
``v >= θ``, an initial potential, ``Sparse`` connectivity, provenance) is kept
exactly in the graph's metadata under ``"evsnn"``, used by :func:`from_nir`
when the nodes still agree with it, and reported in a :class:`NirWarning`
because other tools will run the NIR semantics instead.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..checks import check_output_path
from ..errors import ConversionError, DependencyError, EvsnnWarning, FormatError, InputError, ModelError
from ..model import INPUT, InputSpec, NeuronSpec, Population, Projection, SpikingModel
from ..ops import Conv2d, Dense, Sparse
from ..linear_maps import _compose, _operator
from . import integrity

__all__ = ["to_nir", "from_nir", "read_nir", "write_nir", "hard_reset", "NirWarning", "MAX_NIR_BYTES", "METADATA_KEY"]

#: Largest ``.nir`` file :func:`read_nir` reads (read whole, then parsed from memory).
MAX_NIR_BYTES = 4 * 2**30
#: Graph metadata key under which :func:`to_nir` keeps what NIR cannot express.
METADATA_KEY = "evsnn"
_METADATA_VERSION = 1


class NirWarning(EvsnnWarning):
    """An exported model relies on semantics NIR does not define; other tools will run NIR's."""


def _nir():
    try:
        import nir
    except ImportError as err:
        raise DependencyError("NIR exchange needs the nir package; install it with `pip install nir` "
                              "(or evsnn[nir]).") from err
    return nir


def hard_reset() -> bool:
    r"""Whether the installed ``nir`` resets to ``v_reset`` (nir >= 1.0.5) or subtracts the threshold (nir <= 1.0.4).

    NIR changed its spiking neurons' reset between releases: 1.0.4 documents
    :math:`v \leftarrow v - v_{thr}` and has no ``v_reset``; later releases add
    ``v_reset`` and reset to it.
    """
    import dataclasses

    return "v_reset" in {f.name for f in dataclasses.fields(_nir().IF)}


# --------------------------------------------------------------------------------------
# Exact JSON for the metadata (arrays keep dtype, shape and every bit)
# --------------------------------------------------------------------------------------
def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__array__": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}
    if isinstance(value, Mapping):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if "__array__" in value:
            return np.array(value["data"], dtype=np.dtype(value["__array__"])).reshape(value["shape"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


# --------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------
def _full(value: float | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), shape))


def _neuron_node(pop: Population, dt: float, membrane: bool) -> tuple[Any, np.ndarray]:
    """The NIR node a population obeys, and the factor from its IR bias to NIR's held current."""
    nir = _nir()
    spec, shape = pop.neuron, pop.shape
    f = lambda v: _full(v, shape)  # noqa: E731
    reset = {"v_reset": f(spec.v_reset)} if hard_reset() else {}
    kind = spec.kind
    if kind == "srm":
        raise ConversionError(f"Population {pop.name!r}: kind 'srm' has no NIR primitive (NIR defines IF, LIF, "
                              "CubaLIF, LI, CubaLI, I and Threshold).")
    if kind == "threshold":
        return nir.Threshold(threshold=f(spec.threshold)), f(1.0)
    if spec.ode:
        tau, r, leak = spec.tau_mem, f(spec.r), f(spec.v_leak)
        if kind in ("if", "i"):
            node = nir.I(r=r) if membrane or kind == "i" else \
                nir.IF(r=r, v_threshold=f(spec.threshold), **reset)
        elif kind in ("lif", "li"):
            node = nir.LI(tau=f(tau), r=r, v_leak=leak) if membrane or kind == "li" else \
                nir.LIF(tau=f(tau), r=r, v_leak=leak, v_threshold=f(spec.threshold), **reset)
        else:
            common = dict(tau_syn=f(spec.tau_syn), tau_mem=f(tau), r=r, v_leak=leak, w_in=f(spec.w_in))
            if (membrane or kind == "cuba_li") and not hasattr(nir, "CubaLI"):
                raise ConversionError(f"Population {pop.name!r}: the installed nir {nir.version} has no CubaLI "
                                      "node (added in nir 1.0.5); upgrade nir to export this read-out.")
            node = nir.CubaLI(**common) if membrane or kind == "cuba_li" else \
                nir.CubaLIF(**common, v_threshold=f(spec.threshold), **reset)
        return node, f(1.0)
    beta = f(spec.beta)
    if np.all(beta == 1):  # IF: dv/dt = R I with R = 1; a held current c adds c * dt per step
        node = nir.I(r=f(1.0)) if membrane else nir.IF(r=f(1.0), v_threshold=f(spec.threshold), **reset)
        return node, f(dt)
    if np.any(beta == 1):
        raise ConversionError(f"Population {pop.name!r}: a LIF population mixing beta = 1 and beta < 1 has no NIR "
                              "node; give every neuron a leak, or split the population.")
    tau = -dt / np.log(beta)  # R = tau: a spike of weight w still jumps v by R w / tau = w
    node = nir.LI(tau=tau, r=tau.copy(), v_leak=f(spec.v_leak)) if membrane else \
        nir.LIF(tau=tau, r=tau.copy(), v_leak=f(spec.v_leak), v_threshold=f(spec.threshold), **reset)
    return node, -np.expm1(-dt / tau) * tau  # a held current c adds (1 - beta) R c per step


def _not_in_nir(model: SpikingModel) -> list[str]:
    """What the exported graph's NIR semantics will not reproduce (restored by evsnn from the metadata)."""
    notes, hard = [], hard_reset()
    for p in model.populations:
        spec = p.neuron
        membrane = model.readout == "membrane" and p.name == model.output
        if spec.spiking and not membrane:
            if spec.kind != "threshold" and (spec.reset == "subtract") == hard:
                notes.append(f"population {p.name!r}: reset {spec.reset!r} (the installed nir's neurons "
                             f"{'reset to v_reset' if hard else 'subtract the threshold'})")
            if not spec.strict_threshold:
                notes.append(f"population {p.name!r}: spikes at v >= threshold (NIR: v > threshold)")
        if spec.v_init_fraction:
            notes.append(f"population {p.name!r}: initial potential {spec.v_init_fraction:g} x threshold "
                         "(NIR starts at 0)")
        if not spec.ode and spec.kind != "threshold" and model.input.encoding == "current" and any(
                pr.source == INPUT for pr in model.projections_into(p.name)):
            notes.append(f"population {p.name!r}: analog input added per step as an impulse (NIR holds a "
                         "current over the step; evsnn's discrete form is exact only for spikes)")
    return notes


def to_nir(model: SpikingModel) -> Any:
    """The model as a ``nir.NIRGraph``, with exact evsnn extras in ``graph.metadata["evsnn"]``.

    One node per population (its key is the population's name), per
    projection (``Affine``/``Linear``/``Conv2d``; a ``Flatten`` before a
    dense map from a multi-axis source, a ``Delay`` after a delayed one),
    plus ``input`` and ``output``.

    Raises
    ------
    ConversionError
        A population NIR cannot express (SRM), or a dense projection into a
        population with more than one axis (NIR has no reshape).

    Warns
    -----
    NirWarning
        Listing what other tools will run differently (a subtracting reset,
        ``v >= θ``, an initial potential), which evsnn restores from the metadata.
    """
    nir = _nir()
    if not isinstance(model, SpikingModel):
        raise InputError(f"to_nir: model must be a SpikingModel, got {type(model).__name__}.")
    dt = model.dt
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(model.input.shape)})}
    edges: list[tuple[str, str]] = []
    reserved = {"input", "output"}
    for p in model.populations:
        if p.name in reserved:
            raise ConversionError(f"Population {p.name!r}: the NIR node keys 'input' and 'output' are reserved; "
                                  "rename the population.")
    bias_gain = {}
    for p in model.populations:
        membrane = model.readout == "membrane" and p.name == model.output
        nodes[p.name], bias_gain[p.name] = _neuron_node(p, dt, membrane)
    taken = set(nodes) | reserved
    bias_placed: set[str] = set()
    sparse: dict[str, Any] = {}
    node_of: dict[str, str] = {}
    for pr in model.projections:
        key = pr.name if pr.name not in taken else f"{pr.name}_op"
        while key in taken:
            key += "_"
        taken.add(key)
        src_shape = model.input.shape if pr.source == INPUT else model.population(pr.source).shape
        dst = model.population(pr.target)
        bias = None
        if dst.bias is not None and dst.name not in bias_placed:
            bias_placed.add(dst.name)
            bias = dst.bias / bias_gain[dst.name]
        op = pr.op
        chain_from = "input" if pr.source == INPUT else pr.source
        if isinstance(op, Conv2d):
            channel_bias = None
            if bias is not None:
                per_channel = bias.reshape(bias.shape[0], -1)
                if not np.all(per_channel == per_channel[:, :1]):
                    raise ConversionError(f"Projection {pr.name!r}: the bias of {dst.name!r} varies within a "
                                          "channel; a NIR Conv2d bias is one value per channel.")
                channel_bias = per_channel[:, 0]
            node = nir.Conv2d(input_shape=np.array(op.input_shape[1:]), weight=op.weight,
                              stride=np.array(op.stride), padding=np.array(op.padding), dilation=np.array((1, 1)),
                              groups=1, bias=channel_bias if channel_bias is not None
                              else np.zeros(op.weight.shape[0], dtype=op.weight.dtype))
        else:
            if len(dst.shape) != 1:
                raise ConversionError(f"Projection {pr.name!r}: a {op.kind} projection into population "
                                      f"{dst.name!r} of shape {dst.shape} has no NIR form (NIR has no reshape "
                                      "after a dense map).")
            weight = op.weight if isinstance(op, Dense) else op.to_csr().toarray()
            if isinstance(op, Sparse):
                sparse[pr.name] = {"indices": op.indices, "indptr": op.indptr}
            node = nir.Affine(weight=weight, bias=bias) if bias is not None else nir.Linear(weight=weight)
            if len(src_shape) != 1:
                flat = f"{key}_flatten"
                taken.add(flat)
                nodes[flat] = nir.Flatten(input_type={"input": np.array(src_shape)}, start_dim=0, end_dim=-1)
                edges.append((chain_from, flat))
                chain_from = flat
        nodes[key] = node
        node_of[pr.name] = key if chain_from in ("input", pr.source) else chain_from  # the chain's first node
        edges.append((chain_from, key))
        last = key
        if pr.delay:
            delay_key = f"{key}_delay"
            taken.add(delay_key)
            nodes[delay_key] = nir.Delay(delay=_full(pr.delay * dt, dst.shape))
            edges.append((key, delay_key))
            last = delay_key
        edges.append((last, pr.target))
    for p in model.populations:
        if p.bias is not None and p.name not in bias_placed:
            raise ConversionError(f"Population {p.name!r}: has a bias but no incoming projection to carry it "
                                  "(NIR keeps biases on Affine and Conv nodes).")
    nodes["output"] = nir.Output(output_type={"output": np.array(model.population(model.output).shape)})
    edges.append((model.output, "output"))
    extras = {
        "version": _METADATA_VERSION, "dt": dt,
        "input": {"shape": list(model.input.shape), "encoding": model.input.encoding,
                  "max_rate": model.input.max_rate, "scale": model.input.scale},
        "readout": model.readout, "output": model.output,
        "populations": [{"name": p.name, "neuron": _spec_fields(p.neuron), "bias": p.bias}
                        for p in model.populations],
        "projections": [{"name": pr.name, "node": node_of[pr.name], "source": pr.source, "target": pr.target,
                         "delay": pr.delay, **({"sparse": sparse[pr.name]} if pr.name in sparse else {})}
                        for pr in model.projections],
        "provenance": model.provenance,
    }
    notes = _not_in_nir(model)
    if notes:
        warnings.warn("to_nir: other NIR tools will run this model differently; evsnn restores these from the "
                      "graph's metadata: " + "; ".join(notes) + ".", NirWarning, stacklevel=2)
    metadata = {METADATA_KEY: json.dumps(_to_json(extras))}
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)
    except Exception as err:  # nir's own validation of what we built: a bug here, said plainly
        raise ConversionError(f"to_nir: nir refused the exported graph: {type(err).__name__}: {err}") from err


def _spec_fields(spec: NeuronSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in (
        "kind", "threshold", "reset", "v_reset", "beta", "tau_syn", "tau_refr", "v_init_fraction", "tau_mem", "r",
        "v_leak", "w_in", "strict_threshold")}


def write_nir(model: SpikingModel, path: str | os.PathLike) -> None:
    """Export ``model`` with :func:`to_nir` and write it with ``nir.write``, atomically (a temporary file, then
    a rename)."""
    nir = _nir()
    path = check_output_path(path, what="NIR file")
    graph = to_nir(model)
    target = os.path.realpath(path)
    tmp = f"{target}.tmp-{os.getpid()}"
    try:
        nir.write(tmp, graph)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --------------------------------------------------------------------------------------
# Reading a file
# --------------------------------------------------------------------------------------
def read_nir(path: str | os.PathLike) -> Any:
    """Read a ``.nir`` file safely: the checks of evsnn's model files first, then ``nir``'s own reader.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    FormatError
        Not a regular file, too large, not HDF5, a link or external storage
        reaching outside the file, declared data missing, or a graph ``nir``
        cannot read (the message names the node).
    """
    import h5py

    from .hdf5 import _check_structure, _one_line, _Reader

    nir = _nir()
    path = os.fspath(path)
    data = integrity.read_regular(path, MAX_NIR_BYTES, what="NIR files")
    if not data.startswith(integrity.HDF5_SIGNATURE):
        raise FormatError(f"{path}: a NIR file must be an HDF5 file written by nir.write, got a file that does not "
                          f"start with the HDF5 signature ({len(data)} bytes).")
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except Exception as err:  # noqa: BLE001 - whatever libhdf5 says about a damaged file
        raise FormatError(f"{path}: unreadable or truncated HDF5 file ({_one_line(err)}).") from err
    with f:
        _check_structure(_Reader(path, layout=1), f, strings=True)
        if not isinstance(f.get("node"), h5py.Group):
            raise FormatError(f"{path}:/node: missing: a NIR file keeps its graph in the group /node.")
    try:
        return nir.read(io.BytesIO(data))
    except Exception as err:  # noqa: BLE001 - nir's reader raises assertion, key and value errors
        raise FormatError(f"{path}: not a valid NIR graph: {_diagnose(data) or _one_line(err)}") from err


def _diagnose(data: bytes) -> str | None:
    """Which node of a graph ``nir`` refused, found by building each node alone."""
    import h5py

    from .hdf5 import _one_line

    nir = _nir()
    from nir.serialization import hdf2dict

    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            tree = hdf2dict(f["node"])
    except Exception as err:  # noqa: BLE001
        return f"/node: {type(err).__name__}: {_one_line(err)}"

    def walk(d: Any, where: str) -> str | None:
        if not isinstance(d, dict) or "type" not in d:
            return f"{where}: not a NIR node (no 'type')"
        if d["type"] == "NIRGraph":
            for key, sub in (d.get("nodes") or {}).items():
                found = walk(sub, f"{where}/nodes/{key}")
                if found:
                    return found
            return None
        try:
            nir.dict2NIRNode(dict(d))
        except Exception as err:  # noqa: BLE001
            return f"{where} ({d['type']}): {type(err).__name__}: {_one_line(err)}"
        return None

    return walk(tree, "/node")


# --------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------
_NEURONS = ("IF", "LIF", "CubaLIF", "LI", "CubaLI", "I", "Threshold")
_LINEAR = ("Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Delay", "Identity")


def _flatten_graph(graph: Any, prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Inline nested subgraphs: keys ``sub.node``; a subgraph's own Input/Output become pass-through nodes."""
    nir = _nir()
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    ends: dict[str, tuple[list[str], list[str]]] = {}  # subgraph key -> (its input keys, its output keys)
    for key, node in graph.nodes.items():
        full = f"{prefix}{key}"
        if isinstance(node, nir.NIRGraph):
            inner, inner_edges = _flatten_graph(node, f"{full}.")
            nodes.update(inner)
            edges += inner_edges
            ends[key] = ([f"{full}.{k}" for k, n in node.nodes.items() if isinstance(n, nir.Input)],
                         [f"{full}.{k}" for k, n in node.nodes.items() if isinstance(n, nir.Output)])
        else:
            nodes[full] = node
    for src, dst in graph.edges:
        sources = ends[src][1] if src in ends else [f"{prefix}{src}"]
        targets = ends[dst][0] if dst in ends else [f"{prefix}{dst}"]
        edges += [(a, b) for a in sources for b in targets]
    return nodes, edges


def _where(key: str, node: Any) -> str:
    return f"NIR node {key!r} ({type(node).__name__})"


def _array(node: Any, key: str, field: str) -> np.ndarray:
    raw = getattr(node, field)
    try:
        value = np.asarray(raw)
    except Exception as err:  # e.g. a torch Parameter that requires grad, as Rockpool 3.1.0's export writes
        raise ConversionError(f"{_where(key, node)}: {field} must be a numeric array, got a "
                              f"{type(raw).__module__}.{type(raw).__name__} that numpy cannot read "
                              f"({type(err).__name__}: {err}).") from err
    if value.dtype.kind not in "biuf":
        raise ConversionError(f"{_where(key, node)}: {field} must be numeric, got dtype {value.dtype}.")
    return value.astype(np.float64) if value.dtype.kind in "biu" else value


def _neuron_spec(key: str, node: Any) -> tuple[NeuronSpec, tuple[int, ...]]:
    """The population a NIR neuron node becomes (ODE form; Threshold: the stateless discrete kind)."""
    t = type(node).__name__
    a = lambda field: _array(node, key, field)  # noqa: E731
    if hasattr(node, "v_reset"):  # nir >= 1.0.5: reset to v_reset
        hard = dict(reset="zero", v_reset=a("v_reset"), strict_threshold=True)
    else:  # nir <= 1.0.4: v - v_thr
        hard = dict(reset="subtract", strict_threshold=True)
    try:
        if t == "Threshold":
            th = a("threshold")
            return NeuronSpec("threshold", threshold=th, strict_threshold=True), th.shape
        if t == "IF":
            r = a("r")
            return NeuronSpec("if", r=r, threshold=a("v_threshold"), **hard), r.shape
        if t == "I":
            r = a("r")
            return NeuronSpec("i", r=r), r.shape
        if t == "LIF":
            r = a("r")
            return NeuronSpec("lif", tau_mem=a("tau"), r=r, v_leak=a("v_leak"), threshold=a("v_threshold"),
                              **hard), r.shape
        if t == "LI":
            r = a("r")
            return NeuronSpec("li", tau_mem=a("tau"), r=r, v_leak=a("v_leak")), r.shape
        r = a("r")
        common = dict(tau_mem=a("tau_mem"), tau_syn=a("tau_syn"), r=r, v_leak=a("v_leak"), w_in=a("w_in"))
        if t == "CubaLIF":
            return NeuronSpec("cuba_lif", threshold=a("v_threshold"), **common, **hard), r.shape
        return NeuronSpec("cuba_li", **common), r.shape
    except ModelError as err:
        raise ConversionError(f"{_where(key, node)}: {err}") from err


def _conv_weight(key: str, node: Any, c_in: int, dims: int) -> tuple[np.ndarray, tuple[int, ...], tuple[int, ...]]:
    """A NIR convolution's kernel with groups and dilation spelled out (zeros), its stride and padding per axis."""
    w = _array(node, key, "weight")
    if w.ndim != dims + 2:
        raise ConversionError(f"{_where(key, node)}: weight must have {dims + 2} axes, got shape {w.shape}.")
    per_axis = lambda v: tuple(int(x) for x in np.broadcast_to(np.asarray(v), (dims,)))  # noqa: E731
    stride, dilation, groups = per_axis(node.stride), per_axis(node.dilation), int(np.asarray(node.groups))
    c_out, c_group = w.shape[:2]
    if groups < 1 or c_in != c_group * groups or c_out % groups:
        raise ConversionError(f"{_where(key, node)}: groups={groups} does not fit {c_in} input channels and a "
                              f"weight of shape {w.shape}.")
    k = w.shape[2:]
    size = tuple((kk - 1) * d + 1 for kk, d in zip(k, dilation))
    full = np.zeros((c_out, c_in, *size), dtype=w.dtype)
    per_group = c_out // groups
    for g in range(groups):
        o, i = slice(g * per_group, (g + 1) * per_group), slice(g * c_group, (g + 1) * c_group)
        index = (o, i) + tuple(slice(None, None, d) for d in dilation)
        full[index] = w[o]
    padding = node.padding
    if isinstance(padding, (str, bytes)):
        padding = padding.decode() if isinstance(padding, bytes) else padding
        if padding == "valid":
            pad = (0,) * dims
        elif padding == "same" and all(s % 2 == 1 for s in size) and all(s == 1 for s in stride):
            pad = tuple((s - 1) // 2 for s in size)
        else:
            raise ConversionError(f"{_where(key, node)}: padding {padding!r} with kernel {size} and stride {stride} "
                                  "needs uneven padding, which evsnn's convolution does not have.")
    else:
        pad = per_axis(padding)
    return full, stride, pad


class _Chain:
    """A linear map being composed along a chain of NIR nodes: the map, the current shape, the delay in steps."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.map: Any = None
        self.shape = shape
        self.delay = 0
        self.dtype = dtype

    def then(self, matrix_or_conv: Any, shape: tuple[int, ...]) -> None:
        if isinstance(matrix_or_conv, sp.sparray) or sp.issparse(matrix_or_conv):
            current = self.map
            if current is None:
                self.map = sp.csr_array(matrix_or_conv)
            else:
                a = current.to_csr() if isinstance(current, Conv2d) else current
                self.map = sp.csr_array(matrix_or_conv @ a)
        else:
            self.map = _compose(self.map, matrix_or_conv)
        self.shape = shape


def _apply(chain: _Chain, key: str, node: Any, dt: float) -> np.ndarray | None:
    """Compose ``node`` into ``chain``; return the node's bias as an array of its output shape, if any."""
    t = type(node).__name__
    n = math.prod(chain.shape)
    if t in ("Input", "Output", "Identity", "Flatten"):
        if t == "Flatten":
            chain.shape = (n,)
        return None
    if t == "Delay":
        d = _array(node, key, "delay")
        if d.size and not np.all(d == d.flat[0]):
            raise ConversionError(f"{_where(key, node)}: delays differ between neurons; evsnn's projections have one "
                                  "delay each.")
        seconds = float(d.flat[0]) if d.size else 0.0
        steps = round(seconds / dt)
        if seconds < 0 or abs(seconds / dt - steps) > 1e-6 * max(1, steps):
            raise ConversionError(f"{_where(key, node)}: delay {seconds:g} s is not a whole number of steps of "
                                  f"dt = {dt:g} s.")
        chain.delay += steps
        return None
    if t in ("Affine", "Linear"):
        w = _array(node, key, "weight")
        if w.ndim != 2 or w.shape[1] != n:
            raise ConversionError(f"{_where(key, node)}: weight must have shape (n_out, {n}) to follow a signal "
                                  f"of shape {chain.shape}, got {w.shape}.")
        chain.then(np.ascontiguousarray(w), (w.shape[0],))
        return _array(node, key, "bias") if t == "Affine" else None
    if t == "Scale":
        s = _array(node, key, "scale").reshape(-1)
        if s.size != n:
            raise ConversionError(f"{_where(key, node)}: scale must have {n} values, got {s.size}.")
        chain.then(sp.csr_array(sp.diags(s)), chain.shape)
        return None
    if t in ("Conv1d", "Conv2d", "SumPool2d", "AvgPool2d"):
        dims = 1 if t == "Conv1d" else 2
        shape = chain.shape
        if len(shape) != dims + 1:
            raise ConversionError(f"{_where(key, node)}: needs an input of {dims + 1} axes (channels, "
                                  f"{'length' if dims == 1 else 'height, width'}), got shape {shape}.")
        c = shape[0]
        if t.endswith("Pool2d"):
            k = tuple(int(x) for x in np.broadcast_to(np.asarray(node.kernel_size), (2,)))
            stride = tuple(int(x) for x in np.broadcast_to(np.asarray(node.stride), (2,)))
            pad = tuple(int(x) for x in np.broadcast_to(np.asarray(node.padding), (2,)))
            weight = np.zeros((c, c, *k))
            weight[np.arange(c), np.arange(c)] = 1.0 / (k[0] * k[1]) if t == "AvgPool2d" else 1.0
            bias = None
        else:
            weight, stride, pad = _conv_weight(key, node, c, dims)
            bias = _array(node, key, "bias") if getattr(node, "bias", None) is not None else None
        image = shape if dims == 2 else (c, 1, shape[1])
        kernel = weight if dims == 2 else weight[:, :, None, :]
        try:
            conv = Conv2d(kernel, image, stride=stride if dims == 2 else (1, stride[0]),
                          padding=pad if dims == 2 else (0, pad[0]))
        except ModelError as err:
            raise ConversionError(f"{_where(key, node)}: {err}") from err
        out = conv.out_shape if dims == 2 else (conv.out_shape[0], conv.out_shape[2])
        chain.then(conv if dims == 2 else sp.csr_array(conv.to_csr()), out)
        if bias is not None:
            bias = np.repeat(bias.reshape(-1), math.prod(out[1:])).reshape(out)
        return bias
    raise ConversionError(f"{_where(key, node)}: not supported by evsnn's NIR import.")


def from_nir(graph_or_path: Any, *, dt: float, encoding: str | None = None) -> SpikingModel:
    """A :class:`~evsnn.SpikingModel` from a ``nir.NIRGraph`` or a ``.nir`` file, integrated over steps of ``dt``.

    Parameters
    ----------
    graph_or_path : nir.NIRGraph, str or path
    dt : float, seconds
        The step every engine integrates NIR's ODEs over (exactly; docs/nir.md).
    encoding : {"current", "poisson", "regular"}, optional
        The model's default input encoding; default that of an evsnn export,
        else ``"poisson"`` (NIR graphs usually take spikes).

    Raises
    ------
    ConversionError
        A node evsnn does not import (named with its key and type), a graph
        without exactly one Input and one Output, or parameters the IR refuses.
    FormatError
        An unreadable or hostile file (see :func:`read_nir`).
    """
    nir = _nir()
    source = None
    if isinstance(graph_or_path, (str, os.PathLike)):
        source = os.fspath(graph_or_path)
        graph = read_nir(source)
    elif isinstance(graph_or_path, nir.NIRGraph):
        graph = graph_or_path
    else:
        raise InputError(f"from_nir: graph_or_path must be a nir.NIRGraph or a file path, got "
                         f"{type(graph_or_path).__name__}.")
    ok = not isinstance(dt, bool) and isinstance(dt, (int, float, np.floating)) and math.isfinite(dt) and dt > 0
    if not ok:
        raise InputError(f"from_nir: dt must be a positive number of seconds, got {dt!r}. NIR is continuous-time: "
                         "say which step to integrate it over, e.g. dt=1e-3.")
    dt = float(dt)
    nodes, edges = _flatten_graph(graph)
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input) and "." not in k]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output) and "." not in k]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ConversionError(f"from_nir: an evsnn model has one Input and one Output node, the graph has "
                              f"{len(inputs)} ({inputs}) and {len(outputs)} ({outputs}).")
    in_key, out_key = inputs[0], outputs[0]
    for key, node in nodes.items():
        t = type(node).__name__
        if t not in _NEURONS and t not in _LINEAR and key not in (in_key, out_key) and t not in ("Input", "Output"):
            raise ConversionError(f"{_where(key, node)}: evsnn imports {', '.join(_NEURONS)} neurons and "
                                  f"{', '.join(_LINEAR)} maps; this node type is not supported.")
    preds: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise ConversionError(f"from_nir: edge ({a!r}, {b!r}) names {end!r}, which is not a node of the graph.")
        preds[b].append(a)
    pops = [k for k, n in nodes.items() if type(n).__name__ in _NEURONS]
    if not pops:
        raise ConversionError("from_nir: the graph has no neuron node (IF, LIF, CubaLIF, LI, CubaLI, I, Threshold).")
    in_shape = tuple(int(x) for x in np.asarray(nodes[in_key].input_type["input"]).reshape(-1))
    specs = {k: _neuron_spec(k, nodes[k]) for k in pops}
    shape_of = {in_key: in_shape, **{k: s for k, (_, s) in specs.items()}}

    def paths_into(key: str, seen: tuple[str, ...]) -> list[tuple[str, list[str]]]:
        found = []
        for a in preds[key]:
            if a in shape_of:
                found.append((a, []))
            elif a in seen:
                raise ConversionError(f"{_where(a, nodes[a])}: lies on a cycle of linear nodes without a neuron.")
            elif type(nodes[a]).__name__ in _LINEAR or isinstance(nodes[a], (nir.Input, nir.Output)):
                found += [(src, chain + [a]) for src, chain in paths_into(a, seen + (a,))]
            else:
                raise ConversionError(f"{_where(a, nodes[a])}: cannot feed {key!r}.")
        return found

    out_pop = out_key
    while len(preds[out_pop]) == 1 and (out_pop == out_key or isinstance(nodes[out_pop], (nir.Input, nir.Output))):
        out_pop = preds[out_pop][0]  # through the Output of a nested subgraph
    if out_pop not in specs:
        feeder = preds[out_key][0] if preds[out_key] else None
        what = "nothing" if feeder is None else _where(feeder, nodes[feeder])
        raise ConversionError(f"from_nir: the Output node {out_key!r} must be fed by one neuron node (evsnn reads "
                              f"a population), got {what}. Add an LI or I read-out before it.")
    names = _names(pops + [in_key, out_key])
    projections, biases, links = [], {}, []
    for target in pops:
        tshape = shape_of[target]
        for src, chain_keys in paths_into(target, ()):
            chain = _Chain(shape_of[src], np.dtype(np.float64))
            for k in chain_keys:
                _apply(chain, k, nodes[k], dt)
            if math.prod(chain.shape) != math.prod(tshape):
                raise ConversionError(f"NIR node {target!r}: receives {math.prod(chain.shape)} values from {src!r} "
                                      f"but has {math.prod(tshape)} neurons.")
            op = _as_operator(chain.map, shape_of[src], tshape)
            links.append((src, target, op, chain.delay, chain_keys[0] if chain_keys else f"{src}_to_{target}"))
        # biases: each biased node once per distinct route to the target
        routes = {tuple(chain_keys[i:]) for _, chain_keys in paths_into(target, ()) for i in range(len(chain_keys))
                  if type(nodes[chain_keys[i]]).__name__ in ("Affine", "Conv1d", "Conv2d")}
        total = None
        for route in sorted(routes):
            b = _apply(_Chain(_input_shape(route[0], nodes, shape_of, paths_into), np.dtype(np.float64)), route[0],
                       nodes[route[0]], dt)
            if b is None or not np.any(b):
                continue
            rest = _Chain(b.shape, np.dtype(np.float64))
            for k in route[1:]:
                _apply(rest, k, nodes[k], dt)
            mapped = _as_operator(rest.map, b.shape, tshape).forward(b.reshape(1, -1).astype(np.float64))[0] \
                if rest.map is not None else b.reshape(-1)
            total = mapped if total is None else total + mapped
        if total is not None:
            biases[target] = total.reshape(tshape)
    order = _order(pops, links)
    proj_names = _names([name for *_, name in links], reserved=set(names.values()) | {INPUT})
    for (src, target, op, delay, name) in links:
        recurrent = src != in_key and order.index(src) >= order.index(target)
        projections.append(Projection(proj_names[name], INPUT if src == in_key else names[src], names[target], op,
                                      delay=max(delay, 1) if recurrent else delay))
    recurrent_edges = [proj_names[name] for (src, target, op, delay, name) in links
                       if src != in_key and order.index(src) >= order.index(target) and delay == 0]
    membrane = not specs[out_pop][0].spiking
    populations = [Population(names[k], shape_of[k], specs[k][0], bias=biases.get(k)) for k in order]
    provenance = {"source": "nir", "nir_version": getattr(nir, "version", "unknown"),
                  **({"file": source} if source else {}),
                  **({"recurrent_edges_delayed_one_step": recurrent_edges} if recurrent_edges else {})}
    try:
        model = SpikingModel(input=InputSpec(in_shape, encoding=encoding or "poisson"), populations=populations,
                             projections=projections, output=names[out_pop],
                             readout="membrane" if membrane else "count", dt=dt, provenance=provenance)
    except ModelError as err:
        raise ConversionError(f"from_nir: the imported graph is not a valid evsnn model: {err}") from err
    return _restore(model, graph, nodes, names, proj_names, encoding)


def _input_shape(key: str, nodes: dict, shape_of: dict, paths_into) -> tuple[int, ...]:
    """The shape of the signal entering linear node ``key`` (along its first path from a population or the input)."""
    routes = paths_into(key, (key,))
    if not routes:
        raise ConversionError(f"{_where(key, nodes[key])}: nothing feeds it.")
    src, chain_keys = routes[0]
    chain = _Chain(shape_of[src], np.dtype(np.float64))
    for k in chain_keys:
        _apply(chain, k, nodes[k], 1.0)
    return chain.shape


def _as_operator(m: Any, src: tuple[int, ...], dst: tuple[int, ...]):
    """The IR operator of a composed map; a convolution whose shapes differ from the populations' becomes CSR."""
    if isinstance(m, Conv2d) and (m.in_shape != tuple(src) or m.out_shape != tuple(dst)):
        m = sp.csr_array(m.to_csr())
    return _operator(m, src, dst, np.dtype(np.float64))


def _names(keys: list[str], reserved: set[str] = frozenset()) -> dict[str, str]:
    """Identifiers for NIR keys (``a.b`` -> ``a_b``, ``0`` -> ``n0``), unique and not in ``reserved``."""
    out, used = {}, set(reserved)
    for key in keys:
        if key in out:
            continue
        name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in key) or "n"
        if not (name[0].isalpha() or name[0] == "_"):
            name = f"n{name}"
        base, i = name, 1
        while name in used:
            name, i = f"{base}_{i}", i + 1
        used.add(name)
        out[key] = name
    return out


def _order(pops: list[str], links: list[tuple]) -> list[str]:
    """Populations in topological order of their delay-0 links; a cycle is cut at the earliest key of the graph."""
    incoming = {p: {src for src, tgt, _, delay, _ in links if tgt == p and delay == 0 and src in pops and src != p}
                for p in pops}
    order: list[str] = []
    remaining = list(pops)
    while remaining:
        ready = [p for p in remaining if not (incoming[p] - set(order))]
        pick = ready[0] if ready else remaining[0]
        order.append(pick)
        remaining.remove(pick)
    return order


def _restore(model: SpikingModel, graph: Any, nodes: dict, names: dict, proj_names: dict,
             encoding: str | None) -> SpikingModel:
    """The exact evsnn model from ``metadata["evsnn"]`` where the graph's nodes still say the same; else ``model``."""
    raw = (graph.metadata or {}).get(METADATA_KEY) if isinstance(graph.metadata, dict) else None
    if raw is None:
        return model
    try:
        extras = _from_json(json.loads(raw))
        if extras.get("version") != _METADATA_VERSION or extras.get("dt") != model.dt:
            return model
        populations = [Population(p["name"], model.population(names[p["name"]]).shape if p["name"] in names else (),
                                  NeuronSpec(**p["neuron"]), bias=p["bias"]) for p in extras["populations"]]
        by_node = {pr.name: pr for pr in model.projections}
        projections = []
        for pr in extras["projections"]:
            imported = by_node[proj_names[pr["node"]]]
            op = imported.op
            if "sparse" in pr:
                dense = op.to_csr().toarray() if not isinstance(op, Dense) else op.weight
                s = pr["sparse"]
                rows = np.repeat(np.arange(len(s["indptr"]) - 1), np.diff(s["indptr"]))
                op = Sparse(dense[rows, s["indices"]], s["indices"], s["indptr"], dense.shape)
            projections.append(Projection(pr["name"], pr["source"], pr["target"], op, delay=pr["delay"]))
        inp = extras["input"]
        exact = SpikingModel(
            input=InputSpec(tuple(inp["shape"]), encoding=encoding or inp["encoding"], max_rate=inp["max_rate"],
                            scale=inp["scale"]),
            populations=populations, projections=projections, output=extras["output"], readout=extras["readout"],
            dt=extras["dt"], provenance=extras["provenance"])
    except Exception as err:  # noqa: BLE001 - stale or foreign metadata: the NIR semantics stand
        warnings.warn(f"from_nir: the graph's evsnn metadata could not be used ({type(err).__name__}: {err}); "
                      "the model follows the NIR nodes.", NirWarning, stacklevel=3)
        return model
    if not _agrees(exact, graph):
        warnings.warn("from_nir: the graph's evsnn metadata disagrees with its NIR nodes (edited after export?); "
                      "the model follows the NIR nodes.", NirWarning, stacklevel=3)
        return model
    return exact


def _agrees(exact: SpikingModel, graph: Any) -> bool:
    """Whether exporting ``exact`` again gives the graph's node parameters (to float rounding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NirWarning)
        again = to_nir(exact)
    if set(again.nodes) != set(graph.nodes) or sorted(again.edges) != sorted(map(tuple, graph.edges)):
        return False
    for key, node in again.nodes.items():
        other = graph.nodes[key]
        if type(node) is not type(other):
            return False
        for field, value in vars(node).items():
            if field in ("metadata", "input_type", "output_type") or not isinstance(value, np.ndarray):
                continue
            theirs = np.asarray(getattr(other, field, None))
            if theirs.shape != value.shape or not np.allclose(theirs, value, rtol=1e-12, atol=0):
                return False
    return True
