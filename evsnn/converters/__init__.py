"""Converters: trained PyTorch networks -> :class:`~evsnn.SpikingModel`.

A conversion has three steps (see :mod:`evsnn.converters.torch_import`):

1. parse the network into linear *stages*, one per spiking population: the
   torch module paths it came from, one operator (pooling folded in), a bias,
   the output shape and whether a ReLU follows;
2. normalize: rescale stage weights, biases and thresholds so that rates fit
   in one spike per step (model-/data-based, percentile, L4 adjustment);
3. build the IR from the stages.

Step 2 is the seam where normalization plugs in; today only ``norm="none"``
exists, which leaves the stages as parsed.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConversionError
from ..model import SpikingModel
from .torch_import import import_sequential

__all__ = ["convert", "import_sequential", "NORMS"]

#: Normalization methods ``convert`` accepts.
NORMS = ("none",)


def convert(module: nn.Module, *, input_shape: tuple[int, ...], norm: str = "none", **kwargs: Any) -> SpikingModel:
    """Convert a trained PyTorch network into a :class:`~evsnn.SpikingModel`.

    Parameters
    ----------
    module : torch.nn.Sequential
        The trained network; it is read, never modified.
    input_shape : tuple of int
        Shape of one sample, e.g. ``(1, 28, 28)``.
    norm : {"none"}, default="none"
        Weight normalization; ``"none"`` copies the weights unchanged.
    **kwargs
        Passed to :func:`import_sequential` (``neuron``, ``readout``,
        ``input_encoding``, ``dt``).

    Returns
    -------
    SpikingModel

    Raises
    ------
    ConversionError
        For an unknown ``norm``, or a network that cannot be converted.
    """
    if norm not in NORMS:
        raise ConversionError(
            f"convert: norm must be one of {', '.join(map(repr, NORMS))}, got {norm!r}. Normalization "
            "methods (model- and data-based, percentile, L4) arrive with the conversion work; use norm='none'."
        )
    return import_sequential(module, input_shape, **kwargs)
