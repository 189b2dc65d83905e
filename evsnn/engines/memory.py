"""Memory estimates of a run, checked before anything large is allocated.

An engine estimates, item by item, the bytes a run will hold at its peak
(:meth:`~evsnn.engines.base.Engine.memory_estimate`): its connectivity
tables, the input and working arrays of one batch, and the per-step records
kept for every sample until the :class:`~evsnn.result.Result` is assembled.
:func:`check_memory` compares the total with the memory available and
refuses with an :class:`~evsnn.errors.EngineError` naming the largest items
and what to reduce, instead of letting numpy raise ``MemoryError`` (or the
system swap) half-way through.

The available memory is ``MemAvailable`` of ``/proc/meminfo`` (physical
memory where that file is missing), or the environment variable
``EVSNN_MEMORY_LIMIT`` (bytes, or with a ``K``/``M``/``G``/``T`` suffix).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import numpy as np

from ..encoding import EncodedInput
from ..errors import EngineError, InputError
from ..model import INPUT, SpikingModel

__all__ = ["MEMORY_LIMIT_ENV", "RASTER_DENSITY", "available_memory", "check_memory", "format_bytes",
           "result_bytes", "input_bytes"]

MEMORY_LIMIT_ENV = "EVSNN_MEMORY_LIMIT"
#: Spikes per neuron and step assumed for recorded rasters (their size is unknown before the run).
RASTER_DENSITY = 0.2
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def available_memory() -> tuple[int, str]:
    """Bytes a run may use, and where the number comes from."""
    text = os.environ.get(MEMORY_LIMIT_ENV)
    if text is not None:
        value = text.strip().upper().removesuffix("IB").removesuffix("B")
        unit = value[-1:] if value[-1:] in _UNITS and value[-1:] else ""
        try:
            limit = float(value[:-1] if unit else value) * _UNITS[unit]
        except ValueError:
            limit = -1.0
        if not limit > 0:
            raise InputError(f"{MEMORY_LIMIT_ENV} must be a positive number of bytes (e.g. 2G), got {text!r}.")
        return int(limit), f"the limit set by {MEMORY_LIMIT_ENV}"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "installed"
    except (OSError, ValueError, AttributeError):  # pragma: no cover - no way to tell: do not refuse
        return 2**62, "unknown"


def check_memory(needs: Mapping[str, int], *, where: str, advice: str) -> None:
    """Raise EngineError when the items of ``needs`` (bytes) add up to more than the available memory."""
    total = int(sum(needs.values()))
    limit, source = available_memory()
    if total <= limit:
        return
    largest = sorted(needs.items(), key=lambda kv: -kv[1])[:3]
    items = ", ".join(f"{name} {format_bytes(size)}" for name, size in largest if size)
    raise EngineError(f"{where}: this run needs about {format_bytes(total)} of memory ({items}), more than the "
                      f"{format_bytes(limit)} {source}. {advice}")


def result_bytes(model: SpikingModel, n_samples: int, steps: int, record: Iterable[str], spiking: bool) -> int:
    """Bytes of the per-sample records of a run (one copy): output, spike counts, SOPs, input MACs, rasters."""
    n_out = model.population(model.output).size
    series = len(model.populations)  # spike counts, int64 per (sample, step)
    for pr in model.projections:
        series += 2 if pr.source != INPUT or spiking else 1  # sops + nominal, or input MACs
    per_sample = steps * 8 * (n_out + series)
    recorded = sum(model.population(name).size for name in record)
    per_sample += int(RASTER_DENSITY * steps * recorded) * 3 * 8  # (sample, step, neuron) int64 per spike
    return n_samples * per_sample


def input_bytes(encoded: EncodedInput, batch: int) -> int:
    """Bytes of one batch of input as the engines take it (spike raster and its sparse form, or currents)."""
    if not encoded.is_spiking:
        return 3 * batch * encoded.n_inputs * 8  # scale * x, its float copy, the non-zero mask
    cells = encoded.steps * batch * encoded.n_inputs
    per_sample = 0.0  # the most expected spikes per step of any sample (in blocks: no copy of all of x)
    for lo in range(0, encoded.n_samples, 1024):
        p = np.minimum(np.asarray(encoded.x[lo:lo + 1024], dtype=np.float64) * encoded.max_rate * encoded.dt, 1.0)
        per_sample = max(per_sample, float(p.reshape(p.shape[0], -1).sum(axis=1).max()))
    spikes = min(cells, int(batch * (encoded.steps * per_sample + encoded.n_inputs)))
    # bool raster (and a transposed copy), flat indices, CSR data and indices, per-step event arrays
    return 2 * cells + spikes * (8 + 8 + 8 + 3 * 8)
