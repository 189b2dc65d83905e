"""What a NIR framework adapter provides to the conformance checker.

One adapter per framework (``_snntorch.py``, ``_norse.py``, ``_sinabs.py``,
``_spikingjelly.py``, ``_rockpool.py``), each importing its framework only inside its methods,
so that ``import evsnn.nir_conformance`` works with none installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Adapter", "Effective", "Exported", "EXPORT_CASES"]

#: Modules every adapter builds in its framework and exports with the framework's own NIR export:
#: ``if``, ``lif``, ``cuba_lif``, ``li`` (one layer of 3 neurons fed by a Linear 4 -> 3, where the framework
#: has the neuron; ``Adapter.export`` raises NotImplementedError naming the missing neuron otherwise) and
#: ``two_layer`` (Linear 6 -> 5, the framework's usual LIF, Linear 5 -> 3, LIF: the issue's two-layer network).
EXPORT_CASES = ("if", "lif", "cuba_lif", "li", "two_layer")


@dataclass
class Effective:
    """The per-step update a framework actually runs for one imported neuron node (measured or read off).

    ``v[t] = beta * v[t-1] + spike_gain * (weighted input spikes of step t) + analog_gain * (analog input)``,
    then a spike where ``v > threshold`` (``threshold_rule=">"``) or ``>=``, then the reset.
    For a current-based neuron, ``syn_beta`` and ``syn_gain`` describe its synaptic current the same way.
    ``None`` means the adapter could not determine the value; ``notes`` say how it was found.
    """

    beta: float | None = None
    spike_gain: float | None = None
    analog_gain: float | None = None
    threshold: float | None = None
    threshold_rule: str | None = None  # ">" or ">="
    reset: str | None = None  # "zero", "subtract" or "none"
    v_reset: float | None = None
    syn_beta: float | None = None
    syn_gain: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Exported:
    """A module built in the framework and exported with its own NIR export.

    ``run(x)`` runs the framework's module on ``x`` (float64, shape ``(steps, batch, *input_shape)``,
    spikes as 0/1) from its initial state and returns the output of every step, shape
    ``(steps, batch, *output_shape)``, float64.
    """

    graph: object  # nir.NIRGraph
    run: Callable[[np.ndarray], np.ndarray]
    dt: float  # the step the framework's module runs at (seconds), as the adapter knows it
    description: str


class Adapter:
    """Base class; subclasses set ``name`` (e.g. ``"snntorch"``) and ``package`` (its import name)."""

    name = "framework"
    package = ""

    def missing(self) -> str | None:
        """``None`` when the framework imports, else the reason it cannot be used (one line)."""
        try:
            __import__(self.package)
        except Exception as err:  # an installed but broken package is unavailable too
            return f"{self.package} is not importable ({type(err).__name__}: {err})"
        return None

    def version(self) -> str:
        from importlib.metadata import version

        return version(self.package)

    def run_imported(self, graph: object, x: np.ndarray, dt: float) -> np.ndarray:
        """Import ``graph`` with the framework's own NIR import and run it on ``x``.

        ``x``: float64 ``(steps, batch, *input_shape)`` (0/1 spikes, or analog values held per step);
        ``dt``: the step in seconds, passed to the import where the framework takes one.
        Returns the output of the graph's Output node at every step, float64 ``(steps, batch, *output_shape)``.
        Raises whatever the framework raises (the checker reports it verbatim).
        """
        raise NotImplementedError

    def effective(self, graph: object, dt: float) -> Effective:
        """The update the framework runs for the neuron node of ``graph`` (Input -> Linear -> neuron -> Output)."""
        raise NotImplementedError

    def export(self, case: str, dt: float, seed: int = 0) -> Exported:
        """Build ``case`` (one of :data:`EXPORT_CASES`) in the framework with seeded weights and export it."""
        raise NotImplementedError
