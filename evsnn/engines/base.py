"""What an engine implements, and the per-batch record it fills."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..encoding import EncodedInput
from ..errors import EngineError
from ..settings import DTYPES
from ..model import INPUT, SpikingModel
from . import memory

__all__ = ["Engine", "BatchOutput"]


def spike_fed(model: SpikingModel, spiking_input: bool) -> list[str]:
    """The projections that carry spikes (all but the analog input's), in model order: the rows of
    :attr:`BatchOutput.sop_stack`."""
    return [pr.name for pr in model.projections if pr.source != INPUT or spiking_input]


@dataclass
class BatchOutput:
    """Everything an engine records for one batch of samples (arrays of shape (batch, steps, ...))."""

    output: np.ndarray
    spike_counts: dict[str, np.ndarray]
    sops: dict[str, np.ndarray]
    sops_nominal: dict[str, np.ndarray]
    input_macs: dict[str, np.ndarray]
    rasters: dict[str, list] = field(default_factory=dict)  # name -> [(sample, step, neuron) arrays]
    #: ``spike_counts`` stacked (population, batch, steps) and ``sops``, ``sops_nominal`` stacked (2, projection,
    #: batch, steps): the dicts' arrays are views of these (what a compiled loop writes through one argument)
    count_stack: np.ndarray | None = None
    sop_stack: np.ndarray | None = None

    @classmethod
    def empty(cls, model: SpikingModel, encoded: EncodedInput, batch: int, record: frozenset[str]) -> "BatchOutput":
        n_out, steps = model.population(model.output).size, encoded.steps
        dtype = np.float64 if model.readout == "membrane" else np.int64
        spiking_input = encoded.is_spiking
        fed_by_spikes = spike_fed(model, spiking_input)
        analog = [pr.name for pr in model.projections if pr.source == INPUT and not spiking_input]
        counts = np.zeros((len(model.populations), batch, steps), dtype=np.int64)
        sops = np.zeros((2, len(fed_by_spikes), batch, steps), dtype=np.int64)
        return cls(
            output=np.zeros((batch, steps, n_out), dtype=dtype),
            spike_counts={p.name: counts[k] for k, p in enumerate(model.populations)},
            sops={name: sops[0, k] for k, name in enumerate(fed_by_spikes)},
            sops_nominal={name: sops[1, k] for k, name in enumerate(fed_by_spikes)},
            input_macs={name: np.zeros((batch, steps), dtype=np.int64) for name in analog},
            rasters={name: [] for name in record},
            count_stack=counts,
            sop_stack=sops,
        )


class Engine:
    """Base class: an engine is built once per model and runs batches of encoded input.

    Subclasses set ``name`` and implement :meth:`run_batch`; set-up that depends
    only on the model (connectivity tables, parameters) belongs in ``__init__``.
    """

    name = "engine"
    #: Cores a batch may use (its rows split over threads; results do not depend on it). ``simulate`` sets it from
    #: the ``threads`` run setting, inside :func:`evsnn.threads.limit_threads`.
    threads = 1

    def __init__(self, model: SpikingModel, *, dtype: str = "float32"):
        if str(dtype) not in DTYPES:
            raise EngineError(f"Engine {self.name!r}: dtype must be 'float32' or 'float64', got {dtype!r}.")
        self.model = model
        self.dtype = np.dtype(dtype)

    @property
    def settings(self) -> dict:
        """Engine options that a Result must record to be reproducible."""
        return {"dtype": self.dtype.name}

    # --- memory ----------------------------------------------------------------------------------
    def table_bytes(self) -> int:
        """Bytes of what the engine builds from the model (connectivity tables, weight copies)."""
        return 0

    def batch_bytes(self, batch: int, steps: int, spiking: bool) -> int:
        """Bytes of the working arrays of one batch (state, buffers), input and records excluded."""
        return 0

    def check_tables(self) -> None:
        """Refuse a model whose connectivity tables do not fit in memory, before building them."""
        memory.check_memory({"connectivity tables": self.table_bytes()}, where=f"Engine {self.name!r}",
                            advice="The model's connectivity is too large for this machine with this engine.")

    def memory_estimate(self, encoded: EncodedInput, batch_size: int, record: frozenset[str]) -> dict[str, int]:
        """Bytes a run of ``encoded`` holds at its peak, by item (see :mod:`evsnn.engines.memory`)."""
        n, steps, spiking = encoded.n_samples, encoded.steps, encoded.is_spiking
        batch = min(int(batch_size), n)
        return {
            # every batch's records, then their concatenation into the Result
            "per-step records of all samples": 2 * memory.result_bytes(self.model, n, steps, record, spiking),
            "input of a batch": memory.input_bytes(encoded, batch),
            "state of a batch": self.batch_bytes(batch, steps, spiking),
            "connectivity tables": self.table_bytes(),
        }

    def check_memory(self, encoded: EncodedInput, batch_size: int, record: frozenset[str]) -> None:
        """Refuse a run whose estimate exceeds the available memory (EngineError naming what to reduce)."""
        memory.check_memory(self.memory_estimate(encoded, batch_size, record), where=f"Engine {self.name!r}",
                            advice=f"Reduce the number of samples ({encoded.n_samples}), steps ({encoded.steps}) "
                                   f"or batch_size ({batch_size}), or record fewer populations.")

    def prepare(self, encoded: EncodedInput, batch_size: int | None = None) -> None:
        """Set-up that depends on the kind of input (spikes or analog) or on the run's batch size (its largest
        batch); :func:`~evsnn.simulate` times it as set-up."""

    def run_batch(self, encoded: EncodedInput, start: int, stop: int, record: frozenset[str]) -> BatchOutput:
        """Simulate samples ``start:stop`` of ``encoded`` for ``encoded.steps`` steps."""
        raise NotImplementedError
