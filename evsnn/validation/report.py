"""What :func:`~evsnn.validate` and :func:`~evsnn.validation.convergence` return: agreement per population,
per projection's SOPs and per prediction, as text tables (``.table()``) and plain data (``.to_dict()``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..display import table
from ..errors import InputError

__all__ = ["ValidationReport", "Comparison", "PopulationAgreement", "SopAgreement", "ConvergenceReport"]


@dataclass(frozen=True)
class PopulationAgreement:
    """Spike agreement of one population between simulators ``a`` and ``b``.

    Attributes
    ----------
    spikes_a, spikes_b : int
        (sample, step, neuron) spike events of each.
    identical : int
        Events present in both.
    agreement : float
        ``identical / (events in either)``; 1.0 when neither spikes.
    first_divergence : int or None
        Earliest step at which the two differ in some sample (None if never).
    first_divergence_sample : int or None
        The (lowest) sample that diverges at that step.
    count_correlation : float
        Pearson correlation of spike counts per (sample, neuron); 1.0 when
        the counts are identical, NaN when one side is constant and they differ.
    """

    name: str
    spikes_a: int
    spikes_b: int
    identical: int
    agreement: float
    first_divergence: int | None
    first_divergence_sample: int | None
    count_correlation: float


@dataclass(frozen=True)
class SopAgreement:
    """SOPs of one projection: totals over samples and steps, and the fraction of (sample, step) counts equal."""

    name: str
    sops_a: int
    sops_b: int
    equal_fraction: float


@dataclass(frozen=True)
class Comparison:
    """Simulators ``a`` and ``b`` on one model, one input and one propagation convention."""

    a: str
    b: str
    propagation: str
    samples: int
    steps: int
    settings: dict[str, Any]
    populations: tuple[PopulationAgreement, ...]
    sops: tuple[SopAgreement, ...]
    predictions_a: np.ndarray | None = field(repr=False)
    predictions_b: np.ndarray | None = field(repr=False)
    wall_time: dict[str, float] = field(default_factory=dict)

    @property
    def prediction_agreement(self) -> float | None:
        """Fraction of samples with the same prediction (None when a side gives none)."""
        if self.predictions_a is None or self.predictions_b is None:
            return None
        return float(np.mean(self.predictions_a == self.predictions_b))

    @property
    def spike_agreement(self) -> float:
        """Identical events over events in either, pooled over populations."""
        both = sum(p.identical for p in self.populations)
        either = sum(p.spikes_a + p.spikes_b - p.identical for p in self.populations)
        return 1.0 if either == 0 else both / either

    @property
    def identical(self) -> bool:
        """Spike for spike, SOP for SOP and prediction for prediction the same."""
        return (all(p.agreement == 1.0 for p in self.populations)
                and all(s.equal_fraction == 1.0 for s in self.sops)
                and self.prediction_agreement in (1.0, None))

    @property
    def first_divergence(self) -> int | None:
        steps = [p.first_divergence for p in self.populations if p.first_divergence is not None]
        return min(steps) if steps else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "propagation": self.propagation, "samples": self.samples,
            "steps": self.steps, "settings": self.settings, "identical": self.identical,
            "spike_agreement": self.spike_agreement, "first_divergence": self.first_divergence,
            "prediction_agreement": self.prediction_agreement,
            "populations": [vars(p).copy() for p in self.populations],
            "sops": [vars(s).copy() for s in self.sops],
            "wall_time_s": dict(self.wall_time),
        }

    def table(self) -> str:
        a, b = self.a, self.b
        st = self.settings
        lines = [f"{a} vs {b}: {self.samples} samples x {self.steps} steps, {st.get('encoding')} input, "
                 f"propagation {self.propagation}, dtype {st.get('dtype_a')} vs {st.get('dtype_b')}"]
        rows = [[p.name, f"{p.spikes_a:,}", f"{p.spikes_b:,}", f"{p.identical:,}", f"{100 * p.agreement:.3f}%",
                 "-" if p.first_divergence is None else f"{p.first_divergence} (sample {p.first_divergence_sample})",
                 f"{p.count_correlation:.6f}"] for p in self.populations]
        lines += table(["population", f"spikes {a}", f"spikes {b}", "identical", "agreement", "first divergence",
                        "count r"], rows, right=range(1, 7))
        if self.sops:
            rows = [[s.name, f"{s.sops_a:,}", f"{s.sops_b:,}", f"{100 * s.equal_fraction:.3f}%"] for s in self.sops]
            lines += table(["projection", f"SOPs {a}", f"SOPs {b}", "equal (sample, step)"], rows, right=range(1, 4))
        pa = self.prediction_agreement
        if pa is None:
            lines.append("predictions: not compared (a membrane readout needs a Result from each side)")
        else:
            same = int(np.sum(self.predictions_a == self.predictions_b))
            lines.append(f"predictions: {same}/{self.samples} identical ({100 * pa:.3f}%)")
        verdict = ("IDENTICAL: spike for spike, SOPs and predictions" if self.identical else
                   f"DIFFERENT: {100 * self.spike_agreement:.4f}% of spike events identical, first divergence "
                   f"at step {self.first_divergence}")
        lines.append(verdict)
        return "\n".join(lines)


@dataclass(frozen=True)
class ValidationReport:
    """What :func:`validate` returns: one :class:`Comparison` per propagation convention."""

    comparisons: tuple[Comparison, ...]

    @property
    def identical(self) -> bool:
        return all(c.identical for c in self.comparisons)

    def __getitem__(self, propagation: str) -> Comparison:
        for c in self.comparisons:
            if c.propagation == propagation:
                return c
        raise InputError(f"ValidationReport: propagation must be one of "
                         f"{[c.propagation for c in self.comparisons]}, got {propagation!r}.")

    def to_dict(self) -> dict[str, Any]:
        return {"identical": self.identical, "comparisons": [c.to_dict() for c in self.comparisons]}

    def table(self) -> str:
        return "\n\n".join(c.table() for c in self.comparisons)


@dataclass(frozen=True)
class ConvergenceReport:
    """A timestep simulator against Brian2 at ``dt / k`` for each ``k`` (see :func:`convergence`).

    ``rows`` has one dict per (k, population): ``k``, ``brian2_dt``, ``population``, ``rate_engine`` and
    ``rate_brian2`` (spikes per neuron per model step), ``rate_error`` (mean over samples and neurons of the
    absolute difference of per-neuron rates) and ``relative_error`` (of the population's total rate).
    ``predictions`` has one dict per k: ``k``, ``prediction_agreement`` with the timestep result,
    ``wall_time_s`` of the Brian2 run.
    """

    engine: str
    samples: int
    steps: int
    settings: dict[str, Any]
    rows: tuple[dict[str, Any], ...]
    predictions: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "samples": self.samples, "steps": self.steps, "settings": self.settings,
                "rows": [dict(r) for r in self.rows], "predictions": [dict(p) for p in self.predictions]}

    def table(self) -> str:
        st = self.settings
        lines = [f"dt convergence: {self.engine} at dt={st['dt']:g} s against brian2 at dt/k, {self.samples} "
                 f"samples x {self.steps} steps, {st['encoding']} input, propagation {st['propagation']}"]
        rows = [[str(r["k"]), f"{r['brian2_dt']:.3g}", r["population"], f"{r['rate_engine']:.5f}",
                 f"{r['rate_brian2']:.5f}", f"{r['rate_error']:.5f}", f"{100 * r['relative_error']:.2f}%"]
                for r in self.rows]
        lines += table(["k", "brian2 dt (s)", "population", f"rate {self.engine}", "rate brian2",
                        "|rate error|", "total rate error"], rows, right=range(1, 7))
        lines += [f"predictions, {self.engine} vs brian2 at dt/{p['k']}: {100 * p['prediction_agreement']:.2f}% "
                  f"identical (brian2 {p['wall_time_s']:.1f} s)" for p in self.predictions]
        return "\n".join(lines)
