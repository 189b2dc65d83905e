"""Converters: trained PyTorch networks -> :class:`~evsnn.SpikingModel`.

A conversion (:func:`convert`) runs in order:

1. import (:mod:`evsnn.converters.torch_import`): trace the network with
   torch.fx; fold pooling, batch normalization and everything linear between
   ReLUs into projections; one population per ReLU;
2. normalize (:mod:`evsnn.converters.normalize`): rescale weights and biases
   so that rates fit in one spike per step (model-based, data-based, percentile);
3. set the neuron model (kind, threshold, reset, leak) of every population;
4. optionally, the L4-norm adjustment (:mod:`evsnn.converters.l4`);
5. set the readout, input encoding and time step.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ..errors import ConversionError
from ..model import InputSpec, NeuronSpec, SpikingModel
from .l4 import LAYERS, l4_adjust
from ..settings import check_samples
from .normalize import data_based, model_based, percentile_based
from .torch_import import import_torch

__all__ = ["convert", "import_torch", "l4_adjust", "NORMS"]

#: Normalization methods ``convert`` accepts.
NORMS = ("none", "model", "data", "percentile")


def convert(
    module: nn.Module,
    *,
    input_shape: tuple[int, ...],
    norm: str = "none",
    calibration: np.ndarray | None = None,
    percentile: float = 99.9,
    l4_alpha: float | None = None,
    l4_layers: str = "first",
    l4_batch: int = 128,
    zero_bias: bool = False,
    neuron: NeuronSpec | None = None,
    readout: str = "count",
    input_encoding: str = "current",
    dt: float = 1e-3,
) -> SpikingModel:
    """Convert a trained PyTorch network into a :class:`~evsnn.SpikingModel`.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network (any module torch.fx can trace; see
        :func:`~evsnn.converters.import_torch`); it is read, never modified.
    input_shape : tuple of int
        Shape of one sample, e.g. ``(1, 28, 28)``.
    norm : {"none", "model", "data", "percentile"}, default="none"
        Weight normalization: ``"none"`` copies the weights unchanged (choose the
        threshold with ``neuron``); ``"model"`` (Diehl et al. 2015, Alg. 1) uses
        the weights only; ``"data"`` (Diehl et al. 2015, Alg. 2) and
        ``"percentile"`` (Rueckauer et al. 2017) use ``calibration``.
        See :mod:`evsnn.converters.normalize`.
    calibration : array, shape (N, *input_shape), optional
        Calibration samples (training images, never the evaluation set); required
        by ``"data"``, ``"percentile"`` and the L4 adjustment.
    percentile : float in (0, 100], default=99.9
        Percentile of the non-zero activations for ``norm="percentile"``.
    l4_alpha : float >= 0, optional
        Apply the L4-norm adjustment (Allred & Roy 2021) with smoothing ratio
        ``l4_alpha``, after normalization and with the neuron's threshold
        (:func:`~evsnn.converters.l4_adjust`). ``None`` (default) skips it.
    l4_layers : {"first", "all"}, default="first"
    l4_batch : int, default=128
        The first ``l4_batch`` calibration samples form the batch the mean
        pre-activations are measured on.
    zero_bias : bool, default=False
        Diehl et al.'s zero-bias rule: refuse a network with any non-zero bias
        (after folding batch normalization) instead of keeping it as a constant input.
    neuron : NeuronSpec, optional
        Neuron model of every population (default IF, threshold 1, subtract reset).
        After normalization a threshold of 1 is the balanced one; other values
        scale it.
    readout : {"count", "membrane"}, default="count"
    input_encoding : {"current", "poisson", "regular"}, default="current"
    dt : float, seconds, default=1e-3

    Returns
    -------
    SpikingModel
        Its provenance records ``normalization`` and, when normalized,
        ``normalization_factors`` (population -> factor), ``calibration_size``
        and ``percentile`` where used, and ``l4`` (α, ℓ, μ, s̃ per population).

    Raises
    ------
    ConversionError
        For an unknown option, missing ``calibration``, a bias under
        ``zero_bias``, or a network that cannot be converted.
    InputError
        For invalid ``calibration`` samples (:func:`evsnn.settings.check_samples`).

    Examples
    --------
    A bias-free MLP, normalized on calibration data (see docs/conversion.md)::

        model = convert(net, input_shape=(4,), norm="data", calibration=x)
        model.provenance["normalization_factors"]  # {'fc1': ..., 'fc2': ...}

    (Not a doctest: Brian2 replaces pytest's doctest collector with one that
    cannot collect a package's ``__init__.py``.)
    """
    if norm not in NORMS:
        raise ConversionError(f"convert: norm must be one of {', '.join(map(repr, NORMS))}, got {norm!r}.")
    if l4_layers not in LAYERS:
        raise ConversionError(f"convert: l4_layers must be one of {', '.join(map(repr, LAYERS))}, got {l4_layers!r}.")
    needs = [what for what, used in ((f"norm={norm!r}", norm in ("data", "percentile")),
                                     ("the L4 adjustment", l4_alpha is not None)) if used]
    if needs and calibration is None:
        raise ConversionError(f"convert: {' and '.join(needs)} need{'s' if len(needs) == 1 else ''} calibration samples, got calibration=None. "
                              "Pass calibration=x with x of shape (N, *input_shape), e.g. a few hundred training "
                              "images.")
    if isinstance(l4_batch, bool) or not isinstance(l4_batch, (int, np.integer)) or l4_batch < 1:
        raise ConversionError(f"convert: l4_batch must be a positive integer, got {l4_batch!r}.")
    model = import_torch(module, input_shape)
    if zero_bias:
        _check_zero_bias(model)
    provenance = {**model.provenance, "normalization": norm, "zero_bias": bool(zero_bias)}
    x = None if calibration is None else check_samples(calibration, model, where="convert", name="calibration samples")
    if norm == "model":
        model, factors = model_based(model)
    elif norm == "data":
        model, factors = data_based(model, x)
    elif norm == "percentile":
        model, factors = percentile_based(model, x, percentile)
        provenance["percentile"] = float(percentile)
    if norm in ("data", "percentile"):
        provenance["calibration_size"] = int(x.shape[0])
    if norm != "none":
        provenance["normalization_factors"] = factors
    neuron = NeuronSpec() if neuron is None else neuron
    model = model.with_neuron(neuron)
    if l4_alpha is not None:
        model, provenance["l4"] = l4_adjust(model, x[:l4_batch], alpha=l4_alpha, layers=l4_layers)
    return model.replace(input=InputSpec(model.input.shape, encoding=input_encoding), readout=readout, dt=dt,
                         provenance=provenance)


def _check_zero_bias(model: SpikingModel) -> None:
    layers = model.provenance["source"]["layers"]
    biased = [f"{p.name!r} (from {layers[p.name]})" for p in model.populations if p.bias is not None]
    if biased:
        raise ConversionError(f"convert: zero_bias=True (Diehl et al.'s zero-bias rule) needs bias-free layers, but "
                              f"population(s) {', '.join(biased)} have a non-zero bias (batch normalization folds "
                              "into one). Train with bias=False, or pass zero_bias=False to keep biases as constant "
                              "input currents.")

