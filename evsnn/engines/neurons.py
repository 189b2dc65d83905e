r"""Neuron dynamics as pure step functions over numpy arrays.

One formula for every engine that steps time (the event engine compiles the
same operations; the torch timestep engine runs these functions on tensors,
under autograd when it trains), so that the Brian2 reference has only one
thing to be checked against; and one derivation of the per-population
constants (:class:`NeuronParams`), which the Brian2 engine writes into its
equations. The step functions take numpy arrays or torch tensors (the
parameters of :meth:`NeuronParams.to_torch`) and use only operations both
have. No I/O, no globals, no mutation.

One step of length ``dt`` for a population. The *discrete form* (what the
converters produce) adds its input current :math:`I` (spikes, analog input
and bias, summed by the engine) as it is:

.. math::

    v \leftarrow \beta v + (1 - \beta) v_{leak} + I, \qquad s = [v \ge \theta], \qquad
    v \leftarrow \begin{cases} v - \theta s & \text{reset = "subtract"} \\
                               v_{reset} \text{ where } s & \text{reset = "zero"} \end{cases}

The *ODE form* (NIR's neurons) is the exact solution of the neuron's linear
ODE over the step, with the step's analog input :math:`a` (analog input and
bias) held constant over it and the spikes :math:`S` delivered for the step
arriving as unit impulses at its end (docs/nir.md, "Discretization"):

.. math::

    v \leftarrow \beta v + (1 - \beta) v_{leak} + c_{vi}\, i + g_a\, a + g_s S, \qquad
    i \leftarrow \alpha i + h_a\, a + h_s S,

with :math:`\beta = e^{-dt/\tau_{mem}}` (1 for IF and I), :math:`g_s = R/\tau_{mem}`
(:math:`R` for IF and I), :math:`g_a = (1 - \beta) R` (:math:`R\,dt`), and for the
current-based kinds :math:`\alpha = e^{-dt/\tau_{syn}}`, :math:`h_s = w_{in}/\tau_{syn}`,
:math:`h_a = (1 - \alpha) w_{in}`, :math:`c_{vi} = (R/\tau_{mem}) K`,
:math:`g_a = w_{in}(R(1 - \beta) - c_{vi})`, :math:`g_s = 0`, where
:math:`K = \int_0^{dt} e^{-(dt-u)/\tau_{mem}} e^{-u/\tau_{syn}} du`.
Threshold and reset follow as above (``v > θ`` where ``strict_threshold``).

The *SRM* (seed 003, eqs. 1-4) is the discrete form's input :math:`I` filtered
by the alpha kernel :math:`\varepsilon(t) = (t/\tau_s)\,e^{1 - t/\tau_s}`
plus the neuron's own spikes filtered by the refractory kernel
:math:`\nu(t) = -A\theta e^{-t/\tau_r}`, both as exact recursive filters
(the alpha kernel is two first-order states). The step's input arrives at its
start and the potential is read at its end, so an input of step :math:`t - k`
contributes :math:`\varepsilon((k + 1)\,dt)\,I`:

.. math::

    x_k = x + e\,I, \qquad y \leftarrow a\,(y + \tfrac{dt}{\tau_s} x_k), \qquad x \leftarrow a\,x_k, \qquad
    r \leftarrow b\,r, \qquad u = y + r,

with :math:`a = e^{-dt/\tau_s}`, :math:`b = e^{-dt/\tau_r}`; a spike (:math:`u \ge \theta`)
subtracts :math:`A\theta` from :math:`r` (``reset="subtract"``; :math:`A` =
``refractory_amplitude``: 1, or seed 003's 2) or sets :math:`r = v_{reset} - y`
(``"zero"``), and :math:`u = y + r` again. It starts at :math:`r = v_{init}`,
:math:`x = y = 0`.
"""

from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import EngineError
from ..model import Population

__all__ = ["NeuronParams", "NeuronState", "neuron_step", "integrate", "initial_state", "ode_coefficients"]

Value = float | np.ndarray  # a scalar of the engine's dtype, or one value per neuron (flattened)


def ode_coefficients(kind: str, dt: float, *, tau_mem: Value | None, tau_syn: Value | None, r: Value,
                     w_in: Value) -> dict[str, Value]:
    """Exact per-step coefficients of an ODE-form neuron over a step ``dt`` (float64; see the module docstring).

    Returns ``beta``, ``spike_gain`` (:math:`g_s`), ``analog_gain`` (:math:`g_a`) and, for the
    current-based kinds, ``alpha``, ``syn_spike_gain``, ``syn_analog_gain`` and ``syn_to_v``.
    """
    r = np.asarray(r, dtype=np.float64)
    if tau_mem is None:  # IF and I: v' = R I
        return {"beta": np.ones_like(r), "spike_gain": r, "analog_gain": r * dt}
    tm = np.asarray(tau_mem, dtype=np.float64)
    beta = np.exp(-dt / tm)
    if tau_syn is None:  # LIF and LI
        return {"beta": beta, "spike_gain": r / tm, "analog_gain": -np.expm1(-dt / tm) * r}
    ts = np.asarray(tau_syn, dtype=np.float64)
    w = np.asarray(w_in, dtype=np.float64)
    alpha = np.exp(-dt / ts)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(tm == ts, dt * beta, (alpha - beta) * tm * ts / (ts - tm))
    syn_to_v = r / tm * k
    return {"beta": beta, "spike_gain": np.zeros_like(beta), "analog_gain": w * (-np.expm1(-dt / tm) * r - syn_to_v),
            "alpha": alpha, "syn_spike_gain": w / ts, "syn_analog_gain": -np.expm1(-dt / ts) * w,
            "syn_to_v": syn_to_v}


def _cast(value: object, dtype: np.dtype) -> Value:
    """A scalar of ``dtype`` when all values are equal, else a flat array of ``dtype``."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return dtype.type(arr)
    return np.asarray(arr, dtype=dtype).reshape(-1)


@dataclass(frozen=True, eq=False)
class NeuronParams:
    """Per-population constants, already in the engine's dtype and flattened.

    Derived once from a :class:`~evsnn.NeuronSpec` for every engine (the
    event engine steps them here, the Brian2 engine writes them into its
    equations), so that a change of a neuron rule lands in one place.
    """

    kind: str
    beta: Value  # leak of v per engine step (1 for IF, I and SRM)
    threshold: Value
    reset: str  # "subtract" | "zero"
    v_reset: Value
    v_init: Value  # initial potential: v_init_fraction * threshold
    strict: bool = False  # spike where v > θ (else v >= θ)
    spiking: bool = True
    ode: bool = False  # NIR's ODE form: the gains below apply
    leak: Value | None = None  # (1 - β) v_leak, added every step; None when v_leak is 0
    spike_gain: Value | None = None  # ODE form: jump of v per unit of spike input
    analog_gain: Value | None = None  # ODE form: change of v per unit of held analog input
    alpha: Value | None = None  # current-based kinds: decay of the synaptic current per step
    syn_spike_gain: Value | None = None
    syn_analog_gain: Value | None = None
    syn_to_v: Value | None = None
    tau_syn: float | None = None  # SRM kernel time constants, seconds
    tau_refr: float | None = None
    psp_gain: Value | None = None  # SRM: dt / tau_s (alpha: the PSP kernel's decay, syn_spike_gain: e)
    refractory_decay: Value | None = None  # SRM: exp(-dt / tau_r)
    refractory_jump: Value | None = None  # SRM: A theta, subtracted at a spike
    leaky: bool = True  # whether beta differs from 1 anywhere (else v is not multiplied)

    #: The fields that hold values (a scalar or one per neuron); the others are flags and names.
    VALUES = ("beta", "threshold", "v_reset", "v_init", "leak", "spike_gain", "analog_gain", "alpha",
              "syn_spike_gain", "syn_analog_gain", "syn_to_v", "psp_gain", "refractory_decay", "refractory_jump")

    @classmethod
    def from_population(cls, pop: Population, dtype: np.dtype, *, engine: str, dt: float,
                        kinds: tuple[str, ...] | None = None, substeps: int = 1) -> "NeuronParams":
        """Read a population's NeuronSpec for ``engine``, which integrates the neuron ``kinds`` it names.

        ``dt`` is the model's step; ``substeps``: the engine's step is ``dt /
        substeps`` (a discrete LIF leaks by ``beta ** (1 / substeps)`` per
        engine step, an ODE-form neuron is integrated exactly over it).
        """
        spec = pop.neuron
        if kinds is not None and spec.kind not in kinds:
            raise EngineError(
                f"Population {pop.name!r}: neuron kind {spec.kind!r} is not supported by engine {engine!r}, "
                f"which integrates {', '.join(repr(k) for k in kinds)} neurons only."
            )
        step = dt / substeps
        threshold = _cast(spec.threshold, dtype)
        values: dict[str, object] = {}
        if spec.ode:
            coeffs = ode_coefficients(spec.kind, step, tau_mem=spec.tau_mem,
                                      tau_syn=spec.tau_syn if spec.kind.startswith("cuba") else None,
                                      r=spec.r, w_in=spec.w_in)
            values = {name: _cast(value, dtype) for name, value in coeffs.items()}
            beta64 = coeffs["beta"]
        else:
            beta64 = np.asarray(spec.beta, dtype=np.float64) ** (1.0 / substeps)
            values["beta"] = _cast(spec.beta if substeps == 1 else beta64, dtype)
        if spec.kind == "srm":
            values.update(alpha=_cast(math.exp(-step / spec.tau_syn), dtype), syn_spike_gain=_cast(math.e, dtype),
                          psp_gain=_cast(step / spec.tau_syn, dtype),
                          refractory_decay=_cast(math.exp(-step / spec.tau_refr), dtype),
                          refractory_jump=_cast(spec.refractory_amplitude * np.asarray(spec.threshold, np.float64),
                                                dtype))
        leak64 = -np.expm1(np.log(beta64)) * np.asarray(spec.v_leak, dtype=np.float64)
        leak = _cast(leak64, dtype) if np.any(leak64 != 0) else None
        return cls(
            kind=spec.kind,
            threshold=threshold,
            reset=spec.reset,
            v_reset=_cast(spec.v_reset, dtype),
            v_init=threshold * dtype.type(spec.v_init_fraction),
            strict=spec.strict_threshold,
            spiking=spec.spiking,
            ode=spec.ode,
            leak=leak,
            tau_syn=spec.tau_syn if spec.kind == "srm" else None,
            tau_refr=spec.tau_refr,
            leaky=bool(np.any(beta64 != 1)),
            **values,
        )

    def to_torch(self, device: object = "cpu") -> "NeuronParams":
        """The same parameters as torch tensors on ``device`` (0-d for scalars), for the torch timestep engine:
        the values keep their dtype, so the step functions compute the same bits on numpy and torch."""
        import torch

        values = {name: getattr(self, name) for name in self.VALUES}
        tensors = {name: None if v is None else torch.as_tensor(np.array(v), device=device) for name, v in values.items()}
        return dataclasses.replace(self, **tensors)


class NeuronState(NamedTuple):
    v: np.ndarray  # membrane potential, shape (batch, n); SRM: psp + refractory
    i: np.ndarray | None = None  # synaptic current of the current-based kinds; SRM: the PSP kernel's first state
    psp: np.ndarray | None = None  # SRM: the postsynaptic potential (the alpha kernel's second state)
    refractory: np.ndarray | None = None  # SRM: the refractory kernel's state


def initial_state(p: NeuronParams, batch: int, n: int, dtype: np.dtype) -> NeuronState:
    """State at the start of a run: ``v = v_init_fraction * threshold``, synaptic current 0 (torch tensors on the
    parameters' device where ``p`` is :meth:`NeuronParams.to_torch`'s)."""
    if not isinstance(p.v_init, (np.ndarray, np.generic)):  # torch
        import torch

        v, zeros = torch.broadcast_to(p.v_init, (batch, n)).clone(), torch.zeros_like
    else:
        v, zeros = np.broadcast_to(np.asarray(p.v_init, dtype=dtype), (batch, n)).copy(), np.zeros_like
    if p.kind == "srm":  # the potential starts in the refractory state, which decays with tau_r
        return NeuronState(v=v, i=zeros(v), psp=zeros(v), refractory=v + 0)
    return NeuronState(v=v, i=None if p.alpha is None else zeros(v))


def integrate(state: NeuronState, current: np.ndarray, p: NeuronParams,
              analog: np.ndarray | None = None) -> NeuronState:
    """The sub-threshold update of one step (a ``membrane`` read-out stops here).

    ``current``: what arrives as impulses at the end of the step (the discrete
    form: all input, summed); ``analog``: the ODE form's held input (analog
    input and bias), ``None`` for none.
    """
    if p.kind == "threshold":  # stateless: the step's input is the potential
        return NeuronState(v=current + 0)  # a new array (numpy or torch), the same values
    if p.kind == "srm":  # the step's input arrives at its start; the kernels' exact recursions (module docstring)
        x = state.i + p.syn_spike_gain * current
        psp = p.alpha * (state.psp + p.psp_gain * x)
        refractory = p.refractory_decay * state.refractory
        return NeuronState(v=psp + refractory, i=p.alpha * x, psp=psp, refractory=refractory)
    if not p.ode:
        v = p.beta * state.v + current if p.leaky else state.v + current
        return NeuronState(v=v if p.leak is None else v + p.leak)
    v = p.beta * state.v if p.leaky else state.v
    if p.leak is not None:
        v = v + p.leak
    if p.alpha is not None:
        v = v + p.syn_to_v * state.i
        i = p.alpha * state.i + p.syn_spike_gain * current
        if analog is not None:
            v = v + p.analog_gain * analog
            i = i + p.syn_analog_gain * analog
        return NeuronState(v=v, i=i)
    if analog is not None:
        v = v + p.analog_gain * analog
    return NeuronState(v=v + p.spike_gain * current)


def neuron_step(state: NeuronState, current: np.ndarray, p: NeuronParams,
                analog: np.ndarray | None = None, spike_fn=None) -> tuple[np.ndarray, NeuronState]:
    """Advance one population by one step; return ``(spiked, new_state)``.

    Parameters
    ----------
    state : NeuronState
        ``v`` (and ``i``) of shape ``(batch, n)``.
    current : array, shape (batch, n)
        Input arriving as impulses (the discrete form: synaptic input plus
        analog input plus bias).
    p : NeuronParams
    analog : array, shape (batch, n), optional
        ODE form: input held over the step (analog input plus bias).
    spike_fn : callable, optional
        ``spike_fn(v, p)`` returns the spikes (a float tensor of 0 and 1 whose
        gradient is a surrogate, for training); default: the comparison with
        the threshold, as a bool array.

    Returns
    -------
    spiked : bool array (or spike_fn's), shape (batch, n)
    new_state : NeuronState
    """
    new = integrate(state, current, p, analog)
    v = new.v
    if spike_fn is not None:
        spiked = spike_fn(v, p)
    else:
        spiked = v > p.threshold if p.strict else v >= p.threshold
    if p.kind == "srm":  # the reset is carried by the refractory kernel
        r = new.refractory
        if p.reset == "subtract":
            r = r - spiked * p.refractory_jump
        elif isinstance(r, np.ndarray):
            r = np.where(spiked, p.v_reset - new.psp, r)
        else:
            r = r + spiked * (p.v_reset - new.psp - r) if spike_fn is not None else r.where(~spiked,
                                                                                             p.v_reset - new.psp)
        return spiked, new._replace(v=new.psp + r, refractory=r)
    if p.reset == "subtract":
        v = v - spiked * p.threshold
    elif isinstance(v, np.ndarray):
        v = np.where(spiked, p.v_reset, v)
    else:  # torch; v_reset where spiked, with the spike's gradient
        v = v + spiked * (p.v_reset - v) if spike_fn is not None else v.where(~spiked, p.v_reset)
    return spiked, new._replace(v=v)
