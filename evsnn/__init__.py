"""evsnn: convert trained PyTorch networks to spiking networks, store them as
HDF5, and simulate them event-driven with exact synaptic-operation counts.
"""

from ._version import __version__
from .errors import (
    AccuracyWarning,
    ConversionError,
    DependencyError,
    EngineError,
    EvsnnError,
    EvsnnWarning,
    FormatError,
    InputError,
    ModelError,
    UnsupportedVersionError,
)
from .io.hdf5 import load, save
from .model import InputSpec, NeuronSpec, Population, Projection, SpikingModel
from .ops import Conv2d, Dense, Sparse
from .encoding import EncodedInput, encode, encode_spikes
from .result import Result
from .simulation import simulate
from .energy import energy_report
from .validation import validate


def __getattr__(name: str):
    """``convert`` (torch) and the NIR functions (the ``nir`` package) are imported on first use, so that
    ``import evsnn`` stays light."""
    if name == "convert":
        from .converters import convert

        return convert
    if name in ("to_nir", "from_nir"):
        from .io import nir

        return getattr(nir, name)
    raise AttributeError(f"module 'evsnn' has no attribute {name!r}")


__all__ = [
    "convert",
    "__version__",
    "save", "load", "simulate", "encode", "encode_spikes", "EncodedInput", "to_nir", "from_nir", "Result", "energy_report", "validate",
    "SpikingModel", "InputSpec", "NeuronSpec", "Population", "Projection",
    "Dense", "Conv2d", "Sparse",
    "EvsnnError", "ModelError", "ConversionError", "InputError", "FormatError", "UnsupportedVersionError",
    "EngineError", "DependencyError", "EvsnnWarning", "AccuracyWarning",
]
