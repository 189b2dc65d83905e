"""What every engine returns: :class:`Result`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["Result", "Raster", "format_summary"]


@dataclass(frozen=True, eq=False)
class Raster:
    """Spikes of one population as events (NIR ``EventData`` style), sorted by (sample, step, neuron)."""

    sample: np.ndarray  # int64, global sample index
    step: np.ndarray  # int64, 0-based step
    neuron: np.ndarray  # int64, flat (C-order) neuron index
    n_neurons: int

    def __len__(self) -> int:
        return int(self.sample.size)

    def to_dense(self, n_samples: int, steps: int) -> np.ndarray:
        """Boolean array of shape ``(n_samples, steps, n_neurons)``."""
        out = np.zeros((n_samples, steps, self.n_neurons), dtype=bool)
        out[self.sample, self.step, self.neuron] = True
        return out


@dataclass(frozen=True, eq=False)
class Result:
    """Outcome of :func:`evsnn.simulate`, with the same fields whatever the engine.

    Attributes
    ----------
    engine : str
        Registered name of the engine that produced it.
    settings : dict
        Everything needed to reproduce the run: steps, dt, encoding, seed,
        max_rate, scale, dtype, batch size, delivery options.
    predictions : int array, shape (N,)
        Output neuron with the most spikes (``count`` readout; ties go to the
        lowest index) or the largest membrane potential at the last step
        (``membrane`` readout).
    output : array, shape (N, steps, n_out)
        Per step: output spikes (``count``, int) or output membrane potential
        (``membrane``, float).
    spike_counts : dict of str -> int array (N, steps)
        Spikes per sample and step, per population.
    sops : dict of str -> int array (N, steps)
        Synaptic operations per sample and step, per projection fed by spikes:
        every spike of neuron j adds the number of non-zero-weight synapses j
        has in that projection.
    sops_nominal : dict of str -> int array (N, steps)
        The same with the nominal fan-out (zero weights included).
    input_macs : dict of str -> int array (N, steps)
        Multiply-accumulates of projections fed by analog input (``current``
        encoding): non-zero input values times their non-zero synapses, every step.
    rasters : dict of str -> Raster
        Spike events per population (only populations asked for with ``record``).
    sizes : dict of str -> int
        Neurons per population.
    wall_time : float
        Seconds spent simulating (encoding included, set-up excluded). On Dask
        (``simulate(..., client=)``): from the first shard submitted to the last
        one back, shipping and each worker's engine set-up included (docs/scaling.md).
    setup_time : float
        Seconds spent preparing the engine for the model (once per model). On
        Dask: until the model is held on the cluster.
    """

    engine: str
    settings: dict[str, Any]
    predictions: np.ndarray
    output: np.ndarray
    spike_counts: dict[str, np.ndarray]
    sops: dict[str, np.ndarray]
    sops_nominal: dict[str, np.ndarray]
    input_macs: dict[str, np.ndarray]
    rasters: dict[str, Raster] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    wall_time: float = 0.0
    setup_time: float = 0.0

    @property
    def n_samples(self) -> int:
        return int(self.predictions.shape[0])

    @property
    def steps(self) -> int:
        return int(self.output.shape[1])

    def _labels(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != (self.n_samples,):
            raise InputError(f"Result.accuracy: labels must have shape ({self.n_samples},), got {labels.shape}.")
        return labels

    def accuracy(self, labels: np.ndarray) -> float:
        """Fraction of samples whose prediction equals ``labels``."""
        return float(np.mean(self.predictions == self._labels(labels)))

    def predictions_over_time(self) -> np.ndarray:
        """Predictions using only steps ``0..t``, shape ``(N, steps)`` (argmax; ties to the lowest index)."""
        trace = np.cumsum(self.output, axis=1) if self.settings["readout"] == "count" else self.output
        return trace.argmax(axis=2)

    def accuracy_over_time(self, labels: np.ndarray) -> np.ndarray:
        """Accuracy after each step, shape ``(steps,)``: the accuracy-vs-latency curve."""
        labels = self._labels(labels)
        return (self.predictions_over_time() == labels[:, None]).mean(axis=0)

    def total_sops(self, *, nominal: bool = False) -> np.ndarray:
        """Synaptic operations per sample summed over projections and steps, shape ``(N,)``."""
        counts = self.sops_nominal if nominal else self.sops
        return sum((c.sum(axis=1) for c in counts.values()), np.zeros(self.n_samples, dtype=np.int64))

    def spikes_per_neuron_per_step(self) -> dict[str, float]:
        """Mean spikes per neuron per step of each population, over samples and steps."""
        return {name: float(c.mean() / self.sizes[name]) for name, c in self.spike_counts.items()}

    def summary(self, labels: np.ndarray | None = None, *, checkpoints: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100,
                                                                                          200, 500, 1000)) -> dict:
        """Plain-data summary (JSON-ready): accuracy, accuracy vs step, SOPs and MACs per sample, rates, timing.

        SOP and MAC figures are per sample, summed over steps, as mean and (population) standard deviation
        over samples; ``accuracy_vs_step`` lists the accuracy after the given steps (and the last one).
        """
        def stats(a: np.ndarray) -> dict[str, float]:
            per_sample = a.sum(axis=1)
            return {"mean": float(per_sample.mean()), "std": float(per_sample.std())}

        out: dict[str, Any] = {"engine": self.engine, "samples": self.n_samples, "settings": dict(self.settings)}
        if labels is not None:
            curve = self.accuracy_over_time(labels)
            marks = sorted({s for s in checkpoints if s <= self.steps} | {self.steps})
            out["accuracy"] = self.accuracy(labels)
            out["accuracy_vs_step"] = {int(s): float(curve[s - 1]) for s in marks}
        out["sops_per_sample"] = {k: stats(v) for k, v in self.sops.items()}
        total = self.total_sops()
        out["sops_per_sample_total"] = {"mean": float(total.mean()), "std": float(total.std())}
        nominal = self.total_sops(nominal=True)
        out["sops_nominal_per_sample_total"] = {"mean": float(nominal.mean()), "std": float(nominal.std())}
        out["input_macs_per_sample"] = {k: stats(v) for k, v in self.input_macs.items()}
        out["spikes_per_neuron_per_step"] = self.spikes_per_neuron_per_step()
        out["wall_time_s"] = self.wall_time
        out["wall_time_per_sample_s"] = self.wall_time / self.n_samples
        out["setup_time_s"] = self.setup_time
        return out


def format_summary(s: dict) -> str:
    """Text report of a :meth:`Result.summary` (as printed by ``evsnn run``); ``model``/``data`` keys optional."""
    st = s["settings"]
    lines = [
        f"{s.get('model', 'model')}: engine={s['engine']}, {s['samples']} samples"
        + (f" ({s['data']})" if "data" in s else ""),
        f"steps={st['steps']} dt={st['dt']:g} s encoding={st['encoding']}"
        + (f" max_rate={st['max_rate']:g} Hz seed={st['seed']}" if st["encoding"] != "current" else "")
        + f" dtype={st['dtype']} batch={st['batch_size']}",
    ]
    if "accuracy" in s:
        lines += [f"accuracy: {100 * s['accuracy']:.2f}%",
                  "accuracy vs step: " + "  ".join(f"{t}: {100 * a:.1f}%" for t, a in s["accuracy_vs_step"].items())]
    lines += [
        "SOPs per sample (mean ± std over samples; a synapse = a non-zero weight):",
    ]
    for name, v in s["sops_per_sample"].items():
        lines.append(f"  {name:<12} {v['mean']:>14,.0f} ± {v['std']:,.0f}")
    tot, nom = s["sops_per_sample_total"], s["sops_nominal_per_sample_total"]
    lines.append(f"  {'total':<12} {tot['mean']:>14,.0f} ± {tot['std']:,.0f}   (nominal fan-out: {nom['mean']:,.0f})")
    if s["input_macs_per_sample"]:
        lines.append("analog input MACs per sample (every step):")
        for name, v in s["input_macs_per_sample"].items():
            lines.append(f"  {name:<12} {v['mean']:>14,.0f} ± {v['std']:,.0f}")
    lines.append("spikes per neuron per step: "
                 + "  ".join(f"{k}: {v:.4f}" for k, v in s["spikes_per_neuron_per_step"].items()))
    lines.append(f"wall time: {s['wall_time_s']:.2f} s ({1e3 * s['wall_time_per_sample_s']:.2f} ms/sample), "
                 f"set-up {s['setup_time_s']:.2f} s")
    return "\n".join(lines)
