"""One exception hierarchy for evsnn.

Each class also inherits the built-in exception it specialises, so that
``except ValueError`` (or ``OSError``) in user code keeps working::

    EvsnnError
    ├── ModelError(ValueError)         invalid IR / failed validation
    ├── ConversionError(ValueError)    unsupported layer or activation
    ├── InputError(ValueError)         simulation input: shape, NaN, steps, rates
    ├── FormatError(OSError)           unreadable file, bad encoding
    │   └── UnsupportedVersionError    newer or unknown format/encoding version
    └── EngineError(RuntimeError)      unknown or misconfigured engine
        └── DependencyError(ImportError)   a missing optional dependency (brian2, matplotlib)
"""

from __future__ import annotations

__all__ = [
    "EvsnnError",
    "ModelError",
    "ConversionError",
    "InputError",
    "FormatError",
    "UnsupportedVersionError",
    "EngineError",
    "DependencyError",
    "EvsnnWarning",
    "AccuracyWarning",
]


class EvsnnError(Exception):
    """Base class of every error raised by evsnn."""


class ModelError(EvsnnError, ValueError):
    """A :class:`~evsnn.SpikingModel` (or one of its parts) is invalid."""


class ConversionError(EvsnnError, ValueError):
    """A network cannot be converted (unsupported layer, activation or shape)."""


class InputError(EvsnnError, ValueError):
    """Simulation input is invalid: wrong shape, NaN, negative rates, steps <= 0."""


class FormatError(EvsnnError, OSError):
    """A file cannot be read: not HDF5, truncated, or not a valid evsnn/IDX file.

    The message names the file and the path inside it.
    """

    def __str__(self) -> str:  # OSError would otherwise format (errno, strerror) pairs
        return str(self.args[0]) if self.args else ""


class UnsupportedVersionError(FormatError):
    """The file was written by a newer (or unknown) version of the format."""


class EngineError(EvsnnError, RuntimeError):
    """A simulation engine is unknown, misconfigured or missing a dependency."""


class DependencyError(EngineError, ImportError):
    """An optional dependency is missing (matplotlib for plots, an engine's simulator); the message says how to install it.

    An EngineError, so that code catching a missing engine dependency keeps working.
    """


class EvsnnWarning(UserWarning):
    """Base class of every warning issued by evsnn."""


class AccuracyWarning(EvsnnWarning):
    """A setting is likely to cost accuracy (e.g. clipped input rates)."""
