r"""Import a PyTorch ``nn.Sequential`` into a :class:`~evsnn.SpikingModel` (structure only).

The import runs in three steps, kept apart so that normalization can slot in
between the first and the last:

1. :func:`parse_sequential` cuts the network at every ``nn.ReLU`` and folds
   the linear layers of each piece (one ``Linear`` or ``Conv2d`` with any
   ``AvgPool2d``, ``Flatten`` and ``Dropout`` around it) into one
   :class:`Stage`: a population-to-be and the single operator that feeds it.
2. Normalization (model-/data-based, percentile, L4) rescales the stages'
   weights, biases and thresholds; :func:`import_sequential` applies none.
3. :func:`build_model` turns the stages into populations and projections.

Average pooling is linear, so folding it is exact: a pooling next to a
convolution becomes one composite convolution, any other combination one
matrix (:class:`~evsnn.Dense` or :class:`~evsnn.Sparse`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .._version import __version__
from ..checks import check_shape
from ..errors import ConversionError, ModelError
from ..model import INPUT, InputSpec, NeuronSpec, Population, Projection, SpikingModel
from ..ops import Conv2d, Dense, Operator, Sparse, conv2d_output_shape

__all__ = ["Stage", "parse_sequential", "build_model", "import_sequential"]

_WEIGHTED = (nn.Linear, nn.Conv2d)
_PASSIVE = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.Flatten)  # no weights, no pooling
_SUPPORTED = (nn.ReLU, nn.AvgPool2d, *_WEIGHTED, *_PASSIVE)
_SUPPORTED_TEXT = "Linear, Conv2d, ReLU, AvgPool2d, Flatten, Dropout, Identity and nested Sequential"
_BATCHNORM = ("folding batch normalization into the preceding layer arrives with the normalization work. "
              "Fold it into that layer's weights and bias yourself for now")
_HINTS = {
    nn.MaxPool2d: "max pooling has no exact spiking equivalent. Use nn.AvgPool2d, which evsnn folds exactly "
                  "into the next layer",
    nn.BatchNorm1d: _BATCHNORM,
    nn.BatchNorm2d: _BATCHNORM,
}


@dataclass(frozen=True, eq=False)
class Stage:
    """One spiking population and the projection into it, before normalization.

    Attributes
    ----------
    name : str
        Population and projection name: ``"fc1"``, ``"conv2"``, ... after its weighted layer.
    paths : tuple of str
        Module paths folded into this stage, e.g. ``("features.3", "features.4", "features.5")``.
    op : Dense, Conv2d or Sparse
        The composite linear map from the previous stage (or the input).
    bias : numpy.ndarray or None
        Constant input current, of shape ``shape``.
    shape : tuple of int
        Population shape.
    relu : bool
        Whether a ReLU follows; ``False`` for an output layer of logits.
    threshold : float or numpy.ndarray, optional
        Firing threshold set by normalization; ``None`` keeps the neuron spec's.
    """

    name: str
    paths: tuple[str, ...]
    op: Operator
    bias: np.ndarray | None
    shape: tuple[int, ...]
    relu: bool
    threshold: float | np.ndarray | None = None


def import_sequential(
    module: nn.Sequential,
    input_shape: Sequence[int],
    *,
    neuron: NeuronSpec | None = None,
    readout: str = "count",
    input_encoding: str = "current",
    dt: float = 1e-3,
) -> SpikingModel:
    """Convert an ``nn.Sequential`` of Linear/Conv2d/ReLU/AvgPool2d/Flatten/Dropout, unnormalized.

    Each ReLU ends a spiking population; the linear layers between two ReLUs
    form one projection. Layers after the last ReLU form the output
    population, whose input current is the network's logits.

    Parameters
    ----------
    module : torch.nn.Sequential
        Nested ``Sequential`` containers are flattened (paths like ``"features.0"``).
        The module is only read: its weights are copied and its training flag kept.
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
        Weights keep the torch dtype (float32 or float64).

    Raises
    ------
    ConversionError
        For an unsupported layer or option, a piece between ReLUs without exactly
        one weighted layer, or mismatched shapes; the message names the layer.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> model = import_sequential(net, (2, 2), readout="membrane")
    >>> [(pr.source, pr.target, pr.op.kind) for pr in model.projections]
    [('input', 'fc1', 'dense'), ('fc1', 'fc2', 'dense')]
    """
    stages = parse_sequential(module, input_shape)
    return build_model(stages, input_shape, neuron=neuron, readout=readout, input_encoding=input_encoding,
                       dt=dt, provenance=import_provenance(module, stages))


def import_provenance(module: nn.Module, stages: Sequence[Stage]) -> dict[str, Any]:
    """Provenance of an unnormalized import: the source layers of each stage, the repr and versions."""
    return {
        "converter": "evsnn.converters.import_sequential",
        "normalization": "none",
        "source": {
            "class": type(module).__name__,
            "layers": {s.name: ",".join(s.paths) for s in stages},
            "repr": str(module),
        },
        "torch_version": str(torch.__version__),
        "evsnn_version": __version__,
    }


def parse_sequential(module: nn.Sequential, input_shape: Sequence[int]) -> list[Stage]:
    """Cut ``module`` at its ReLUs and fold each piece into one :class:`Stage`.

    Parameters
    ----------
    module : torch.nn.Sequential
    input_shape : tuple of int
        Shape of one sample.

    Returns
    -------
    list of Stage
        In network order; the last one is the output.
    """
    if not isinstance(module, nn.Sequential):
        raise ConversionError(
            f"import_sequential: module must be an nn.Sequential, got {type(module).__name__}. "
            "Wrap the layers in nn.Sequential."
        )
    try:
        shape = check_shape(input_shape, where="import_sequential", name="input_shape")
    except ModelError as err:
        raise ConversionError(f"{err} Give the shape of one sample, e.g. (1, 28, 28) or (784,).") from err
    pieces: list[list[tuple[str, nn.Module]]] = [[]]
    for path, layer in _leaves(module, ""):
        pieces[-1].append((path, layer))
        if type(layer) is nn.ReLU:
            pieces.append([])
    *pieces, tail = pieces
    stages: list[Stage] = []
    counts = {"fc": 0, "conv": 0}
    with torch.no_grad():
        for piece in pieces:
            stage, shape = _fold(piece, shape, counts, relu=True)
            stages.append(stage)
        if stages and all(isinstance(layer, _PASSIVE) for _, layer in tail):
            for path, layer in tail:  # layers after the last ReLU that change nothing
                shape = _flatten(path, layer, shape) if type(layer) is nn.Flatten else shape
            stages[-1] = dataclasses.replace(stages[-1], paths=stages[-1].paths + tuple(p for p, _ in tail))
        else:
            stages.append(_fold(tail, shape, counts, relu=False)[0])
    return stages


def build_model(
    stages: Sequence[Stage],
    input_shape: Sequence[int],
    *,
    neuron: NeuronSpec | None = None,
    readout: str = "count",
    input_encoding: str = "current",
    dt: float = 1e-3,
    provenance: Mapping[str, Any] | None = None,
) -> SpikingModel:
    """Chain ``stages`` into a :class:`SpikingModel`: input -> stage 1 -> ... -> output (the last).

    Parameters are those of :func:`import_sequential`; ``provenance`` is stored as given.
    """
    neuron = NeuronSpec() if neuron is None else neuron
    populations, projections, source = [], [], INPUT
    for stage in stages:
        spec = neuron if stage.threshold is None else dataclasses.replace(neuron, threshold=stage.threshold)
        populations.append(Population(stage.name, stage.shape, spec, stage.bias))
        projections.append(Projection(stage.name, source, stage.name, stage.op))
        source = stage.name
    return SpikingModel(
        input=InputSpec(input_shape, encoding=input_encoding),
        populations=populations,
        projections=projections,
        readout=readout,
        dt=dt,
        provenance=provenance or {},
    )


# --- parsing ------------------------------------------------------------------------------
def _leaves(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    """The non-Sequential layers of ``module`` in order, with their dotted paths."""
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            yield from _leaves(child, f"{path}.")
        elif type(child) in _SUPPORTED:
            yield path, child
        else:
            hint = _HINTS.get(type(child), "only ReLU activations and linear layers map onto spiking rates")
            raise ConversionError(
                f"Layer {path!r} ({type(child).__name__}) is not supported: {hint}. "
                f"Supported layers: {_SUPPORTED_TEXT}."
            )


def _describe(layers: Sequence[tuple[str, nn.Module]]) -> str:
    return ", ".join(f"{path!r} ({type(layer).__name__})" for path, layer in layers)


def _fold(
    layers: list[tuple[str, nn.Module]], shape: tuple[int, ...], counts: dict[str, int], *, relu: bool
) -> tuple[Stage, tuple[int, ...]]:
    """Fold the layers up to (and including) one ReLU into a stage; also return torch's output shape."""
    weighted = [(p, m) for p, m in layers if type(m) in _WEIGHTED]
    if not weighted:
        pools = [(p, m) for p, m in layers if type(m) is nn.AvgPool2d]
        if pools:
            raise ConversionError(
                f"Layer {pools[0][0]!r} (AvgPool2d): average pooling must share the layers between two ReLUs "
                "with exactly one weighted layer (Linear or Conv2d) to fold into, got none. Place the pooling "
                "directly before or after a Conv2d or Linear layer, with no ReLU in between."
            )
        if not layers:
            raise ConversionError("import_sequential: module must contain a weighted layer (Linear or Conv2d), "
                                  "got none. Convert a network with at least one Linear or Conv2d layer.")
        raise ConversionError(
            f"Layers {_describe(layers)}: the layers up to each ReLU must contain exactly one weighted layer "
            "(Linear or Conv2d), got none. Remove the extra ReLU or add a weighted layer."
        )
    if len(weighted) > 1:
        raise ConversionError(
            f"Layers {_describe(weighted)}: the layers between two ReLUs must contain exactly one weighted "
            f"layer (Linear or Conv2d), got {len(weighted)}. Put an nn.ReLU between them, or merge the "
            "consecutive linear layers into one before converting."
        )
    path, layer = weighted[0]
    weight, bias = _parameters(path, layer)
    kind = "fc" if type(layer) is nn.Linear else "conv"
    counts[kind] += 1
    acc: Conv2d | np.ndarray | sp.csr_array | None = None  # the composite map so far
    for p, m in layers:
        if type(m) is nn.Flatten:
            shape = _flatten(p, m, shape)
        elif type(m) is nn.AvgPool2d:
            pool = _pool(p, m, shape, weight.dtype)
            acc, shape = _compose(acc, pool), pool.out_shape
        elif type(m) is nn.Conv2d:
            conv = _conv(p, m, weight, shape)
            acc, shape = _compose(acc, conv), conv.out_shape
        elif type(m) is nn.Linear:
            if len(shape) != 1:
                raise ConversionError(f"Layer {p!r} (Linear): input must be flat, got shape {shape}. "
                                      "Add nn.Flatten() before it.")
            if shape[0] != m.in_features:
                raise ConversionError(f"Layer {p!r} (Linear): in_features must equal the incoming size "
                                      f"{shape[0]}, got {m.in_features}. Check the layer sizes or input_shape.")
            acc, shape = _compose(acc, weight), (m.out_features,)
    if isinstance(acc, Conv2d):
        op, out_shape = acc, acc.out_shape
    else:
        op, out_shape = (Dense(acc) if isinstance(acc, np.ndarray) else Sparse.from_matrix(acc)), shape
    if bias is not None:  # per channel (conv) or per unit (linear); pooling keeps a constant per channel
        n = math.prod(out_shape)
        bias = np.repeat(bias, n // bias.size).reshape(out_shape)
    stage = Stage(f"{kind}{counts[kind]}", tuple(p for p, _ in layers), op, bias, out_shape, relu)
    return stage, shape


def _parameters(path: str, layer: nn.Linear | nn.Conv2d) -> tuple[np.ndarray, np.ndarray | None]:
    """Copies of the weight and bias as numpy arrays of the torch dtype."""
    if layer.weight.dtype not in (torch.float32, torch.float64):
        raise ConversionError(
            f"Layer {path!r} ({type(layer).__name__}): weight dtype must be float32 or float64, got "
            f"{layer.weight.dtype}. Call module.float() before converting."
        )
    weight = layer.weight.detach().cpu().numpy().copy()
    bias = None if layer.bias is None else layer.bias.detach().cpu().numpy().copy()
    return weight, bias


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _require_3d(path: str, layer: nn.Module, shape: tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise ConversionError(
            f"Layer {path!r} ({type(layer).__name__}): input must have shape (C, H, W), got {shape}. "
            "Give input_shape as (C, H, W) and do not flatten before this layer."
        )


def _fit(path: str, layer: nn.Module, shape: tuple[int, ...], kernel, stride, padding) -> None:
    oh, ow = conv2d_output_shape(shape, kernel, stride, padding)
    if oh < 1 or ow < 1:
        raise ConversionError(
            f"Layer {path!r} ({type(layer).__name__}): kernel {kernel} with padding {padding} must fit the "
            f"input {shape[1:]}, got an empty output. Check input_shape."
        )


def _flatten(path: str, layer: nn.Flatten, shape: tuple[int, ...]) -> tuple[int, ...]:
    if layer.start_dim != 1 or layer.end_dim not in (-1, len(shape)):
        raise ConversionError(
            f"Layer {path!r} (Flatten): (start_dim, end_dim) must be (1, -1), got "
            f"({layer.start_dim}, {layer.end_dim}). Flatten all dimensions of a sample."
        )
    return (math.prod(shape),)


def _pool(path: str, layer: nn.AvgPool2d, shape: tuple[int, ...], dtype: np.dtype) -> Conv2d:
    """Average pooling as a convolution that keeps each channel to itself."""
    _require_3d(path, layer, shape)
    supported = "evsnn folds only plain pooling (padding=0, ceil_mode=False, divisor_override=None)"
    if _pair(layer.padding) != (0, 0):
        why = " (with count_include_pad=False the border divisor varies)" if not layer.count_include_pad else ""
        raise ConversionError(f"Layer {path!r} (AvgPool2d): padding must be 0, got {layer.padding!r}{why}. "
                              f"{supported}; pad the convolution instead.")
    if layer.ceil_mode:
        raise ConversionError(f"Layer {path!r} (AvgPool2d): ceil_mode must be False, got True. {supported}.")
    if layer.divisor_override is not None:
        raise ConversionError(f"Layer {path!r} (AvgPool2d): divisor_override must be None, got "
                              f"{layer.divisor_override!r}. {supported}; scale the next layer's weights instead.")
    kernel, stride = _pair(layer.kernel_size), _pair(layer.stride)
    _fit(path, layer, shape, kernel, stride, (0, 0))
    c = shape[0]
    weight = np.zeros((c, c, *kernel), dtype=dtype)
    weight[np.arange(c), np.arange(c)] = 1 / (kernel[0] * kernel[1])
    return Conv2d(weight, shape, stride=stride)


def _conv(path: str, layer: nn.Conv2d, weight: np.ndarray, shape: tuple[int, ...]) -> Conv2d:
    _require_3d(path, layer, shape)
    where = f"Layer {path!r} (Conv2d)"
    for name, value, default in (("groups", layer.groups, 1), ("dilation", _pair(layer.dilation), (1, 1)),
                                 ("padding_mode", layer.padding_mode, "zeros")):
        if value != default:
            raise ConversionError(f"{where}: {name} must be {default!r}, got {value!r}. evsnn converts plain "
                                  "convolutions (groups=1, dilation=1, zero padding) only.")
    if shape[0] != layer.in_channels:
        raise ConversionError(f"{where}: in_channels must equal the incoming channels {shape[0]} "
                              f"(input shape {shape}), got {layer.in_channels}. Check the layer sizes or input_shape.")
    kernel = layer.kernel_size
    if layer.padding == "valid":
        padding = (0, 0)
    elif layer.padding == "same":
        if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
            raise ConversionError(f"{where}: padding='same' needs an odd kernel, got {kernel}. Use an odd kernel "
                                  "or explicit padding.")
        padding = (kernel[0] // 2, kernel[1] // 2)
    else:
        padding = _pair(layer.padding)
    stride = _pair(layer.stride)
    _fit(path, layer, shape, kernel, stride, padding)
    return Conv2d(weight, shape, stride=stride, padding=padding)


# --- composing linear maps ----------------------------------------------------------------
def _compose(first: Conv2d | np.ndarray | sp.csr_array | None,
             then: Conv2d | np.ndarray) -> Conv2d | np.ndarray | sp.csr_array:
    """The map ``then ∘ first``: a convolution when exact, otherwise a (dense or CSR) matrix."""
    if first is None:
        return then
    if isinstance(first, Conv2d) and isinstance(then, Conv2d) and then.padding == (0, 0):
        return _compose_conv(first, then)
    a = first.to_csr() if isinstance(first, Conv2d) else first
    if isinstance(then, np.ndarray):  # a Linear weight: keep it dense
        return np.ascontiguousarray(then @ a)
    return sp.csr_array(then.to_csr() @ a)


def _compose_conv(a: Conv2d, b: Conv2d) -> Conv2d:
    r"""One convolution equal to ``a`` followed by the unpadded ``b``.

    Kernel :math:`(K_b - 1) s_a + K_a`, stride :math:`s_a s_b`, padding of ``a``, and
    :math:`W[o, i, c, d] = \sum_{m,u,v} B[o, m, u, v]\, A[m, i, c - s_a u, d - s_a v]` per axis.
    """
    (sh, sw), (ah, aw), (bh, bw) = a.stride, a.weight.shape[2:], b.weight.shape[2:]
    dtype = np.result_type(a.weight, b.weight)
    weight = np.zeros((b.weight.shape[0], a.weight.shape[1], (bh - 1) * sh + ah, (bw - 1) * sw + aw), dtype=dtype)
    for u in range(bh):
        for v in range(bw):
            weight[:, :, u * sh:u * sh + ah, v * sw:v * sw + aw] += np.einsum(
                "om,mihw->oihw", b.weight[:, :, u, v], a.weight)
    return Conv2d(weight, a.input_shape, stride=(sh * b.stride[0], sw * b.stride[1]), padding=a.padding)
