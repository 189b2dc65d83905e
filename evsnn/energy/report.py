"""``energy_report``: operation counts and energy of a spiking run, beside its ANN, as data (JSON, CSV).

Its text is :mod:`evsnn.energy.text`, its figure :mod:`evsnn.energy.plot`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import InputError
from ..model import SpikingModel
from ..result import Result
from ..settings import check_samples
from .counting import (AnnLayerOps, OpSeries, ann_ops_ir, ann_ops_torch, check_result_matches, ratio,
                       snn_ops)
from .plot import plot_report
from .presets import OP_CLASSES, EnergyPreset, get_preset
from .text import format_brief, format_report

__all__ = ["EnergyReport", "energy_report", "report_from_ops", "CHECKPOINTS", "SNN_CLASSES"]

CHECKPOINTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
SNN_CLASSES = tuple(op for op in OP_CLASSES if not op.startswith("ann_"))  # the SNN's, in OP_CLASSES order



def _stats(a: np.ndarray) -> dict[str, float]:
    a = np.asarray(a, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std())}


@dataclass(frozen=True, eq=False)
class EnergyReport:
    """Operation counts and energy of one spiking run, with the settings and policy that produced them.

    Build it with :func:`energy_report`. :meth:`to_dict` is the whole report
    as plain data (what :meth:`to_json` writes); :meth:`format` the text table;
    :meth:`to_csv` the per-step table; :meth:`plot` the figure.

    Attributes
    ----------
    source : str
        Name of the model (e.g. its file).
    settings : dict
        The run's settings (engine, steps, dt, encoding, seed, ...).
    policy : dict of str -> str
        How each class of operation was counted.
    preset, ann_preset : EnergyPreset
        Energy per operation of the SNN and of the ANN.
    snn : list of OpSeries
        Counted SNN operations per projection/population.
    ann : list of AnnLayerOps
        The ANN's layers; ``ann_source`` says where they come from.
    accuracy_curve : array (steps,) or None
        Accuracy after each step (with labels).
    spikes_per_neuron_per_step : dict of str -> float
    n_samples, steps : int
    """

    source: str
    settings: dict[str, Any]
    policy: dict[str, str]
    preset: EnergyPreset
    ann_preset: EnergyPreset
    snn: list[OpSeries]
    ann: list[AnnLayerOps]
    ann_source: str
    accuracy_curve: np.ndarray | None
    spikes_per_neuron_per_step: dict[str, float]
    n_samples: int
    steps: int
    checkpoints: tuple[int, ...] = CHECKPOINTS
    warnings: list[str] = field(default_factory=list)

    # --- arithmetic -----------------------------------------------------------------------------
    def ops_per_sample(self, op: str) -> np.ndarray:
        """Operations of class ``op`` per sample, summed over items and steps, shape (N,)."""
        total = np.zeros(self.n_samples, dtype=np.int64)
        for s in self.snn:
            if s.op == op:
                total += s.per_sample
        return total

    def ops_per_step(self, op: str) -> np.ndarray:
        """Operations of class ``op`` per step, mean over samples, shape (steps,)."""
        total = np.zeros(self.steps)
        for s in self.snn:
            if s.op == op:
                total += s.per_step
        return total

    def counted_classes(self) -> list[str]:
        """SNN operation classes with at least one operation, in :data:`OP_CLASSES` order."""
        present = {s.op for s in self.snn if s.per_sample.any()}
        return [op for op in SNN_CLASSES if op in present]

    def unpriced(self) -> list[str]:
        """Counted SNN classes the preset gives no cost for (left out of the energy)."""
        return [op for op in self.counted_classes() if self.preset.cost(op) is None]

    def energy_per_sample(self) -> np.ndarray:
        """SNN energy in pJ per sample (priced classes only), shape (N,)."""
        return self._priced_sum("per_sample", self.n_samples)

    def energy_per_step(self) -> np.ndarray:
        """SNN energy in pJ per step, mean over samples, shape (steps,)."""
        return self._priced_sum("per_step", self.steps)

    def _priced_sum(self, axis: str, size: int) -> np.ndarray:
        """Σ count × cost over the priced SNN series, for their ``per_sample`` or ``per_step`` counts."""
        total = np.zeros(size)
        for s in self.snn:
            cost = self.preset.cost(s.op)
            if cost is not None:
                total += getattr(s, axis) * cost
        return total

    def ann_macs(self, *, effective: bool = False) -> np.ndarray | int | None:
        """ANN MACs per sample: dense (an int) or effective (array (N,), None without inputs)."""
        if not effective:
            return sum(layer.dense_macs for layer in self.ann)
        if not self.ann or any(layer.effective_macs is None for layer in self.ann):
            return None
        return sum(layer.effective_macs for layer in self.ann)

    def ann_energy(self, *, effective: bool = False) -> np.ndarray | float | None:
        """ANN energy in pJ per sample (dense: a float; effective: array (N,)), None if unpriced or no ANN."""
        if not self.ann:
            return None
        mac, add = self.ann_preset.cost("ann_mac"), self.ann_preset.cost("ann_bias_add")
        macs = self.ann_macs(effective=effective)
        bias = sum(layer.bias_adds for layer in self.ann)
        if mac is None or macs is None or (bias and add is None):
            return None
        return macs * mac + bias * (add or 0.0)

    # --- plain data -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The whole report as JSON-ready plain data (energies in pJ, per sample unless named per step)."""
        snn_energy = self.energy_per_sample()
        items = []
        for s in self.snn:
            cost = self.preset.cost(s.op)
            items.append({
                "item": s.item, "kind": s.kind, "detail": s.detail, "op": s.op,
                "count": _stats(s.per_sample), "cost_pj": cost,
                "energy_pj": None if cost is None else _stats(s.per_sample * cost),
                "count_per_step": [float(v) for v in s.per_step],
            })
        totals = {}
        for op in self.counted_classes():
            per_sample, cost = self.ops_per_sample(op), self.preset.cost(op)
            totals[op] = {"count": _stats(per_sample), "cost_pj": cost,
                          "energy_pj": None if cost is None else _stats(per_sample * cost)}
        dense_macs = self.ann_macs()
        eff_macs = self.ann_macs(effective=True)
        ann_dense_e, ann_eff_e = self.ann_energy(), self.ann_energy(effective=True)
        sops = self.ops_per_sample("sop")
        mean_e = float(snn_energy.mean())
        curve = self.accuracy_curve
        marks = sorted({t for t in self.checkpoints if t <= self.steps} | {self.steps})
        cum_energy = np.cumsum(self.energy_per_step())
        cum_ops = {op: np.cumsum(self.ops_per_step(op)) for op in self.counted_classes()}
        return {
            "report": "evsnn energy report",
            "evsnn_version": __version__,
            "model": self.source,
            "samples": self.n_samples,
            "steps": self.steps,
            "settings": dict(self.settings),
            "policy": dict(self.policy),
            "preset": self.preset.to_dict(),
            "ann_preset": self.ann_preset.to_dict(),
            "snn": {
                "items": items,
                "totals": totals,
                "sops_total": _stats(sops),
                "energy_pj": _stats(snn_energy),
                "unpriced": self.unpriced(),
            },
            "ann": {
                "source": self.ann_source,
                "layers": [{"name": a.name, "detail": a.detail, "dense_macs": a.dense_macs,
                            "effective_macs": None if a.effective_macs is None else _stats(a.effective_macs),
                            "bias_adds": a.bias_adds} for a in self.ann],
                "dense_macs": int(dense_macs),
                "effective_macs": None if eff_macs is None else _stats(eff_macs),
                "energy_pj": {"dense": None if ann_dense_e is None else float(ann_dense_e),
                              "effective": None if ann_eff_e is None else _stats(ann_eff_e)},
            },
            "ratios": {
                "snn_over_ann_energy_dense": None if ann_dense_e is None else ratio(mean_e, float(ann_dense_e)),
                "snn_over_ann_energy_effective":
                    None if ann_eff_e is None else ratio(mean_e, float(np.mean(ann_eff_e))),
                "sops_per_ann_mac_dense": ratio(float(sops.mean()), float(dense_macs)),
                "sops_per_ann_mac_effective":
                    None if eff_macs is None else ratio(float(sops.mean()), float(np.mean(eff_macs))),
            },
            "spikes_per_neuron_per_step": dict(self.spikes_per_neuron_per_step),
            "accuracy": None if curve is None else float(curve[-1]),
            "time": {
                "checkpoints": marks,
                "accuracy": None if curve is None else [float(curve[t - 1]) for t in marks],
                "ops_cumulative": {op: [float(v[t - 1]) for t in marks] for op, v in cum_ops.items()},
                "energy_pj_cumulative": [float(cum_energy[t - 1]) for t in marks],
                "accuracy_per_step": None if curve is None else [float(v) for v in curve],
                "energy_pj_per_step": [float(v) for v in self.energy_per_step()],
            },
            "warnings": list(self.warnings),
        }

    def to_json(self, path: str | Path | None = None, *, indent: int = 2) -> str:
        """The report as JSON (written to ``path`` when given); returns the text."""
        text = json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def to_csv(self, path: str | Path | None = None) -> str:
        """Per-step table: accuracy, mean operations per class and item, energy (pJ), cumulative energy.

        One row per step (1-based ``step``: after that many steps); counts are
        means over samples of the operations performed in that step.
        """
        columns = ["step", "accuracy"] + [f"{op}" for op in self.counted_classes()]
        columns += [f"{s.item}:{s.op}" for s in self.snn if s.per_sample.any()]
        columns += ["energy_pj", "energy_pj_cumulative"]
        per_op = {op: self.ops_per_step(op) for op in self.counted_classes()}
        items = [s for s in self.snn if s.per_sample.any()]
        energy = self.energy_per_step()
        cumulative = np.cumsum(energy)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for t in range(self.steps):
            acc = "" if self.accuracy_curve is None else f"{self.accuracy_curve[t]:.6g}"
            row = [t + 1, acc] + [f"{per_op[op][t]:.10g}" for op in per_op]
            row += [f"{s.per_step[t]:.10g}" for s in items] + [f"{energy[t]:.10g}", f"{cumulative[t]:.10g}"]
            writer.writerow(row)
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    # --- text --------------------------------------------------------------------------------------
    def format(self) -> str:
        """The report as a text table (what ``evsnn report`` prints)."""
        return format_report(self.to_dict())

    def __str__(self) -> str:
        return self.format()

    def brief(self) -> str:
        """Three lines: SNN ops and energy, the ANN's, and their ratio (the demo prints this)."""
        return format_brief(self.to_dict())

    def plot(self, path: str | Path, *, dpi: int = 120) -> Path:
        """Write the figure (PNG, PDF or SVG by suffix): accuracy and operations vs step, energy per layer."""
        return plot_report(self.to_dict(), path, dpi=dpi)


def _pooling_note(model: SpikingModel) -> str:
    """Whether the IR's operators differ from the source network's layers because pooling was folded."""
    source = model.provenance.get("source")
    text = source.get("repr", "") if hasattr(source, "get") else ""
    if "AvgPool" in text:
        return ("the source network's average pooling is folded into the layer after it, so those layers are "
                "not the ANN's own and their MACs differ")
    if text:
        return "the source network has no pooling, so its layers are the IR's operators"
    return "no source network recorded; pooling, if any, was folded into the next layer"


def energy_report(
    result: Result,
    model: SpikingModel,
    *,
    x: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    ann: Any = None,
    preset: str | Path | EnergyPreset = "cmos45-fp32",
    ann_preset: str | Path | EnergyPreset | None = None,
    sop_convention: str = "nonzero",
    input_macs: str = "per-step",
    source: str | None = None,
    checkpoints: Sequence[int] = CHECKPOINTS,
    batch_size: int = 64,
    data: str | None = None,
) -> EnergyReport:
    """Count every operation of a spiking run and of its ANN, and price them with a preset.

    Parameters
    ----------
    result : Result
        A run of ``model`` (:func:`evsnn.simulate`, any engine).
    model : SpikingModel
        The simulated model.
    x : array, shape (N, *model.input.shape), optional
        The inputs the run was given (the raw samples, before encoding): needed
        for the ANN's effective MACs. Without it only dense ANN MACs are reported.
    labels : int array, shape (N,), optional
        For accuracy vs step beside operations vs step.
    ann : torch.nn.Module, optional
        The source network. Its MACs are counted by forward hooks on its
        Linear and Conv2d layers, on ``x``. Without it, the IR's dense
        equivalent is used (each projection's operator as an ANN layer; pooling
        folded into the next layer), and the report says so.
    preset : str, path or EnergyPreset, default="cmos45-fp32"
        Energy per operation (:data:`~evsnn.energy.PRESETS`, or a TOML/JSON file).
    ann_preset : optional
        Energy per operation of the ANN; default ``preset``.
    sop_convention : {"nonzero", "nominal"}, default="nonzero"
        A spike's synapses are its non-zero weights, or all structural connections.
    input_macs : {"per-step", "once"}, default="per-step"
        Analog-input MACs at every step, or once (the constant first-layer product held).
    source : str, optional
        Name of the model in the report (e.g. its file name).
    checkpoints : sequence of int
        Steps listed in the operations/accuracy vs step table (the last step is always listed).
    batch_size : int, default=64
        Samples per ANN forward pass (the run settings' default).
    data : str, optional
        Description of the input data, printed with the settings.

    Returns
    -------
    EnergyReport

    Raises
    ------
    InputError
        When ``result`` is not a run of ``model``, ``x``/``labels`` do not match
        it, or an option is invalid.

    Examples
    --------
    >>> import numpy as np, evsnn
    >>> from evsnn import Dense, InputSpec, Population, Projection, SpikingModel
    >>> m = SpikingModel(InputSpec((2,), encoding="regular"), [Population("out", (1,))],
    ...                  [Projection("w", "input", "out", Dense(np.array([[0.5, 0.5]])))])
    >>> x = np.array([[1.0, 0.5]])
    >>> rep = evsnn.energy_report(evsnn.simulate(m, x, steps=4), m, x=x)
    >>> d = rep.to_dict()
    >>> d["snn"]["totals"]["sop"]["count"]["mean"], d["snn"]["totals"]["update_if"]["count"]["mean"]
    (6.0, 4.0)
    >>> round(d["snn"]["energy_pj"]["mean"], 6)  # 6 SOPs x 0.9 pJ + 4 IF updates x 0.9 pJ
    9.0
    """
    if not isinstance(result, Result):
        raise InputError(f"energy_report: result must be an evsnn Result, got {type(result).__name__}.")
    if not isinstance(model, SpikingModel):
        raise InputError(f"energy_report: model must be a SpikingModel, got {type(model).__name__}.")
    check_result_matches(result, model)
    preset = get_preset(preset)
    ann_preset = preset if ann_preset is None else get_preset(ann_preset)
    n, steps = result.n_samples, result.steps
    if x is not None:
        x = check_samples(x, model, where="energy_report")
        if x.shape[0] != n:
            raise InputError(f"energy_report: x must hold the {n} samples of the run, got {x.shape[0]}.")
    curve = None
    if labels is not None:
        curve = result.accuracy_over_time(np.asarray(labels))
    snn = snn_ops(result, model, sop_convention=sop_convention, input_macs=input_macs)
    if ann is not None:
        if x is None:
            raise InputError("energy_report: counting the MACs of ann needs its inputs; pass x (the samples the "
                             "run was given).")
        layers = ann_ops_torch(ann, x, batch_size=batch_size)
        ann_source = (f"the torch network ({type(ann).__name__}), forward hooks on its Linear/Conv2d layers, "
                      f"on the same {n} inputs")
    else:
        layers = ann_ops_ir(model, x, batch_size=batch_size)
        ann_source = (f"the IR's dense equivalent (each projection's operator taken as an ANN layer; "
                      f"{_pooling_note(model)}; no torch network given)"
                      + ("" if x is not None else "; no inputs given, so no effective MACs"))
    st = result.settings
    settings = {"engine": result.engine, **st}
    if data:
        settings["data"] = data
    sop_text = ("one accumulate per spike per non-zero-weight synapse" if sop_convention == "nonzero"
                else "one accumulate per spike per structural connection (zero weights included)")
    policy = {
        "SOPs": f"{sop_text}, exact per projection and step (conv borders and strides included), "
                "at the step the spike is emitted",
        "analog input": ("MACs = non-zero inputs x their non-zero-weight synapses, "
                         + ("every step" if input_macs == "per-step" else "once (first step only)")
                         if st.get("encoding") == "current" else "none (spike-encoded input: its spikes are SOPs)"),
        "neuron updates": "every neuron every step (IF: 1 add, LIF: 1 multiply-add); bias: 1 add per "
                          "non-zero bias per step",
        "not counted": "threshold comparisons, resets, spike routing, memory access; no x2 FLOP factor",
        "ANN": "dense MACs = every multiply-accumulate (conv zero padding included); effective = those "
               "whose input activation is non-zero; bias adds per non-zero bias",
        "statistics": f"mean ± std (population, ddof=0) over the {n} samples",
    }
    return EnergyReport(
        source=source or "model",
        settings=settings,
        policy=policy,
        preset=preset,
        ann_preset=ann_preset,
        snn=snn,
        ann=layers,
        ann_source=ann_source,
        accuracy_curve=curve,
        spikes_per_neuron_per_step=result.spikes_per_neuron_per_step(),
        n_samples=n,
        steps=steps,
        checkpoints=tuple(int(c) for c in checkpoints),
        warnings=_warnings(preset, snn, model.dt),
    )


def _warnings(preset: EnergyPreset, snn: Sequence[OpSeries], dt: float) -> list[str]:
    """What a report must say about its pricing: a preset made for another step length, unpriced classes."""
    warnings = []
    if preset.step_s is not None and not math.isclose(preset.step_s, dt):
        warnings.append(f"preset {preset.name!r} prices neuron updates per {preset.step_s:g} s step; this model's "
                        f"dt is {dt:g} s, so its neuron-update energy is per {dt:g} s step as given.")
    unpriced = [op for op in {s.op for s in snn if s.per_sample.any()} if preset.cost(op) is None]
    if unpriced:
        warnings.append(f"preset {preset.name!r} gives no cost for {', '.join(sorted(unpriced))}: those operations "
                        "are counted but not in the energy total.")
    return warnings


def report_from_ops(snn: Sequence[OpSeries], *, settings: dict[str, Any], policy: dict[str, str],
                    preset: str | Path | EnergyPreset = "cmos45-fp32", accuracy_curve: np.ndarray | None = None,
                    spikes_per_neuron_per_step: dict[str, float] | None = None, source: str = "model",
                    checkpoints: Sequence[int] = CHECKPOINTS) -> EnergyReport:
    """An :class:`EnergyReport` of operations counted outside the IR's engines (a network the IR cannot
    express, e.g. :class:`evsnn.training.CondensedNetwork` with its graded events), priced like any run's.

    ``snn``: the counted operations (one :class:`OpSeries` per item and class, all of one run: same samples and
    steps); ``settings`` must hold ``dt``; ``policy``: how each class was counted. No ANN is counted.
    """
    snn = list(snn)
    if not snn:
        raise InputError("report_from_ops: snn must hold at least one OpSeries.")
    n, steps = snn[0].per_sample.shape[0], snn[0].per_step.shape[0]
    for s in snn:
        if s.op not in SNN_CLASSES or s.per_sample.shape != (n,) or s.per_step.shape != (steps,):
            raise InputError(f"report_from_ops: item {s.item!r} ({s.op!r}) must be an SNN operation class "
                             f"({', '.join(SNN_CLASSES)}) counted over {n} samples and {steps} steps, got "
                             f"{s.per_sample.shape[0]} samples and {s.per_step.shape[0]} steps.")
    if "dt" not in settings:
        raise InputError("report_from_ops: settings must hold the step length 'dt' (seconds).")
    preset = get_preset(preset)
    return EnergyReport(source=source, settings=dict(settings), policy=dict(policy), preset=preset,
                        ann_preset=preset, snn=snn, ann=[], ann_source="none (no ANN counted for this network)",
                        accuracy_curve=accuracy_curve,
                        spikes_per_neuron_per_step=dict(spikes_per_neuron_per_step or {}), n_samples=n, steps=steps,
                        checkpoints=tuple(int(c) for c in checkpoints),
                        warnings=_warnings(preset, snn, settings["dt"]))
