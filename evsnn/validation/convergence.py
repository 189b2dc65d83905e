"""dt convergence: a timestep engine at the model's ``dt`` against Brian2 at ``dt / k`` (docs/validation.md)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..encoding import EncodedInput, run_input
from ..errors import InputError
from ..model import SpikingModel
from .report import ConvergenceReport
from .runners import _label, _propagations, _run

__all__ = ["convergence"]


def convergence(
    model: SpikingModel,
    x: np.ndarray | EncodedInput,
    *,
    engine: str = "event",
    factors: Sequence[int] = (1, 10, 100),
    dtype: str = "float64",
    propagation: str = "same_step",
    **settings: Any,
) -> ConvergenceReport:
    """A timestep engine at the model's ``dt`` against Brian2 at ``dt / k`` for each ``k`` in ``factors``.

    Brian2 sees the same input spike times (a spike of step ``t`` arrives at
    the end of step ``t``) and currents in the same units (see :mod:`evsnn.engines.brian2`, "Finer dt").
    Per population it reports both rates in spikes per neuron per model step,
    the mean absolute difference of per-neuron rates, and the relative
    difference of the total rate; per ``k`` the fraction of samples whose
    prediction matches the timestep result's.

    Parameters
    ----------
    engine : str, default="event"
        The timestep engine (``"brian2"`` itself for models the event engine
        does not simulate, such as SRM).
    factors : sequence of int, default=(1, 10, 100)
        Brian2 runs at ``model.dt / k``.
    propagation : {"same_step", "next_step"}
    Other parameters as :func:`validate` (``dtype``, default float64 for the same
    reason, is the timestep engine's; Brian2 runs in float64; ``options["brian2"]``
    applies to every Brian2 run, whose ``dt`` is set here).

    Returns
    -------
    ConvergenceReport
    """
    where = "convergence"
    (prop,) = _propagations(propagation, where)
    ks = []
    for k in factors:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"{where}: factors must be positive integers, got {k!r}.")
        ks.append(int(k))
    run, encoded = run_input(model, x, where=where, dtype=dtype, **settings)
    n, steps_ = encoded.n_samples, encoded.steps
    base = _run(engine, model, encoded, propagation=prop, settings=run)
    rows, predictions = [], []
    for k in ks:
        fine = {**run.options, "brian2": {**run.engine_options("brian2"), "dt": model.dt / k}}
        ref = _run("brian2", model, encoded, propagation=prop,
                   settings=dataclasses.replace(run, dtype="float64", options=fine, where=where))
        for pop in model.populations:
            if model.readout == "membrane" and pop.name == model.output:
                continue
            ra, rb = base.counts[pop.name] / steps_, ref.counts[pop.name] / steps_
            total_b = rb.mean()
            rows.append({"k": k, "brian2_dt": model.dt / k, "population": pop.name, "rate_engine": float(ra.mean()),
                         "rate_brian2": float(total_b), "rate_error": float(np.abs(ra - rb).mean()),
                         "relative_error": float(abs(ra.mean() - total_b) / total_b) if total_b else
                         (0.0 if ra.mean() == 0 else math.inf)})
        agree = float(np.mean(base.predictions == ref.predictions)) if base.predictions is not None else math.nan
        predictions.append({"k": k, "prediction_agreement": agree, "wall_time_s": ref.wall_time})
    settings = {**run.record(encoded), "dt": model.dt, "propagation": prop, "factors": ks}
    return ConvergenceReport(engine=_label(engine), samples=n, steps=steps_, settings=settings, rows=tuple(rows),
                             predictions=tuple(predictions))

