r"""Neuron dynamics as pure step functions over numpy arrays.

One formula for every engine that steps time (the event engine here, the
torch timestep engine later), so that the Brian2 reference has only one
thing to be checked against; and one derivation of the per-population
constants (:class:`NeuronParams`), which the Brian2 engine writes into its
equations. No I/O, no globals, no mutation.

One step of length ``dt`` for a population with input current :math:`I`
(synaptic input plus bias):

.. math::

    v \leftarrow \beta v + I, \qquad s = [v \ge \theta], \qquad
    v \leftarrow \begin{cases} v - \theta s & \text{reset = "subtract"} \\
                               v_{reset} \text{ where } s & \text{reset = "zero"} \end{cases}

IF neurons have :math:`\beta = 1`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import EngineError
from ..model import Population

__all__ = ["NeuronParams", "NeuronState", "neuron_step", "integrate", "initial_state"]


@dataclass(frozen=True, eq=False)
class NeuronParams:
    """Per-population constants, already in the engine's dtype and flattened.

    Derived once from a :class:`~evsnn.NeuronSpec` for every engine (the
    event engine steps them here, the Brian2 engine writes them into its
    equations), so that a change of a neuron rule lands in one place.
    """

    kind: str  # "if" | "lif" | "srm"
    beta: float  # leak per engine step (1 for IF and SRM)
    threshold: float | np.ndarray  # scalar, or shape (n,)
    reset: str  # "subtract" | "zero"
    v_reset: float
    v_init: float | np.ndarray  # initial potential: v_init_fraction * threshold
    tau_syn: float | None = None  # SRM kernel time constants, seconds
    tau_refr: float | None = None

    @classmethod
    def from_population(cls, pop: Population, dtype: np.dtype, *, engine: str, kinds: tuple[str, ...] = ("if", "lif"),
                        substeps: int = 1) -> "NeuronParams":
        """Read a population's NeuronSpec for ``engine``, which integrates the neuron ``kinds`` it names.

        ``substeps``: the engine's step is the model's ``dt / substeps`` (a
        LIF leaks by ``beta ** (1 / substeps)`` per engine step).
        """
        spec = pop.neuron
        if spec.kind not in kinds:
            raise EngineError(
                f"Population {pop.name!r}: neuron kind {spec.kind!r} is not supported by engine {engine!r}, "
                f"which integrates {' and '.join(repr(k) for k in kinds)} neurons only."
            )
        if spec.kind == "srm" and spec.beta != 1.0:
            raise EngineError(f"Population {pop.name!r}: beta must be 1.0 for kind 'srm' (its leak is the "
                              f"kernels'), got {spec.beta!r}.")
        th = spec.threshold
        threshold = dtype.type(th) if isinstance(th, float) else np.asarray(th, dtype=dtype).reshape(-1)
        return cls(
            kind=spec.kind,
            beta=dtype.type(spec.beta if substeps == 1 else spec.beta ** (1.0 / substeps)),
            threshold=threshold,
            reset=spec.reset,
            v_reset=dtype.type(spec.v_reset),
            v_init=threshold * dtype.type(spec.v_init_fraction),
            tau_syn=spec.tau_syn,
            tau_refr=spec.tau_refr,
        )


class NeuronState(NamedTuple):
    v: np.ndarray  # membrane potential, shape (batch, n)


def initial_state(p: NeuronParams, batch: int, n: int, dtype: np.dtype) -> NeuronState:
    """Membrane potentials at the start of a run: ``v_init_fraction * threshold``."""
    return NeuronState(v=np.broadcast_to(np.asarray(p.v_init, dtype=dtype), (batch, n)).copy())


def integrate(state: NeuronState, current: np.ndarray, p: NeuronParams) -> NeuronState:
    """Leaky integration without threshold (a ``membrane`` readout): ``v = beta * v + current``."""
    return NeuronState(v=state.v + current if p.beta == 1 else p.beta * state.v + current)


def neuron_step(state: NeuronState, current: np.ndarray, p: NeuronParams) -> tuple[np.ndarray, NeuronState]:
    """Advance one population by one step; return ``(spiked, new_state)``.

    Parameters
    ----------
    state : NeuronState
        ``v`` of shape ``(batch, n)``.
    current : array, shape (batch, n)
        Synaptic input of this step plus bias.
    p : NeuronParams

    Returns
    -------
    spiked : bool array, shape (batch, n)
    new_state : NeuronState
    """
    v = integrate(state, current, p).v
    spiked = v >= p.threshold
    if p.reset == "subtract":
        v = v - spiked * p.threshold
    else:
        v = np.where(spiked, p.v_reset, v)
    return spiked, NeuronState(v=v)
