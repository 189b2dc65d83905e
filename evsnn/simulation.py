"""``evsnn.simulate``: run a model on encoded input with a registered engine."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .encoding import EncodedInput, run_input
from .engines import get_engine, memory
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
    client: Any = None,
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
    client : distributed.Client, optional
        Run on Dask: the model is sent to the cluster once, the samples are
        cut into shards of whole batches (one per worker thread), one task
        each, and the shards' records are merged into a Result identical to a
        serial run's (docs/scaling.md). ``wall_time`` is then the seconds from the
        first shard submitted to the last one back (input and results shipped,
        each shard's engine set-up on its worker included), ``setup_time`` the
        seconds until the model is held on the cluster (workers then copy it
        from each other).

    Returns
    -------
    Result

    Raises
    ------
    InputError
        Bad input, steps or batch size. Nothing partial is returned.
    EngineError
        Unknown engine or a model feature the engine does not support.
    DependencyError
        A ``client`` given without dask and distributed installed.
    """
    run, encoded = run_input(model, x, where="simulate", **settings)
    names = [p.name for p in model.populations]
    record = frozenset(names if record == "all" or "all" in set(record) else record)
    unknown = sorted(record - set(names))
    if unknown:
        raise InputError(f"simulate: record must name populations of the model {names}, got {unknown}.")
    engine_kwargs = {"dtype": run.dtype, **run.engine_options(engine)}
    if client is None:
        parts, engine_settings, setup_time, wall = _run_shard(model, encoded, 0, engine, engine_kwargs,
                                                              run.batch_size, record, threads=run.threads,
                                                              progress=run.progress)
    else:
        parts, engine_settings, setup_time, wall = _run_on_dask(client, model, encoded, engine, engine_kwargs,
                                                                run.batch_size, record, progress=run.progress)

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
        settings={**run.record(encoded), "dt": model.dt, "readout": model.readout, **engine_settings},
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


def _run_shard(model: SpikingModel, encoded: EncodedInput, first: int, engine: str, engine_kwargs: dict[str, Any],
               batch_size: int, record: frozenset[str], *, threads: int = 1,
               progress: bool = False) -> tuple[list, dict, float, float]:
    """Samples of ``encoded`` (sample ``first`` of the whole run onwards) in batches on ``threads`` cores:
    ``(parts, engine settings, set-up seconds, simulation seconds)``; the parts' raster sample indices count
    from the start of the whole run.

    What a serial :func:`simulate` runs on all samples, and a Dask worker on its shard (with one thread: a
    worker runs one shard per thread).
    """
    start_setup = time.perf_counter()
    runner = get_engine(engine)(model, **engine_kwargs)
    runner.threads = threads
    runner.check_memory(encoded, batch_size, record)  # refuse a run that cannot fit, before it allocates
    runner.prepare(encoded, min(batch_size, encoded.n_samples))
    setup_time = time.perf_counter() - start_setup

    start = time.perf_counter()
    parts = []
    n = encoded.n_samples
    with limit_threads(threads), \
            tqdm(total=n, desc=f"simulate ({engine})", unit="sample", disable=not progress, leave=False) as bar:
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            parts.append(runner.run_batch(encoded, lo, hi, record))
            bar.update(hi - lo)
    wall = time.perf_counter() - start
    if first:
        for part in parts:
            part.rasters = {name: [(sample + first, *rest) for sample, *rest in events]
                            for name, events in part.rasters.items()}
    return parts, runner.settings, setup_time, wall


def _run_on_dask(client: Any, model: SpikingModel, encoded: EncodedInput, engine: str, engine_kwargs: dict[str, Any],
                 batch_size: int, record: frozenset[str], *, progress: bool) -> tuple[list, dict, float, float]:
    """:func:`_run_shard` on shards of whole batches, one task each, the model sent once (:func:`~evsnn.cluster.ship`).

    Shards start at multiples of ``batch_size``, so every batch is the one a serial run simulates and the
    merged parts are identical to a serial run's. Returns ``(parts, engine settings, seconds to ship the model,
    seconds from the first shard submitted to the last one back)``.
    """
    from .cluster import check_client, large_graph_intended, ship, total_threads

    check_client(client, "simulate")
    from distributed import as_completed, wait

    n = encoded.n_samples
    memory.check_memory({"per-step records of all samples": 2 * memory.result_bytes(
        model, n, encoded.steps, record, encoded.is_spiking)}, where="simulate",
        advice=f"The merged Result of {n} samples must fit in this process; simulate fewer samples at a time.")
    batches = -(-n // batch_size)
    shards = min(batches, total_threads(client))  # one per worker thread, sizes within one batch of each other
    cuts = [min(n, batch_size * (batches * k // shards)) for k in range(shards + 1)]

    start = time.perf_counter()
    shipped = ship(client, model)  # once, not per task
    wait(shipped)
    setup_time = time.perf_counter() - start
    start = time.perf_counter()
    # one shard per worker thread, placed explicitly: Dask would otherwise run every shard where the model is
    # (data locality) and leave the other workers idle; any worker may still take a shard (a lost worker's)
    places = [address for address, threads in client.nthreads().items() for _ in range(threads)]
    with large_graph_intended():  # each shard's input rows travel with its task
        futures = [client.submit(_run_shard, shipped, encoded.select(lo, hi), lo, engine, engine_kwargs, batch_size,
                                 record, pure=False, workers=places[k % len(places)] if places else None,
                                 allow_other_workers=True)
                   for k, (lo, hi) in enumerate(zip(cuts, cuts[1:]))]
    try:
        with tqdm(total=n, desc=f"simulate ({engine}, Dask)", unit="sample", disable=not progress,
                  leave=False) as bar:
            for future in as_completed(futures):
                parts = future.result()[0]  # a worker's error is raised here, at once
                bar.update(sum(p.output.shape[0] for p in parts))
        shards_out = [f.result() for f in futures]
    finally:
        client.cancel(futures + [shipped])
    wall = time.perf_counter() - start
    return [p for out in shards_out for p in out[0]], shards_out[0][1], setup_time, wall
