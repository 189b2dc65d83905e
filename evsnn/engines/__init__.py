"""Simulation engines, found by name in a registry (Brian2's ``StateUpdateMethod.register`` style).

Every engine takes the same :class:`~evsnn.SpikingModel` and the same
:class:`~evsnn.encoding.EncodedInput` and returns the same
:class:`~evsnn.result.Result` (through :func:`evsnn.simulate`).
"""

from __future__ import annotations

import importlib

from ..errors import DependencyError, EngineError

__all__ = ["register_engine", "get_engine", "available_engines"]

_ENGINES: dict[str, type] = {}
#: Built-in engines imported on first request (``import evsnn`` must not import brian2 or torch, which are slow).
_LAZY = {"brian2": "evsnn.engines.brian2", "torch": "evsnn.engines.timestep"}


def register_engine(name: str, cls: type) -> None:
    """Register an engine class under a lowercase ``name``; a name can be registered once."""
    key = name.lower()
    if key in _ENGINES and _ENGINES[key] is not cls:
        raise EngineError(f"Engine {key!r} is already registered (by {_ENGINES[key].__name__}).")
    _ENGINES[key] = cls


def get_engine(name: str) -> type:
    """The engine class registered as ``name``."""
    _load_builtin()
    key = str(name).lower()
    if key not in _ENGINES and key in _LAZY:
        try:
            importlib.import_module(_LAZY[key])  # registers it
        except ImportError as err:
            raise DependencyError(f"Engine {key!r} could not be imported ({err}); install its dependencies.") \
                from err
    if key not in _ENGINES:
        names = ", ".join(repr(n) for n in available_engines())
        raise EngineError(f"Engine {name!r} is not registered; available: {names}.")
    return _ENGINES[key]


def available_engines() -> tuple[str, ...]:
    """Registered engine names, sorted."""
    _load_builtin()
    return tuple(sorted(set(_ENGINES) | set(_LAZY)))


def _load_builtin() -> None:
    from . import event  # noqa: F401  (registers "event")
