r"""Cross-validation: does a timestep simulator compute what the Brian2 reference computes?

:func:`validate` runs one model on one encoded input (produced once, from a
seed) through two simulators and reports, per population, how many
(sample, step, neuron) spikes are identical, the first step at which the
two diverge, the correlation of per-neuron spike counts, the agreement of
SOP counts per projection, and of predictions.
:func:`~evsnn.validation.convergence` (``convergence.py``) runs a timestep
engine against Brian2 at ``dt``, ``dt/10``, ``dt/100`` (the same input spike
times), to show how far the timestep answer is from the continuous-time one.

A simulator is a registered engine name (``"event"``, ``"brian2"``) or a
callable, so that simulators evsnn did not write can be validated::

    def my_simulator(model: SpikingModel, encoded: EncodedInput) -> Mapping[str, np.ndarray]:
        ...  # every population's spikes, shape (encoded.n_samples, encoded.steps, *population.shape)

The callable receives the whole :class:`~evsnn.encoding.EncodedInput` (input
spikes from ``encoded.spikes(0, n)`` or ``encoded.spike_events(0, n)``,
analog input from ``encoded.current(0, n)``) and returns, for every
population, its spikes as booleans (or 0/1) indexed (sample, step, neuron);
it may instead return a :class:`~evsnn.result.Result`. Its SOPs are counted
from its spikes with the engines' rule, and its predictions are the output
population's most-spiking neuron (ties to the lowest index); a ``membrane``
readout needs a Result for predictions.

Conventions (``docs/validation.md``):

- ``propagation="same_step"``: a delay-0 spike crosses every layer within its
  step (the event engine, SpikingJelly, snnTorch, sinabs);
- ``propagation="next_step"``: Brian2's default schedule, one step per
  layer. Brian2 runs it natively; every other simulator is handed the
  equivalent model, whose spike-carried projections have their delay raised
  by one step (:func:`next_step_model`).

The event engine runs with ``dense_above=1.0`` (its event loop only) unless
told otherwise: its dense BLAS path sums in another order, which in float64
can flip a spike whose potential lands within rounding of its threshold.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from ..encoding import EncodedInput, run_input
from ..errors import EngineError, InputError
from ..model import INPUT, Projection, SpikingModel
from ..energy.counting import sops_from_rasters
from ..result import Raster, Result
from ..settings import PROPAGATIONS, RunSettings
from ..simulation import simulate
from .report import Comparison, PopulationAgreement, SopAgreement, ValidationReport

__all__ = ["validate", "compare", "next_step_model", "Simulator"]

#: A simulator: a registered engine name, or a callable ``(model, encoded) -> {population: spikes}`` or Result.
Simulator = Union[str, Callable[[SpikingModel, EncodedInput], Any]]

_DEFAULT_OPTIONS = {"event": {"dense_above": 1.0}}


# ============================================================================================
# Running simulators
# ============================================================================================
@dataclass
class _Run:
    """What the comparison needs from one simulator: event keys per population, SOPs, predictions."""

    label: str
    samples: int
    steps: int
    keys: dict[str, np.ndarray]  # population -> sorted unique flat keys (sample * steps + step) * size + neuron
    counts: dict[str, np.ndarray]  # population -> spikes per (sample, neuron), shape (N, size)
    sops: dict[str, np.ndarray]  # projection -> (N, steps)
    predictions: np.ndarray | None
    settings: dict[str, Any]
    wall_time: float


def next_step_model(model: SpikingModel, *, spiking_input: bool) -> SpikingModel:
    """The model that a ``same_step`` simulator runs to reproduce Brian2's ``next_step`` schedule.

    Every spike-carried projection (from a population, or from the input when
    it is spikes) gets one more step of delay; analog input keeps its delay.
    """
    projections = [Projection(pr.name, pr.source, pr.target, pr.op,
                              pr.delay + (1 if pr.source != INPUT or spiking_input else 0))
                   for pr in model.projections]
    return model.replace(projections=projections)


def _label(sim: Simulator) -> str:
    return sim if isinstance(sim, str) else getattr(sim, "__name__", type(sim).__name__)


def _keys_from_raster(raster, steps: int) -> np.ndarray:
    return np.unique((raster.sample * steps + raster.step) * raster.n_neurons + raster.neuron)


def _run(sim: Simulator, model: SpikingModel, encoded: EncodedInput, *, propagation: str,
         settings: RunSettings) -> _Run:
    label = _label(sim)
    steps = encoded.steps
    is_brian2 = isinstance(sim, str) and sim.lower() == "brian2"
    run_model = model if is_brian2 or propagation == "same_step" else next_step_model(
        model, spiking_input=encoded.is_spiking)
    start = time.perf_counter()
    if isinstance(sim, str):
        opts = {**_DEFAULT_OPTIONS.get(sim.lower(), {}), **settings.engine_options(sim)}
        if is_brian2:
            opts.setdefault("propagation", propagation)
        result = simulate(run_model, encoded, engine=sim, dtype=settings.dtype, record="all",
                          batch_size=settings.batch_size, threads=settings.threads, progress=settings.progress,
                          options={sim.lower(): opts})
        return _from_result(label, result, steps, time.perf_counter() - start)
    if not callable(sim):
        raise InputError(f"validate: a simulator must be an engine name or a callable, got {sim!r}.")
    try:
        produced = sim(run_model, encoded)
    except Exception as err:  # the user's code: say whose it was, keep the original error
        raise EngineError(f"validate: simulator {label!r} raised {type(err).__name__}: {err}") from err
    wall = time.perf_counter() - start
    if isinstance(produced, Result):
        return _from_result(label, produced, steps, wall)
    return _from_spikes(label, produced, model, encoded, wall)


def _from_result(label: str, result: Result, steps: int, wall: float) -> _Run:
    missing = sorted(set(result.sizes) - set(result.rasters))
    if missing:
        raise InputError(f"validate: the Result of {label!r} must record every population's spikes "
                         f"(record='all'); missing: {missing}.")
    keys, counts = {}, {}
    for name, r in result.rasters.items():
        keys[name] = _keys_from_raster(r, steps)
        counts[name] = np.bincount(r.sample * r.n_neurons + r.neuron,  # a finer dt may spike twice in a step
                                   minlength=result.n_samples * r.n_neurons).reshape(result.n_samples, r.n_neurons)
    return _Run(label, result.n_samples, steps, keys, counts, dict(result.sops), result.predictions,
                dict(result.settings), wall)


def _from_spikes(label: str, produced: object, model: SpikingModel, encoded: EncodedInput, wall: float) -> _Run:
    where = f"validate: simulator {label!r}"
    if not isinstance(produced, Mapping):
        raise InputError(f"{where} must return a mapping population -> spikes or a Result, got "
                         f"{type(produced).__name__}.")
    n, steps = encoded.n_samples, encoded.steps
    names = [p.name for p in model.populations]
    unknown = sorted(set(produced) - set(names))
    missing = [p for p in names if p not in produced]
    if unknown or missing:
        raise InputError(f"{where} must return spikes for exactly the populations {names}; "
                         f"missing {missing}, unknown {unknown}.")
    keys, counts = {}, {}
    for pop in model.populations:
        try:
            arr = np.asarray(produced[pop.name])
        except Exception as err:
            raise InputError(f"{where}: spikes of {pop.name!r} must be an array, got "
                             f"{type(produced[pop.name]).__name__}.") from err
        want = (n, steps, *pop.shape)
        if arr.shape != want and arr.shape != (n, steps, pop.size):
            raise InputError(f"{where}: spikes of {pop.name!r} must have shape {want} (samples, steps, *shape), "
                             f"got {arr.shape}.")
        if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
            raise InputError(f"{where}: spikes of {pop.name!r} must be booleans or 0/1, got values "
                             f"{np.unique(arr)[:5].tolist()}.")
        flat = np.flatnonzero(arr.reshape(n * steps * pop.size))
        keys[pop.name] = flat  # already (sample, step, neuron)-ordered and unique
        counts[pop.name] = np.bincount((flat // (steps * pop.size)) * pop.size + flat % pop.size,
                                       minlength=n * pop.size).reshape(n, pop.size)
    rasters = {}
    for pop in model.populations:  # the keys are (sample, step, neuron)-ordered flat indices
        sample, rest = np.divmod(keys[pop.name], steps * pop.size)
        rasters[pop.name] = Raster(sample, *np.divmod(rest, pop.size), n_neurons=pop.size)
    spiking_input = encoded.is_spiking and any(pr.source == INPUT for pr in model.projections)
    sops = sops_from_rasters(model, rasters, n_samples=n, steps=steps,
                             input_events=encoded.spike_events(0, n) if spiking_input else None)
    predictions = counts[model.output].argmax(axis=1) if model.readout == "count" else None
    return _Run(label, n, steps, keys, counts, sops, predictions, {"simulator": label}, wall)


# ============================================================================================
# Comparing
# ============================================================================================
def compare(a: _Run | Result, b: _Run | Result, model: SpikingModel, *, propagation: str = "same_step",
            labels: tuple[str, str] | None = None, settings: Mapping[str, Any] | None = None) -> Comparison:
    """Compare two runs of ``model`` on the same input (Results with ``record="all"``, or internal runs).

    Useful to compare one reference run with several candidates without running the reference again.
    """
    runs = []
    for side, label in zip((a, b), labels or (None, None)):
        if isinstance(side, Result):
            side = _from_result(label or side.engine, side, side.steps, side.wall_time)
        elif label:
            side.label = label
        runs.append(side)
    a, b = runs
    if (a.samples, a.steps) != (b.samples, b.steps):
        raise InputError(f"compare: both runs must cover the same samples and steps, got {a.samples} x {a.steps} "
                         f"({a.label!r}) and {b.samples} x {b.steps} ({b.label!r}).")
    n, steps = a.samples, a.steps
    for run in (a, b):
        missing = [p.name for p in model.populations if p.name not in run.keys]
        if missing:
            raise InputError(f"compare: the run of {run.label!r} must hold spikes of every population of the "
                             f"model; missing {missing}. Compare runs of this model (record='all').")
    populations = []
    for pop in model.populations:
        ka, kb = a.keys[pop.name], b.keys[pop.name]
        both = np.intersect1d(ka, kb, assume_unique=True)
        differ = np.setxor1d(ka, kb, assume_unique=True)
        either = ka.size + kb.size - both.size
        first_step = first_sample = None
        if differ.size:
            sample, rest = np.divmod(differ, steps * pop.size)
            step = rest // pop.size
            first_step = int(step.min())
            first_sample = int(sample[step == first_step].min())
        ca, cb = a.counts[pop.name].ravel(), b.counts[pop.name].ravel()
        populations.append(PopulationAgreement(
            name=pop.name, spikes_a=int(ka.size), spikes_b=int(kb.size), identical=int(both.size),
            agreement=1.0 if either == 0 else both.size / either, first_divergence=first_step,
            first_divergence_sample=first_sample, count_correlation=_correlation(ca, cb)))
    sops = []
    for name in a.sops:
        if name not in b.sops:
            continue
        sa, sb = a.sops[name], b.sops[name]
        sops.append(SopAgreement(name=name, sops_a=int(sa.sum()), sops_b=int(sb.sum()),
                                 equal_fraction=float(np.mean(sa == sb)) if sa.size else 1.0))
    st = {**(settings or {}), "dtype_a": a.settings.get("dtype", "n/a"), "dtype_b": b.settings.get("dtype", "n/a")}
    return Comparison(a=a.label, b=b.label, propagation=propagation, samples=int(n), steps=int(steps), settings=st,
                      populations=tuple(populations), sops=tuple(sops), predictions_a=a.predictions,
                      predictions_b=b.predictions, wall_time={a.label: a.wall_time, b.label: b.wall_time})


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    if np.array_equal(x, y):
        return 1.0
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


# ============================================================================================
# Entry points
# ============================================================================================
def _propagations(propagation: str | Sequence[str], where: str) -> tuple[str, ...]:
    props = (propagation,) if isinstance(propagation, str) else tuple(propagation)
    if not props or any(p not in PROPAGATIONS for p in props):
        raise InputError(f"{where}: propagation must be 'same_step', 'next_step' or a sequence of them, "
                         f"got {propagation!r}.")
    return props


def validate(
    model: SpikingModel,
    x: np.ndarray | EncodedInput,
    engines: Sequence[Simulator] = ("event", "brian2"),
    *,
    dtype: str | Sequence[str] = "float64",
    propagation: str | Sequence[str] = "same_step",
    **settings: Any,
) -> ValidationReport:
    """Run ``model`` on the same input through two simulators and compare them spike for spike.

    Parameters
    ----------
    model : SpikingModel
    x : array of shape (N, *model.input.shape), or EncodedInput
        Raw input, encoded once here with the run settings, or input already encoded.
    engines : pair of simulators, default=("event", "brian2")
        Each a registered engine name or a callable
        ``(model, encoded) -> {population name: spikes of shape (N, steps, *shape)}``
        (or returning a Result); see the module docstring.
    dtype : str or (str, str), default="float64"
        Precision of each engine (one for both, or one per engine); ignored for
        callables. The default is float64, not the float32 of :func:`~evsnn.simulate`,
        because spike-for-spike equality is defined in float64: in float32 a
        potential within rounding of its threshold spikes in one summation order
        and not in another.
    propagation : {"same_step", "next_step"} or a sequence of them
        Convention(s) to compare under; one :class:`Comparison` each.
    **settings
        The other run settings (:class:`evsnn.settings.RunSettings`): ``steps``
        (required unless ``x`` is an EncodedInput), ``encoding``, ``seed``,
        ``max_rate``, ``scale``, ``batch_size``, ``progress``, ``options`` (per
        engine name, e.g. ``{"brian2": {"codegen": "cython"}}``; the event
        engine defaults to ``dense_above=1.0``).

    Returns
    -------
    ValidationReport
        ``.table()`` for reading, ``.to_dict()`` for JSON, ``.identical`` for a verdict.

    Raises
    ------
    InputError
        Bad input, a bad convention, or a callable returning the wrong thing.
    EngineError
        An engine cannot run the model (e.g. SRM on the event engine), or a callable raised.
    """
    where = "validate"
    engines = tuple(engines)
    if len(engines) != 2:
        raise InputError(f"{where}: engines must be two simulators, got {len(engines)}.")
    dtypes = (dtype, dtype) if isinstance(dtype, str) else tuple(dtype)
    if len(dtypes) != 2:
        raise InputError(f"{where}: dtype must be a string or one per engine, got {dtype!r}.")
    props = _propagations(propagation, where)
    run, encoded = run_input(model, x, where=where, dtype=dtypes[0], **settings)
    per_engine = (run, dataclasses.replace(run, dtype=dtypes[1], where=where))
    comparisons = []
    for prop in props:
        runs = [_run(sim, model, encoded, propagation=prop, settings=st) for sim, st in zip(engines, per_engine)]
        settings = {**run.record(encoded), "dtype": list(dtypes), "dt": model.dt, "samples": encoded.n_samples,
                    "settings_a": runs[0].settings, "settings_b": runs[1].settings}
        comparisons.append(compare(runs[0], runs[1], model, propagation=prop, settings=settings))
    return ValidationReport(tuple(comparisons))
