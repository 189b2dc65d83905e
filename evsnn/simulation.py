"""``evsnn.simulate``: run a model on encoded input with a registered engine."""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
from tqdm.auto import tqdm

from .encoding import EncodedInput, encode
from .engines import get_engine
from .errors import InputError
from .model import SpikingModel
from .result import Raster, Result

__all__ = ["simulate"]


def simulate(
    model: SpikingModel,
    x: np.ndarray | EncodedInput,
    *,
    engine: str = "event",
    steps: int | None = None,
    encoding: str | None = None,
    seed: int = 0,
    max_rate: float | None = None,
    scale: float | None = None,
    batch_size: int = 64,
    record: Iterable[str] = (),
    dtype: str = "float32",
    progress: bool = False,
    **engine_options,
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
    steps : int
        Number of steps (required unless ``x`` is an EncodedInput).
    encoding, max_rate, scale : optional
        Override the model's InputSpec.
    seed : int, default=0
        Seed of the Poisson encoder.
    batch_size : int, default=64
        Samples simulated together; results do not depend on it (except for
        float32 rounding when the event engine switches to dense BLAS).
    record : iterable of str
        Populations whose spike rasters to keep (``"all"`` for every one).
    dtype : {"float32", "float64"}
    progress : bool
        Show a progress bar over samples.
    **engine_options
        Passed to the engine (e.g. ``dense_above`` for ``"event"``; ``propagation``,
        ``codegen`` and ``dt`` for ``"brian2"``).

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
    if isinstance(x, EncodedInput):
        if steps is not None and steps != x.steps:
            raise InputError(f"simulate: steps must match the encoded input's {x.steps}, got {steps}. "
                             "Leave steps out when passing an EncodedInput.")
        if x.input_shape != model.input.shape or x.dt != model.dt:
            raise InputError(
                f"simulate: the encoded input must be made for this model (input shape {model.input.shape}, "
                f"dt {model.dt:g} s), got input shape {x.input_shape} and dt {x.dt:g} s. "
                "Encode it with evsnn.encoding.encode(model, ...)."
            )
        encoded = x
    else:
        if steps is None:
            raise InputError("simulate: steps must be given, e.g. steps=100.")
        encoded = encode(model, x, steps=steps, encoding=encoding, seed=seed, max_rate=max_rate, scale=scale)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"simulate: batch_size must be a positive integer, got {batch_size!r}.")
    names = [p.name for p in model.populations]
    record = frozenset(names if record == "all" or "all" in set(record) else record)
    unknown = sorted(record - set(names))
    if unknown:
        raise InputError(f"simulate: record must name populations of the model {names}, got {unknown}.")

    start_setup = time.perf_counter()
    runner = get_engine(engine)(model, dtype=dtype, **engine_options)
    runner.check_memory(encoded, batch_size, record)  # refuse a run that cannot fit, before it allocates
    runner.prepare(encoded)
    setup_time = time.perf_counter() - start_setup

    start = time.perf_counter()
    parts = []
    n = encoded.n_samples
    with tqdm(total=n, desc=f"simulate ({engine})", unit="sample", disable=not progress, leave=False) as bar:
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
        settings={"steps": encoded.steps, "dt": model.dt, "encoding": encoded.encoding, "seed": encoded.seed,
                  "max_rate": encoded.max_rate, "scale": encoded.scale, "batch_size": int(batch_size),
                  "readout": model.readout, **runner.settings},
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
