r"""Import a PyTorch network into a :class:`~evsnn.SpikingModel` (structure only, unnormalized).

The network is traced with ``torch.fx``, so any module whose ``forward`` is a
fixed graph of supported layers converts: ``nn.Sequential`` stacks, residual
blocks (``relu(conv(x) + x)``), nested custom modules. Every ReLU ends a
spiking population; everything linear between ReLUs is folded into the
projections that feed it:

- ``Linear`` and ``Conv2d`` become the operators of projections;
- ``AvgPool2d`` (and ``AdaptiveAvgPool2d`` with an exact window) is linear, so
  it is folded into the operator next to it (a composite convolution where
  exact, otherwise a dense or CSR matrix);
- ``BatchNorm1d``/``BatchNorm2d`` (running statistics, as in eval mode) are a
  per-channel affine map, folded into the weights and bias before them;
- an addition (``+``, ``torch.add``) of two branches gives the population one
  projection per branch (a skip connection becomes an identity operator);
- ``Flatten``, ``Dropout`` and ``Identity`` change nothing (dropout is off at inference).

A layer that states why it has no equivalent in the IR, in a string attribute
``ir_refusal`` (:class:`evsnn.training.recurrent.SpikingLSTM` does), is refused
with that reason before tracing, wherever it sits in the network.

All folds are exact: the model's rate model (:meth:`~evsnn.SpikingModel.ann_forward`)
reproduces the network's ReLU activations and logits up to floating-point
rounding. Layers after the last ReLU form the output population, whose input
current is the network's logits.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Real
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .._version import __version__
from ..checks import check_shape
from ..errors import ConversionError, ModelError
from ..model import INPUT, InputSpec, NeuronSpec, Population, Projection, SpikingModel
from ..ops import Conv2d, conv2d_output_shape
from ..linear_maps import _compose, _Map, _operator, _scale_outputs

__all__ = ["import_torch", "import_provenance"]

_SUPPORTED_TEXT = ("Linear, Conv2d, ReLU, AvgPool2d, AdaptiveAvgPool2d (exact windows), BatchNorm1d/2d, Flatten, "
                   "Dropout, Identity, additions of branches and multiplication by constants")
_HINTS = {
    nn.MaxPool2d: "max pooling has no exact spiking equivalent. Use nn.AvgPool2d, which evsnn folds exactly "
                  "into the next layer",
    F.max_pool2d: "max pooling has no exact spiking equivalent. Use nn.AvgPool2d, which evsnn folds exactly "
                  "into the next layer",
    torch.cat: "concatenation of branches is not supported; add the branches instead",
}
_RELU_FUNCTIONS = (torch.relu, F.relu)
_ADD_FUNCTIONS = (operator.add, torch.add)

@dataclass
class _Expr:
    """The value of one traced node: ``sum_k map_k(source_k) + bias``, of shape ``shape``.

    ``terms`` are (source population, map) pairs; a source may appear twice (a
    convolution and a skip connection from the same population), and each
    term becomes its own projection.
    """

    terms: tuple[tuple[str, _Map], ...]
    bias: np.ndarray | None  # float64, of shape ``shape``
    shape: tuple[int, ...]
    paths: tuple[str, ...] = ()  # module paths folded since the last populations
    weighted: tuple[int, str] | None = None  # (trace order, name) of the last weighted layer applied

    def is_population(self) -> bool:
        return self.bias is None and len(self.terms) == 1 and self.terms[0][1] is None and self.terms[0][0] != INPUT


class _Batch:
    """The value of ``x.size(0)`` / ``x.shape[0]``: the batch dimension in a ``view``."""


def import_torch(
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    neuron: NeuronSpec | None = None,
    readout: str = "count",
    input_encoding: str = "current",
    dt: float = 1e-3,
) -> SpikingModel:
    """Convert a PyTorch network into an unnormalized :class:`~evsnn.SpikingModel`.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network; it is only read (weights are copied, the training
        flag is kept). Batch normalization uses its running statistics.
    input_shape : tuple of int
        Shape of one sample, e.g. ``(1, 28, 28)`` or ``(784,)``.
    neuron : NeuronSpec, optional
        Neuron model of every population; default ``NeuronSpec()`` (IF, threshold 1,
        subtract reset).
    readout : {"count", "membrane"}, default="count"
    input_encoding : {"current", "poisson", "regular"}, default="current"
    dt : float, seconds, default=1e-3

    Returns
    -------
    SpikingModel
        Populations are named after the last weighted layer that feeds them
        (``fc1``, ``conv2``, ...); a population fed by several branches gets one
        projection per branch (the first named after the population, the others
        ``<target>_from_<source>``). Weights keep the
        torch dtype (float32 or float64).

    Raises
    ------
    ConversionError
        For an unsupported layer or function (the message names the module path
        or graph node and what to use instead), a network torch.fx cannot trace,
        or mismatched shapes.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> model = import_torch(net, (2, 2), readout="membrane")
    >>> [(pr.source, pr.target, pr.op.kind) for pr in model.projections]
    [('input', 'fc1', 'dense'), ('fc1', 'fc2', 'dense')]
    """
    try:
        shape = check_shape(input_shape, where="import_torch", name="input_shape")
    except ModelError as err:
        raise ConversionError(f"{err} Give the shape of one sample, e.g. (1, 28, 28) or (784,).") from err
    graph = _trace(module)
    with torch.no_grad():
        builder = _Builder(graph, shape, _dtype(module))
        populations, projections, layers = builder.run()
    neuron = NeuronSpec() if neuron is None else neuron
    return SpikingModel(
        input=InputSpec(shape, encoding=input_encoding),
        populations=[replace(p, neuron=neuron) for p in populations],
        projections=projections,
        readout=readout,
        dt=dt,
        provenance=import_provenance(module, layers),
    )


def import_provenance(module: nn.Module, layers: Mapping[str, str]) -> dict[str, Any]:
    """Provenance of an unnormalized import: the source layers of each population, the repr and versions."""
    return {
        "converter": "evsnn.converters.import_torch",
        "normalization": "none",
        "source": {"class": type(module).__name__, "layers": dict(layers), "repr": str(module)},
        "torch_version": str(torch.__version__),
        "evsnn_version": __version__,
    }


def _trace(module: nn.Module) -> fx.GraphModule:
    if not isinstance(module, nn.Module):
        raise ConversionError(f"import_torch: module must be a torch.nn.Module, got {type(module).__name__}.")
    for path, layer in module.named_modules():
        reason = getattr(layer, "ir_refusal", None)
        if reason:
            where = f"Layer {path!r} ({type(layer).__name__})" if path else f"The network ({type(layer).__name__})"
            raise ConversionError(f"{where} cannot be converted: {reason}")
    try:
        return fx.symbolic_trace(module)
    except Exception as err:  # torch.fx raises TraceError, TypeError, NotImplementedError, ...
        raise ConversionError(
            f"import_torch: torch.fx could not trace {type(module).__name__}: {type(err).__name__}: {err}. evsnn "
            "converts networks whose forward is a fixed graph of layers (no control flow on tensor values)."
        ) from err


def _dtype(module: nn.Module) -> np.dtype:
    for path, p in module.named_parameters():
        if p.dtype not in (torch.float32, torch.float64):
            layer = path.rpartition(".")[0] or path
            kind = type(module.get_submodule(layer)).__name__ if "." in path else type(module).__name__
            raise ConversionError(f"Layer {layer!r} ({kind}): weight dtype must be float32 or float64, got "
                                  f"{p.dtype}. Call module.float() before converting.")
    params = list(module.parameters())
    return np.dtype(np.float64 if params and params[0].dtype == torch.float64 else np.float32)


class _Builder:
    """Walks the traced graph once, folding linear nodes and emitting a population at every ReLU."""

    def __init__(self, graph: fx.GraphModule, input_shape: tuple[int, ...], dtype: np.dtype):
        self.gm, self.input_shape, self.dtype = graph, input_shape, dtype
        self.populations: list[Population] = []
        self.projections: list[Projection] = []
        self.layers: dict[str, list[str]] = {}
        self.shapes: dict[str, tuple[int, ...]] = {INPUT: input_shape}
        self.counts = {"fc": 0, "conv": 0}
        self.order = 0

    def run(self) -> tuple[list[Population], list[Projection], dict[str, str]]:
        values: dict[fx.Node, Any] = {}
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ConversionError(f"import_torch: forward must take exactly one input tensor, got "
                                  f"{len(placeholders)} ({', '.join(n.name for n in placeholders)}).")
        for node in self.gm.graph.nodes:
            self.order += 1
            if node.op == "placeholder":
                values[node] = _Expr(((INPUT, None),), None, self.input_shape)
            elif node.op == "output":
                self._output(node, fx.node.map_arg(node.args[0], lambda n: values[n]))
            else:
                args = fx.node.map_arg(node.args, lambda n: values[n])
                kwargs = fx.node.map_arg(node.kwargs, lambda n: values[n])
                values[node] = self._node(node, args, kwargs)
        if not sum(self.counts.values()):
            raise ConversionError("import_torch: module must contain a weighted layer (Linear or Conv2d), got none.")
        return self.populations, self.projections, {k: ",".join(v) for k, v in self.layers.items()}

    # --- one graph node ---------------------------------------------------------------------
    def _node(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.op == "call_module":
            return self._module(str(node.target), self.gm.get_submodule(str(node.target)), args[0])
        if node.op == "get_attr":
            raise ConversionError(f"Node {node.name!r} reads the tensor attribute {node.target!r} in forward: "
                                  "only layers and constants can be converted. Make it a layer's parameter.")
        where = f"Node {node.name!r} ({_callable_name(node)})"
        target = node.target
        if node.op == "call_method":
            if target == "relu":
                return self._relu(args[0], node.name)
            if target in ("size", "__getitem__"):
                return self._size(where, args)
            if target == "add":
                return self._add(where, args[0], args[1])
            if target in ("flatten", "view", "reshape"):
                return self._reshape(where, target, args)
            if target in ("mul", "div"):
                return self._scale(where, args[0], args[1], divide=target == "div")
        else:
            if target in _RELU_FUNCTIONS:
                return self._relu(args[0], node.name)
            if target in _ADD_FUNCTIONS:
                if kwargs.get("alpha", 1) != 1:
                    raise ConversionError(f"{where}: alpha must be 1, got {kwargs['alpha']!r}.")
                return self._add(where, args[0], args[1])
            if target is operator.getitem:
                return self._size(where, args)
            if target is getattr and args[1] == "shape":
                return args[0]
            if target is torch.flatten:
                return self._reshape(where, "flatten", args)
            if target in (operator.mul, operator.truediv, torch.mul):
                return self._scale(where, args[0], args[1], divide=target is operator.truediv)
            if target in (F.dropout, torch.dropout):
                return args[0]
        hint = _HINTS.get(target, f"only {_SUPPORTED_TEXT} map onto spiking rates")
        raise ConversionError(f"{where} is not supported: {hint}.")

    def _module(self, path: str, layer: nn.Module, x: Any) -> _Expr:
        where = f"Layer {path!r} ({type(layer).__name__})"
        if type(layer) is nn.ReLU:
            return self._relu(x, path, path=path)
        if not isinstance(x, _Expr):
            raise ConversionError(f"{where}: input must be a tensor computed from the network input.")
        x = replace(x, paths=x.paths + (path,))
        kind = type(layer)
        if kind in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity):
            return x
        if kind is nn.Flatten:
            if layer.start_dim != 1 or layer.end_dim not in (-1, len(x.shape)):
                raise ConversionError(f"{where}: (start_dim, end_dim) must be (1, -1), got "
                                      f"({layer.start_dim}, {layer.end_dim}). Flatten all dimensions of a sample.")
            return replace(x, shape=(math.prod(x.shape),))
        if kind is nn.Linear:
            return self._linear(where, layer, x)
        if kind is nn.Conv2d:
            return self._conv(where, layer, x)
        if kind is nn.AvgPool2d:
            return self._apply(x, _pool(where, layer, x.shape, self.dtype), None)
        if kind is nn.AdaptiveAvgPool2d:
            return self._apply(x, _adaptive_pool(where, layer, x.shape, self.dtype), None)
        if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
            return self._batchnorm(where, layer, x)
        hint = _HINTS.get(kind, f"only {_SUPPORTED_TEXT} map onto spiking rates")
        raise ConversionError(f"{where} is not supported: {hint}.")

    # --- linear layers ----------------------------------------------------------------------
    def _weighted(self, x: _Expr, kind: str) -> _Expr:
        self.counts[kind] += 1
        return replace(x, weighted=(self.order, f"{kind}{self.counts[kind]}"))

    def _linear(self, where: str, layer: nn.Linear, x: _Expr) -> _Expr:
        if len(x.shape) != 1:
            raise ConversionError(f"{where}: input must be flat, got shape {x.shape}. Add nn.Flatten() before it.")
        if x.shape[0] != layer.in_features:
            raise ConversionError(f"{where}: in_features must equal the incoming size {x.shape[0]}, got "
                                  f"{layer.in_features}. Check the layer sizes or input_shape.")
        weight, bias = _parameters(layer)
        return self._apply(self._weighted(x, "fc"), weight, bias)

    def _conv(self, where: str, layer: nn.Conv2d, x: _Expr) -> _Expr:
        _require_3d(where, x.shape)
        for name, value, default in (("groups", layer.groups, 1), ("dilation", _pair(layer.dilation), (1, 1)),
                                     ("padding_mode", layer.padding_mode, "zeros")):
            if value != default:
                raise ConversionError(f"{where}: {name} must be {default!r}, got {value!r}. evsnn converts plain "
                                      "convolutions (groups=1, dilation=1, zero padding) only.")
        if x.shape[0] != layer.in_channels:
            raise ConversionError(f"{where}: in_channels must equal the incoming channels {x.shape[0]} "
                                  f"(input shape {x.shape}), got {layer.in_channels}. Check the layer sizes or "
                                  "input_shape.")
        kernel = layer.kernel_size
        if layer.padding == "valid":
            padding = (0, 0)
        elif layer.padding == "same":
            if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
                raise ConversionError(f"{where}: padding='same' needs an odd kernel, got {kernel}. Use an odd "
                                      "kernel or explicit padding.")
            padding = (kernel[0] // 2, kernel[1] // 2)
        else:
            padding = _pair(layer.padding)
        stride = _pair(layer.stride)
        _fit(where, x.shape, kernel, stride, padding)
        weight, bias = _parameters(layer)
        return self._apply(self._weighted(x, "conv"), Conv2d(weight, x.shape, stride=stride, padding=padding), bias)

    def _apply(self, x: _Expr, layer: Conv2d | np.ndarray, layer_bias: np.ndarray | None) -> _Expr:
        """``layer(x) + layer_bias``: compose ``layer`` after every map of ``x`` and carry the bias through."""
        out_shape = layer.out_shape if isinstance(layer, Conv2d) else (layer.shape[0],)
        bias = None
        if x.bias is not None:
            flat = x.bias.reshape(1, -1)
            bias = (flat @ layer.T.astype(np.float64) if isinstance(layer, np.ndarray)
                    else _as_float64(layer).forward(flat)).reshape(out_shape)
        if layer_bias is not None:
            per_unit = np.repeat(layer_bias.astype(np.float64), math.prod(out_shape) // layer_bias.size)
            bias = per_unit.reshape(out_shape) + (0 if bias is None else bias)
        terms = tuple((src, _compose(m, layer)) for src, m in x.terms)
        return replace(x, terms=terms, bias=bias, shape=out_shape)

    def _batchnorm(self, where: str, layer: nn.BatchNorm1d | nn.BatchNorm2d, x: _Expr) -> _Expr:
        if layer.running_mean is None or layer.running_var is None:
            raise ConversionError(f"{where}: batch normalization without running statistics "
                                  "(track_running_stats=False) depends on the batch and cannot be folded.")
        expected = 3 if isinstance(layer, nn.BatchNorm2d) else 1
        if len(x.shape) != expected or x.shape[0] != layer.num_features:
            raise ConversionError(f"{where}: input must have {layer.num_features} channels in a shape of "
                                  f"{expected} dimension(s), got {x.shape}.")
        var = layer.running_var.detach().cpu().double().numpy()
        mean = layer.running_mean.detach().cpu().double().numpy()
        gamma = np.ones_like(var) if layer.weight is None else layer.weight.detach().cpu().double().numpy()
        beta = np.zeros_like(var) if layer.bias is None else layer.bias.detach().cpu().double().numpy()
        scale = gamma / np.sqrt(var + layer.eps)
        shift = beta - mean * scale
        per_unit = math.prod(x.shape) // scale.size
        bias = np.repeat(shift, per_unit).reshape(x.shape)
        if x.bias is not None:
            bias = bias + x.bias * np.repeat(scale, per_unit).reshape(x.shape)
        terms = tuple((src, _scale_outputs(m, scale, self.shapes[src], x.shape, self.dtype)) for src, m in x.terms)
        return replace(x, terms=terms, bias=bias)

    # --- functions --------------------------------------------------------------------------
    def _add(self, where: str, a: Any, b: Any) -> _Expr:
        if isinstance(b, Real) and isinstance(a, _Expr):
            a, b = b, a
        if isinstance(a, Real) and isinstance(b, _Expr):  # a constant: a bias
            return replace(b, bias=(0 if b.bias is None else b.bias) + np.full(b.shape, float(a)))
        if not (isinstance(a, _Expr) and isinstance(b, _Expr)):
            raise ConversionError(f"{where}: can add two branches or a branch and a number, got "
                                  f"{type(a).__name__} and {type(b).__name__}.")
        if a.shape != b.shape:
            raise ConversionError(f"{where}: the added branches must have the same shape, got {a.shape} and "
                                  f"{b.shape}. (Broadcasting is not supported.)")
        bias = a.bias if b.bias is None else (b.bias if a.bias is None else a.bias + b.bias)
        weighted = max((w for w in (a.weighted, b.weighted) if w is not None), default=None)
        paths = a.paths + tuple(p for p in b.paths if p not in a.paths)
        return _Expr(a.terms + b.terms, bias, a.shape, paths, weighted)

    def _scale(self, where: str, a: Any, b: Any, *, divide: bool) -> _Expr:
        if not divide and isinstance(a, Real):
            a, b = b, a
        if not (isinstance(a, _Expr) and isinstance(b, Real) and not isinstance(b, bool) and math.isfinite(b)
                and (b != 0 or not divide)):
            raise ConversionError(f"{where}: only multiplication or division of a branch by a finite constant "
                                  f"is supported, got {type(a).__name__} and {b!r}.")
        c = 1 / float(b) if divide else float(b)
        factor = np.full(a.shape[0], c)
        terms = tuple((src, _scale_outputs(m, factor, self.shapes[src], a.shape, self.dtype)) for src, m in a.terms)
        return replace(a, terms=terms, bias=None if a.bias is None else a.bias * c)

    def _size(self, where: str, args: tuple) -> Any:
        x, dim = (args[0], args[1]) if len(args) > 1 else (args[0], None)
        if isinstance(x, _Expr) and dim == 0:
            return _Batch()
        raise ConversionError(f"{where}: only the batch size (x.size(0), x.shape[0]) can be read in forward, "
                              f"got index {dim!r}.")

    def _reshape(self, where: str, kind: str, args: tuple) -> _Expr:
        x, rest = args[0], args[1:]
        if len(rest) == 1 and isinstance(rest[0], (tuple, list)):
            rest = tuple(rest[0])
        flat = (math.prod(x.shape),) if isinstance(x, _Expr) else None
        if kind == "flatten":
            ok = tuple(rest) in ((1,), (1, -1))
        else:
            ok = (len(rest) == 2 and (isinstance(rest[0], _Batch) or rest[0] == -1)
                  and rest[1] in (-1, flat[0] if flat else None) and not (rest[0] == -1 and rest[1] == -1))
        if not (isinstance(x, _Expr) and ok):
            raise ConversionError(f"{where}: only flattening every dimension of a sample is supported "
                                  "(torch.flatten(x, 1), x.view(x.size(0), -1)); use nn.Flatten().")
        return replace(x, shape=flat)

    # --- populations ------------------------------------------------------------------------
    def _relu(self, x: Any, name: str, *, path: str | None = None) -> _Expr:
        if not isinstance(x, _Expr):
            raise ConversionError(f"Node {name!r} (relu): input must be a tensor computed from the network input.")
        paths = x.paths + ((path,) if path else ())
        if x.is_population():  # spikes are never negative: ReLU changes nothing
            self.layers[x.terms[0][0]] += list(paths)
            return x
        return self._population(replace(x, paths=paths), relu=True)

    def _output(self, node: fx.Node, x: Any) -> None:
        if not isinstance(x, _Expr):
            raise ConversionError(f"import_torch: forward must return one tensor, got {type(x).__name__}.")
        if x.is_population():
            self.layers[x.terms[0][0]] += list(x.paths)
            if self.populations[-1].name != x.terms[0][0]:
                raise ConversionError("import_torch: the output must be the last population computed.")
            return
        self._population(x, relu=False)

    def _population(self, x: _Expr, *, relu: bool) -> _Expr:
        base = x.weighted[1] if x.weighted else ("relu" if relu else "output")
        name, k = base, 1
        while name in self.shapes:
            k += 1
            name = f"{base}_{k}"
        bias = None
        if x.bias is not None and np.any(x.bias != 0):
            bias = x.bias.astype(self.dtype)
        self.populations.append(Population(name, x.shape, NeuronSpec(), bias))
        used: set[str] = set()
        for k, (src, m) in enumerate(x.terms):
            base = name if k == 0 else f"{name}_from_{src}"
            pr_name, j = base, 1
            while pr_name in used:
                j += 1
                pr_name = f"{base}_{j}"
            used.add(pr_name)
            self.projections.append(Projection(pr_name, src, name, _operator(m, self.shapes[src], x.shape, self.dtype)))
        self.shapes[name] = x.shape
        self.layers[name] = list(x.paths)
        return _Expr(((name, None),), None, x.shape)


def _callable_name(node: fx.Node) -> str:
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", repr(t))


def _parameters(layer: nn.Linear | nn.Conv2d) -> tuple[np.ndarray, np.ndarray | None]:
    """Copies of the weight and bias as numpy arrays of the torch dtype."""
    weight = layer.weight.detach().cpu().numpy().copy()
    bias = None if layer.bias is None else layer.bias.detach().cpu().numpy().copy()
    return weight, bias


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _require_3d(where: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise ConversionError(f"{where}: input must have shape (C, H, W), got {shape}. Give input_shape as "
                              "(C, H, W) and do not flatten before this layer.")


def _fit(where: str, shape: tuple[int, ...], kernel, stride, padding) -> None:
    oh, ow = conv2d_output_shape(shape, kernel, stride, padding)
    if oh < 1 or ow < 1:
        raise ConversionError(f"{where}: kernel {tuple(kernel)} with padding {padding} must fit the input "
                              f"{shape[1:]}, got an empty output. Check input_shape.")


def _pool_conv(shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int], dtype) -> Conv2d:
    """Average pooling as a convolution that keeps each channel to itself."""
    c = shape[0]
    weight = np.zeros((c, c, *kernel), dtype=dtype)
    weight[np.arange(c), np.arange(c)] = 1 / (kernel[0] * kernel[1])
    return Conv2d(weight, shape, stride=stride)


def _pool(where: str, layer: nn.AvgPool2d, shape: tuple[int, ...], dtype: np.dtype) -> Conv2d:
    _require_3d(where, shape)
    supported = "evsnn folds only plain pooling (padding=0, ceil_mode=False, divisor_override=None)"
    if _pair(layer.padding) != (0, 0):
        why = " (with count_include_pad=False the border divisor varies)" if not layer.count_include_pad else ""
        raise ConversionError(f"{where}: padding must be 0, got {layer.padding!r}{why}. {supported}; pad the "
                              "convolution instead.")
    if layer.ceil_mode:
        raise ConversionError(f"{where}: ceil_mode must be False, got True. {supported}.")
    if layer.divisor_override is not None:
        raise ConversionError(f"{where}: divisor_override must be None, got {layer.divisor_override!r}. "
                              f"{supported}; scale the next layer's weights instead.")
    kernel = _pair(layer.kernel_size)
    stride = kernel if layer.stride is None else _pair(layer.stride)
    _fit(where, shape, kernel, stride, (0, 0))
    return _pool_conv(shape, kernel, stride, dtype)


def _adaptive_pool(where: str, layer: nn.AdaptiveAvgPool2d, shape: tuple[int, ...], dtype: np.dtype) -> Conv2d:
    _require_3d(where, shape)
    size = layer.output_size
    out = tuple(shape[1 + i] if s is None else s for i, s in enumerate(_pair(size) if not isinstance(size, tuple)
                                                                        else size))
    if shape[1] % out[0] or shape[2] % out[1]:
        raise ConversionError(f"{where}: output size {out} must divide the input size {shape[1:]}, so that every "
                              "window has the same size; use nn.AvgPool2d with an explicit kernel.")
    kernel = (shape[1] // out[0], shape[2] // out[1])
    return _pool_conv(shape, kernel, kernel, dtype)


def _as_float64(op: Conv2d) -> Conv2d:
    return Conv2d(op.weight.astype(np.float64), op.input_shape, stride=op.stride, padding=op.padding)
