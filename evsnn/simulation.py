"""``evsnn.simulate``: run a model on encoded input with a registered engine."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .encoding import EncodedInput, run_input
from .engines import get_engine
from .errors import InputError
from .model import SpikingModel
from .result import Raster, Result
from .threads import limit_threads

__all__ = ["simulate"]


def simulate(
    model: SpikingModel,
    x: np.ndarray | EncodedInput,
    *,
    engine: str = "event",
    record: Iterable[str] = (),
    **settings: Any,
) -> Result:
    """Simulate ``model`` on ``x`` and return a :class:`~evsnn.result.Result`.

    Parameters
    ----------
    model : SpikingModel
    x : array of shape (N, *model.input.shape), or EncodedInput
        Raw input (encoded here with ``steps``, ``encoding``, ``seed``,
        ``max_rate``, ``scale``), or input already encoded by
        :func:`evsnn.encoding.encode`, to hand the identical spikes to several engines.
    engine : str, default="event"
        A registered engine name (:func:`evsnn.engines.available_engines`).
    record : iterable of str
        Populations whose spike rasters to keep (``"all"`` for every one).
    **settings
        The run settings (:class:`evsnn.settings.RunSettings`): ``steps``
        (required unless ``x`` is an EncodedInput), ``encoding``, ``seed``,
        ``max_rate``, ``scale`` (default: the model's InputSpec), ``dtype``
        (default "float32"), ``batch_size`` (default 64; results do not depend
        on it, except for float32 rounding when the event engine switches to
        dense BLAS), ``threads`` (cores a batch is split over, default all;
        results do not depend on it), ``progress`` (a bar over samples) and ``options``:
        ``options[engine]`` is passed to the engine (e.g. ``{"event":
        {"dense_above": 1.0}}``, or ``propagation``, ``codegen`` and ``dt`` for
        ``"brian2"``); other engines' options are ignored.

    Returns
    -------
    Result

    Raises
    ------
    InputError
        Bad input, steps or batch size. Nothing partial is returned.
    EngineError
        Unknown engine or a model feature the engine does not support.
    """
    run, encoded = run_input(model, x, where="simulate", **settings)
    batch_size = run.batch_size
    names = [p.name for p in model.populations]
    record = frozenset(names if record == "all" or "all" in set(record) else record)
    unknown = sorted(record - set(names))
    if unknown:
        raise InputError(f"simulate: record must name populations of the model {names}, got {unknown}.")

    start_setup = time.perf_counter()
    runner = get_engine(engine)(model, dtype=run.dtype, **run.engine_options(engine))
    runner.threads = run.threads
    runner.check_memory(encoded, batch_size, record)  # refuse a run that cannot fit, before it allocates
    runner.prepare(encoded)
    setup_time = time.perf_counter() - start_setup

    start = time.perf_counter()
    parts = []
    n = encoded.n_samples
    with limit_threads(run.threads), \
            tqdm(total=n, desc=f"simulate ({engine})", unit="sample", disable=not run.progress, leave=False) as bar:
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            parts.append(runner.run_batch(encoded, lo, hi, record))
            bar.update(hi - lo)
    wall = time.perf_counter() - start

    def cat(field: str) -> dict[str, np.ndarray]:
        return {k: np.concatenate([getattr(p, field)[k] for p in parts]) for k in getattr(parts[0], field)}

    output = np.concatenate([p.output for p in parts])
    final = output.sum(axis=1) if model.readout == "count" else output[:, -1]
    rasters = {}
    for name in sorted(record):
        events = [e for p in parts for e in p.rasters[name]]
        arrays = [np.concatenate([e[k] for e in events]).astype(np.int64) if events else np.zeros(0, np.int64)
                  for k in range(3)]
        order = np.lexsort((arrays[2], arrays[1], arrays[0]))
        rasters[name] = Raster(*(a[order] for a in arrays), n_neurons=model.population(name).size)
    return Result(
        engine=engine,
        settings={**run.record(encoded), "dt": model.dt, "readout": model.readout, **runner.settings},
        predictions=final.argmax(axis=1),
        output=output,
        spike_counts=cat("spike_counts"),
        sops=cat("sops"),
        sops_nominal=cat("sops_nominal"),
        input_macs=cat("input_macs"),
        rasters=rasters,
        sizes={p.name: p.size for p in model.populations},
        wall_time=wall,
        setup_time=setup_time,
    )
