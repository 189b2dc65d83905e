"""Operation counts and energy estimates of spiking runs, with the policy and sources printed.

:func:`energy_report` turns a :class:`~evsnn.result.Result` and its model into
an :class:`EnergyReport`: exact counts of every operation class
(:data:`OP_CLASSES`: synaptic operations, analog-input MACs, neuron updates,
bias adds; graded events' MACs where a network outside the IR has them:
:func:`event_ops`, :func:`report_from_ops`) per projection or population
and per step; the source ANN's MACs, dense and effective; energy = Σ count × cost with a preset of published
per-operation energies (:data:`PRESETS`, or a user TOML/JSON file); text,
JSON, CSV and a figure. How evsnn counts, beside how other tools do:
``docs/energy.md``.

Nothing here imports torch or matplotlib until it is used (an ANN given as a
torch module, or a plot).
"""

from .counting import (AnnLayerOps, OpSeries, ann_ops_ir, ann_ops_torch, event_ops, snn_ops,
                       sops_from_rasters)
from .presets import OP_CLASSES, PRESETS, EnergyPreset, available_presets, get_preset, load_preset
from .report import EnergyReport, energy_report, report_from_ops
from .text import format_energy

__all__ = [
    "energy_report", "EnergyReport", "EnergyPreset", "PRESETS", "OP_CLASSES", "get_preset", "load_preset",
    "available_presets", "snn_ops", "ann_ops_ir", "ann_ops_torch", "sops_from_rasters", "event_ops", "OpSeries",
    "AnnLayerOps", "format_energy", "report_from_ops",
]
