"""The run settings every public run function takes, and the one check of sample arrays.

:func:`~evsnn.simulate`, :func:`~evsnn.validate`, :func:`~evsnn.validation.convergence`,
:func:`~evsnn.sweep.sweep` and the CLI subcommands take the same settings under
the same names: ``steps`` (required, no default), ``encoding``, ``seed``,
``max_rate``, ``scale`` (``None``: the model's :class:`~evsnn.InputSpec`),
``dtype``, ``batch_size``, ``threads``, ``progress`` and ``options`` (engine options per
engine name, e.g. ``{"brian2": {"codegen": "numpy"}, "event": {"dense_above": 1.0}}``).
Each function takes them as keyword arguments (``**settings``) and builds a
:class:`RunSettings` with :func:`run_settings`, so that the names, the defaults,
the rules and the messages live here once. Sample arrays given to any of them,
or to the converters' calibration, go through :func:`check_samples`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field, fields
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import InputError
from .threads import available_cores

__all__ = ["RunSettings", "run_settings", "check_samples", "DTYPES", "ENCODINGS", "PROPAGATIONS"]

#: Input encodings (:attr:`evsnn.InputSpec.encoding`).
ENCODINGS = ("current", "poisson", "regular")
#: Floating precisions an engine computes in.
DTYPES = ("float32", "float64")
#: Propagation conventions: a delay-0 spike crosses every layer within its step, or one layer per step (Brian2's).
PROPAGATIONS = ("same_step", "next_step")


def _is_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


@dataclass(frozen=True)
class RunSettings:
    """Validated settings of one run (see the module docstring for who takes them).

    Parameters
    ----------
    steps : int
        Simulation steps, > 0. Required: there is no default number of steps.
    encoding : {"current", "poisson", "regular"}, optional
        Default: the model's.
    seed : int, default=0
        Seed of the ``poisson`` encoding, >= 0.
    max_rate : float, Hz, optional
        Rate of an input of value 1, > 0. Default: the model's.
    scale : float, optional
        Gain of the ``current`` encoding. Default: the model's.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the engines.
    batch_size : int, default=64
        Samples simulated together.
    threads : int, optional
        Cores a batch is split over (results do not depend on it); BLAS and
        torch get as many (:func:`evsnn.threads.limit_threads`). Default: all
        cores this process may use (:func:`evsnn.threads.available_cores`).
    progress : bool, default=False
        Show a progress bar.
    options : mapping of engine name -> mapping, optional
        Options of each engine, used when that engine runs (the others' are ignored).
    where : str
        Who is asking (``"simulate"``, ``"validate"``, ...), for messages; not stored.

    Raises
    ------
    InputError
        Naming ``where`` and the parameter.
    """

    steps: int
    encoding: str | None = None
    seed: int = 0
    max_rate: float | None = None
    scale: float | None = None
    dtype: str = "float32"
    batch_size: int = 64
    threads: int | None = None
    progress: bool = False
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    where: InitVar[str] = "RunSettings"

    def __post_init__(self, where: str) -> None:
        def fail(name: str, need: str, value: object, example: str) -> None:
            raise InputError(f"{where}: {name} must be {need}, got {value!r}. Pass e.g. {example}.")

        if self.steps is None:
            raise InputError(f"{where}: steps must be given, e.g. steps=100.")
        if not _is_int(self.steps) or self.steps < 1:
            fail("steps", "a positive integer", self.steps, "steps=100")
        if self.encoding is not None and (not isinstance(self.encoding, str) or self.encoding not in ENCODINGS):
            fail("encoding", f"one of {', '.join(map(repr, ENCODINGS))}", self.encoding, "encoding='poisson'")
        if not _is_int(self.seed) or self.seed < 0:
            fail("seed", "a non-negative integer", self.seed, "seed=0")
        for name, positive in (("max_rate", True), ("scale", False)):
            value = getattr(self, name)
            if value is None:
                continue
            ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
            if not ok or not math.isfinite(float(value)) or (positive and float(value) <= 0):
                fail(name, "a finite number > 0" if positive else "a finite number", value,
                     f"{name}={1000.0 if positive else 1.0}")
            object.__setattr__(self, name, float(value))
        if str(self.dtype) not in DTYPES:
            fail("dtype", "'float32' or 'float64'", self.dtype, "dtype='float64'")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            fail("batch_size", "a positive integer", self.batch_size, "batch_size=64")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            fail("threads", "a positive integer", self.threads, "threads=2")
        if not isinstance(self.progress, (bool, np.bool_)):
            fail("progress", "True or False", self.progress, "progress=True")
        object.__setattr__(self, "steps", int(self.steps))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "dtype", str(self.dtype))
        object.__setattr__(self, "batch_size", int(self.batch_size))
        object.__setattr__(self, "threads", available_cores() if self.threads is None else int(self.threads))
        object.__setattr__(self, "progress", bool(self.progress))
        object.__setattr__(self, "options", _check_options(self.options, where))

    def engine_options(self, engine: str) -> dict[str, Any]:
        """The options given for ``engine`` (a copy; empty when none)."""
        return dict(self.options.get(str(engine).lower(), {}))

    def record(self, encoded: Any) -> dict[str, Any]:
        """The settings as a Result or report records them, with the model's defaults resolved by ``encoded``.

        ``encoded`` is the :class:`~evsnn.encoding.EncodedInput` the run used;
        its encoding, seed, rate and scale are the ones that ran.
        """
        return {"steps": encoded.steps, "encoding": encoded.encoding, "seed": encoded.seed,
                "max_rate": encoded.max_rate, "scale": encoded.scale, "dtype": self.dtype,
                "batch_size": self.batch_size}


def run_settings(where: str, settings: Mapping[str, Any]) -> RunSettings:
    """A :class:`RunSettings` from the keyword arguments of the public function ``where``.

    An unknown name is an InputError that lists the settings (engine options,
    such as ``dense_above``, go in ``options={engine: {...}}``).
    """
    names = [f.name for f in fields(RunSettings)]
    unknown = sorted(set(settings) - set(names))
    if unknown:
        raise InputError(f"{where}: {unknown[0]!r} is not a run setting; the settings are {', '.join(names)}. "
                         "Pass engine options as options={engine: {name: value}}, e.g. "
                         "options={'event': {'dense_above': 1.0}}.")
    return RunSettings(**{"steps": None, **settings}, where=where)  # no steps: "steps must be given"


def _check_options(options: object, where: str) -> Mapping[str, Mapping[str, Any]]:
    """``options`` as a read-only mapping engine name -> read-only mapping of option name -> value."""
    from .engines import available_engines

    if options is None:
        return MappingProxyType({})
    example = "options={'brian2': {'codegen': 'numpy'}}"
    if not isinstance(options, Mapping):
        raise InputError(f"{where}: options must be a mapping engine name -> dict of engine options, got "
                         f"{type(options).__name__}. Pass e.g. {example}.")
    known = available_engines()
    out = {}
    for name, opts in options.items():
        if not isinstance(name, str) or name.lower() not in known:
            raise InputError(f"{where}: options must be keyed by engine names ({', '.join(map(repr, known))}), "
                             f"got {name!r}. Pass e.g. {example}.")
        if not isinstance(opts, Mapping) or not all(isinstance(k, str) for k in opts):
            raise InputError(f"{where}: options[{name!r}] must be a dict of option name -> value, got {opts!r}. "
                             f"Pass e.g. {example}.")
        out[name.lower()] = MappingProxyType(dict(opts))
    return MappingProxyType(out)


def check_samples(x: object, model: Any, *, where: str, name: str = "x") -> np.ndarray:
    """``x`` as a new float64 array of shape ``(N, *model.input.shape)``, checked: numeric, finite, N >= 1.

    The one check of sample arrays (simulation input, calibration samples,
    the inputs of an energy report), in the style of scikit-learn's ``check_array``.

    Parameters
    ----------
    x : array_like
        What the user gave.
    model : SpikingModel
        Gives the shape of one sample (``model.input.shape``).
    where : str
        Who is asking, e.g. ``"encode"`` or ``"convert"``.
    name : str, default="x"
        What ``x`` is called there, e.g. ``"calibration samples"``.

    Raises
    ------
    InputError
        Naming ``where`` and ``name``: not numeric, wrong shape (a single sample
        is told to add a batch axis), no samples, NaN or infinite values.
    """
    shape = tuple(model.input.shape)
    try:
        arr = np.asarray(x)
    except Exception as err:  # ragged lists, objects numpy cannot convert
        raise InputError(f"{where}: {name} must be a numeric array, got {type(x).__name__}. "
                         "Pass a numpy array.") from err
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{where}: {name} must be a real numeric array, got dtype {arr.dtype}. "
                         "Convert it with np.asarray(x, dtype=float).")
    want = "(N, " + ", ".join(map(str, shape)) + ")"
    if arr.shape == shape:
        raise InputError(f"{where}: {name} must have shape {want} (a batch of the model's input shape {shape}), "
                         f"got {arr.shape}, a single sample. Add a batch axis, e.g. x[None].")
    if arr.shape[1:] != shape:
        raise InputError(f"{where}: {name} must have shape {want} (a batch of the model's input shape {shape}), "
                         f"got {arr.shape}. Reshape it to (-1, {', '.join(map(str, shape))}).")
    if arr.shape[0] == 0:
        raise InputError(f"{where}: {name} must hold at least one sample, got shape {arr.shape}. "
                         "Pass a non-empty batch.")
    out = np.array(arr, dtype=np.float64, order="C", copy=True)
    finite = np.isfinite(out)
    if not finite.all():
        bad = int(out.size - np.count_nonzero(finite))
        raise InputError(f"{where}: {name} must be finite, got {bad} NaN/inf value(s). "
                         "Clean the input, e.g. with np.nan_to_num(x).")
    return out
