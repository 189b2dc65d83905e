"""Converters: trained PyTorch networks -> :class:`~evsnn.SpikingModel`.

A conversion has three steps (see :mod:`evsnn.converters.torch_import`):

1. parse the network into linear *stages*, one per spiking population: the
   torch module paths it came from, one operator (pooling folded in), a bias,
   the output shape and whether a ReLU follows;
2. normalize: rescale stage weights and biases so that rates fit in one spike
   per step (:mod:`evsnn.converters.normalize`: model-based, data-based,
   percentile);
3. build the IR from the stages.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from ..errors import ConversionError
from ..model import SpikingModel
from .normalize import data_based, model_based, percentile_based
from .torch_import import build_model, import_provenance, import_sequential, parse_sequential

__all__ = ["convert", "import_sequential", "NORMS"]

#: Normalization methods ``convert`` accepts.
NORMS = ("none", "model", "data", "percentile")


def convert(
    module: nn.Module,
    *,
    input_shape: tuple[int, ...],
    norm: str = "none",
    calibration: np.ndarray | None = None,
    percentile: float = 99.9,
    **kwargs: Any,
) -> SpikingModel:
    """Convert a trained PyTorch network into a :class:`~evsnn.SpikingModel`.

    Parameters
    ----------
    module : torch.nn.Sequential
        The trained network; it is read, never modified.
    input_shape : tuple of int
        Shape of one sample, e.g. ``(1, 28, 28)``.
    norm : {"none", "model", "data", "percentile"}, default="none"
        Weight normalization: ``"none"`` copies the weights unchanged; ``"model"``
        (Diehl et al. 2015, Alg. 1) uses the weights only; ``"data"`` (Diehl et al.
        2015, Alg. 2) and ``"percentile"`` (Rueckauer et al. 2017) use ``calibration``.
        See :mod:`evsnn.converters.normalize`.
    calibration : array, shape (N, *input_shape), optional
        Calibration samples; required by ``"data"`` and ``"percentile"``, ignored otherwise.
    percentile : float in (0, 100], default=99.9
        Percentile of the non-zero activations for ``norm="percentile"``.
    **kwargs
        Passed to :func:`import_sequential` (``neuron``, ``readout``,
        ``input_encoding``, ``dt``).

    Returns
    -------
    SpikingModel
        Its provenance records ``normalization`` and, when normalized,
        ``normalization_factors`` (stage name -> factor), ``calibration_size``
        and ``percentile`` where used.

    Raises
    ------
    ConversionError
        For an unknown ``norm``, a missing or invalid ``calibration``, a bad
        ``percentile``, or a network that cannot be converted.
    """
    if norm not in NORMS:
        raise ConversionError(f"convert: norm must be one of {', '.join(map(repr, NORMS))}, got {norm!r}.")
    if norm in ("data", "percentile") and calibration is None:
        raise ConversionError(f"convert: norm={norm!r} needs calibration samples, got calibration=None. Pass "
                              "calibration=x with x of shape (N, *input_shape), e.g. a few hundred training images.")
    stages = parse_sequential(module, input_shape)
    provenance = {**import_provenance(module, stages), "normalization": norm}
    if norm == "model":
        stages, factors = model_based(stages)
    elif norm != "none":
        x = np.asarray(calibration)
        if x.shape[1:] != tuple(input_shape):
            raise ConversionError(f"convert: calibration must have shape (N, {', '.join(map(str, input_shape))}), "
                                  f"got {x.shape}.")
        if norm == "data":
            stages, factors = data_based(stages, x)
        else:
            stages, factors = percentile_based(stages, x, percentile)
            provenance["percentile"] = float(percentile)
        provenance["calibration_size"] = int(x.shape[0])
    if norm != "none":
        provenance["normalization_factors"] = {s.name: float(f) for s, f in zip(stages, factors)}
    return build_model(stages, input_shape, provenance=provenance, **kwargs)
