r"""Neuron dynamics as pure step functions over numpy arrays.

One formula for every engine that steps time (the event engine here, the
torch timestep engine later), so that the Brian2 reference has only one
thing to be checked against. No I/O, no globals, no mutation.

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
    """Per-population constants, already in the engine's dtype and flattened."""

    beta: float
    threshold: float | np.ndarray  # scalar, or shape (n,)
    reset: str  # "subtract" | "zero"
    v_reset: float
    v_init: float | np.ndarray

    @classmethod
    def from_population(cls, pop: Population, dtype: np.dtype, *, engine: str) -> "NeuronParams":
        """Read a population's NeuronSpec; ``srm`` is refused (the engine integrates IF/LIF only)."""
        spec = pop.neuron
        if spec.kind == "srm":
            raise EngineError(
                f"Population {pop.name!r}: neuron kind 'srm' is not supported by engine {engine!r}, "
                "which integrates 'if' and 'lif' neurons only."
            )
        th = spec.threshold
        threshold = dtype.type(th) if isinstance(th, float) else np.asarray(th, dtype=dtype).reshape(-1)
        return cls(
            beta=dtype.type(spec.beta),
            threshold=threshold,
            reset=spec.reset,
            v_reset=dtype.type(spec.v_reset),
            v_init=threshold * dtype.type(spec.v_init_fraction),
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
