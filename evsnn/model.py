r"""The intermediate representation (IR): :class:`SpikingModel` and its parts.

A network is populations of neurons joined by projections, the Brian2/PyNN
picture (NeuronGroup + Synapses) that maps one-to-one onto NIR nodes and
edges and onto the groups of an evsnn HDF5 file. The IR is the only thing
that passes between converters, storage and engines.

Every class is a frozen dataclass that validates and normalises itself on
construction (arrays become read-only copies) and raises
:class:`~evsnn.errors.ModelError` naming the offending layer. Equality is
bit-exact: two models are equal when every array has the same dtype, shape
and bytes.

Update order of one step of length ``dt`` (all engines follow it):

1. integrate: IF :math:`v \leftarrow v + I + b`, LIF :math:`v \leftarrow \beta v + I + b`;
2. spike where :math:`v \ge \theta`;
3. reset: ``"subtract"`` :math:`v \leftarrow v - \theta`, ``"zero"`` :math:`v \leftarrow v_{reset}`;
4. spikes of step ``t`` reach the target's input at step ``t + delay``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from .checks import check_array, check_name, check_shape
from .display import describe_op, summary
from .errors import ModelError
from .equality import BitExact
from .ops import Conv2d, Dense, Operator, Sparse
from .settings import ENCODINGS

__all__ = ["InputSpec", "NeuronSpec", "Population", "Projection", "SpikingModel", "INPUT"]

#: Name by which projections refer to the model's input.
INPUT = "input"

NEURON_KINDS = ("if", "lif", "srm", "cuba_lif", "li", "cuba_li", "i", "threshold")
#: Kinds that emit spikes; the others are non-spiking read-outs.
SPIKING_KINDS = ("if", "lif", "srm", "cuba_lif", "threshold")
#: Kinds of the discrete form (``r=None``) and of the ODE form (NIR's neurons, ``r`` given).
DISCRETE_KINDS = ("if", "lif", "srm", "threshold")
ODE_KINDS = ("if", "lif", "cuba_lif", "li", "cuba_li", "i")
RESETS = ("subtract", "zero")
READOUTS = ("count", "membrane")
#: Most neurons in one population (or input values in one sample): bounds what engines allocate.
MAX_NEURONS = 2**26
#: Longest delay of a projection, in steps: engines keep a ring buffer of ``max delay + 1`` steps.
MAX_DELAY = 2**16


def _check_size(shape: tuple[int, ...], *, where: str) -> tuple[int, ...]:
    if math.prod(shape) > MAX_NEURONS:
        raise ModelError(f"{where}: shape {shape} holds {math.prod(shape)} neurons, more than "
                         f"MAX_NEURONS = {MAX_NEURONS}.")
    return shape


def _check_choice(value: object, choices: tuple[str, ...], *, where: str, name: str) -> str:
    if value not in choices:
        raise ModelError(f"{where}: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value  # type: ignore[return-value]


def _check_real(value: object, *, where: str, name: str, low: float | None = None,
                low_open: bool = False, high: float | None = None) -> float:
    """A finite Python float within optional bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ModelError(f"{where}: {name} must be a real number, got {value!r}.")
    v = float(value)
    bad = not math.isfinite(v)
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v > high
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"<= {high}"
        rng = " and ".join(s for s in (lo, hi) if s) or "finite"
        raise ModelError(f"{where}: {name} must be {rng}, got {value!r}.")
    return v


@dataclass(frozen=True, eq=False)
class InputSpec(BitExact):
    """What the model receives, and how analog input becomes spikes.

    Parameters
    ----------
    shape : tuple of int
        Shape of one sample, e.g. ``(1, 28, 28)``.
    encoding : {"current", "poisson", "regular"}, default="current"
        ``current`` injects ``scale * x`` into the first layer every step;
        ``poisson`` spikes with probability ``x * max_rate * dt`` per step;
        ``regular`` spikes deterministically at rate ``x * max_rate``.
    max_rate : float, Hz, default=1000.0
        Rate of an input of value 1 (with ``dt = 1 ms``, one spike per step).
    scale : float, default=1.0
        Gain of the ``current`` encoding.
    """

    shape: tuple[int, ...]
    encoding: str = "current"
    max_rate: float = 1000.0
    scale: float = 1.0
    kind: ClassVar[str] = "input"

    def __post_init__(self) -> None:
        where = "InputSpec"
        shape = _check_size(check_shape(self.shape, where=where, name="shape"), where=where)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "encoding", _check_choice(self.encoding, ENCODINGS, where=where, name="encoding"))
        object.__setattr__(self, "max_rate", _check_real(self.max_rate, where=where, name="max_rate", low=0, low_open=True))
        object.__setattr__(self, "scale", _check_real(self.scale, where=where, name="scale"))

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True, eq=False)
class NeuronSpec(BitExact):
    r"""Neuron model of a population, in one of two forms.

    **Discrete form** (``r=None``, what the converters produce): the per-step
    update of docs/design.md, "Time and update order", where every input
    (spikes, analog current, bias) is added as it is:

    .. math::

        v[t] = \beta\, v[t-1] + (1 - \beta)\, v_{leak} + I[t] + b, \qquad
        s[t] = [v[t] \ge \theta], \qquad
        v[t] \leftarrow \begin{cases} v[t] - \theta s[t] & \text{reset="subtract"} \\
                                     v_{reset} & \text{reset="zero" and } s[t]=1 \end{cases}

    **ODE form** (``r`` given; NIR's neurons): the continuous-time equations of
    NIR, integrated exactly over each step (docs/nir.md, "Discretization"):
    IF :math:`\dot v = R I`; LIF and LI :math:`\tau_{mem} \dot v = (v_{leak} - v) + R I`;
    I :math:`\dot v = R I`; CubaLIF and CubaLI add a synaptic current
    :math:`\tau_{syn} \dot I = -I + w_{in} S`. A spike is a unit impulse
    (a weight ``w`` makes ``v`` jump by ``R w / \tau_{mem}``, or ``I`` by
    ``w_{in} w / \tau_{syn}``), an analog input or bias is a current held
    over the step.

    Parameters
    ----------
    kind : {"if", "lif", "srm", "cuba_lif", "li", "cuba_li", "i", "threshold"}, default="if"
        ``if`` integrate-and-fire; ``lif`` leaky integrate-and-fire; ``srm``
        spike-response model (seed 003, eqs. 1-4) with an alpha PSP kernel
        :math:`\varepsilon(t) = (t/\tau_s)\,e^{1 - t/\tau_s}` and an exponential
        refractory kernel :math:`\nu(t) = -A\theta\,e^{-t/\tau_r}` that carries
        the reset (``refractory_amplitude`` :math:`A`); ``cuba_lif`` a LIF fed by a
        current-based synapse (ODE form); ``li``, ``cuba_li``, ``i``
        non-spiking integrators for read-outs (ODE form); ``threshold`` a
        stateless comparison of each step's input with the threshold
        (NIR's ``Threshold``, discrete form).
    threshold : float or array, default=1.0
        :math:`\theta > 0`; an array must have the population's shape.
    reset : {"subtract", "zero"}, default="subtract"
        Soft reset (usual for ANN-to-SNN conversion) or hard reset to ``v_reset``
        (NIR's only reset).
    v_reset : float or array, default=0.0
        Potential after a hard reset.
    beta : float or array, default=1.0
        Discrete form: leak factor per step, :math:`e^{-dt/\tau_{mem}}`, in (0, 1].
        The ODE form derives it from ``tau_mem`` and leaves it 1.
    tau_syn, tau_refr : float, seconds, optional
        SRM kernel time constants (required for ``srm``); ``tau_syn`` (float
        or array) is also the synaptic time constant of ``cuba_lif`` and ``cuba_li``.
    v_init_fraction : float, default=0.0
        Initial membrane potential as a fraction of the threshold (0.5 gives
        :math:`\theta/2`).
    tau_mem : float or array, seconds, optional
        ODE form: membrane time constant of ``lif``, ``li``, ``cuba_lif``, ``cuba_li``.
    r : float or array, optional
        ODE form: the input resistance :math:`R`; ``None`` selects the discrete form.
    v_leak : float or array, default=0.0
        Resting potential the leak pulls towards.
    w_in : float or array, default=1.0
        ODE form: input weight of the synaptic current (``cuba_*`` only).
    strict_threshold : bool, default=False
        Spike where :math:`v > \theta` (NIR's rule) instead of :math:`v \ge \theta`.
    refractory_amplitude : float, default=1.0
        ``srm`` with ``reset="subtract"``: the amplitude :math:`A` of the
        refractory kernel in units of the threshold. 1 is a soft reset that
        decays with :math:`\tau_r` (evsnn's SRM before 0.3); 2 is seed 003's
        :math:`\nu(t) = -2\theta e^{-t/\tau_r}`. (A hard reset sets the kernel so that
        the potential is ``v_reset`` right after the spike.)
    """

    kind: str = "if"
    threshold: float | np.ndarray = 1.0
    reset: str = "subtract"
    v_reset: float | np.ndarray = 0.0
    beta: float | np.ndarray = 1.0
    tau_syn: float | np.ndarray | None = None
    tau_refr: float | None = None
    v_init_fraction: float = 0.0
    tau_mem: float | np.ndarray | None = None
    r: float | np.ndarray | None = None
    v_leak: float | np.ndarray = 0.0
    w_in: float | np.ndarray = 1.0
    strict_threshold: bool = False
    refractory_amplitude: float = 1.0

    #: Fields that may hold one value per neuron (an array of the population's shape).
    PER_NEURON: ClassVar[tuple[str, ...]] = ("threshold", "v_reset", "beta", "tau_syn", "tau_mem", "r", "v_leak",
                                             "w_in")

    def __post_init__(self) -> None:
        where = "NeuronSpec"
        kind = _check_choice(self.kind, NEURON_KINDS, where=where, name="kind")
        object.__setattr__(self, "reset", _check_choice(self.reset, RESETS, where=where, name="reset"))
        ode = self.r is not None
        if ode and kind not in ODE_KINDS:
            raise ModelError(f"{where}: r (the ODE form) applies to kinds {', '.join(map(repr, ODE_KINDS))}, "
                             f"got kind {kind!r}. Leave r=None for the discrete form.")
        if not ode and kind not in DISCRETE_KINDS:
            raise ModelError(f"{where}: kind {kind!r} exists only in the ODE form; give its resistance r "
                             "(and its time constants).")
        positive = {"threshold": True, "beta": True, "tau_mem": True, "tau_syn": True, "r": False}
        for name in self.PER_NEURON:
            value = getattr(self, name)
            if value is not None:
                value = _real_or_array(value, where=where, name=name, positive=positive.get(name, False))
            object.__setattr__(self, name, value)
        beta = self.beta
        if np.any(np.asarray(beta) > 1):
            raise ModelError(f"{where}: beta must be > 0 and <= 1, got {_show(beta)}.")
        if kind != "lif" and not _equals(beta, 1.0):
            raise ModelError(f"{where}: beta must be 1.0 for kind {kind!r} (only a discrete 'lif' leaks by beta; "
                             f"the ODE form derives its leak from tau_mem), got {_show(beta)}. Use kind='lif'.")
        if ode and not _equals(beta, 1.0):
            raise ModelError(f"{where}: the ODE form (r given) derives its leak from tau_mem; beta must stay 1.0, "
                             f"got {_show(beta)}.")
        leaky = kind in ("lif", "li", "cuba_lif", "cuba_li")
        if ode and leaky and self.tau_mem is None:
            raise ModelError(f"{where}: tau_mem (seconds) is required for kind {kind!r} in the ODE form.")
        if self.tau_mem is not None and not (ode and leaky):
            raise ModelError(f"{where}: tau_mem applies only to leaky kinds in the ODE form (r given), "
                             f"got {_show(self.tau_mem)} for kind {kind!r}.")
        needs_syn = kind in ("srm", "cuba_lif", "cuba_li")
        if needs_syn and self.tau_syn is None:
            raise ModelError(f"{where}: tau_syn (seconds) is required for kind {kind!r}.")
        if not needs_syn and self.tau_syn is not None:
            raise ModelError(f"{where}: tau_syn applies only to kinds 'srm', 'cuba_lif' and 'cuba_li', "
                             f"got {_show(self.tau_syn)} for kind {kind!r}.")
        if not kind.startswith("cuba") and not _equals(self.w_in, 1.0):
            raise ModelError(f"{where}: w_in applies only to kinds 'cuba_lif' and 'cuba_li', got {_show(self.w_in)}.")
        if kind == "srm":
            if isinstance(self.tau_syn, np.ndarray):
                raise ModelError(f"{where}: tau_syn of kind 'srm' must be one number, got an array.")
            value = _check_real(self.tau_refr, where=where, name="tau_refr", low=0, low_open=True) \
                if self.tau_refr is not None else None
            if value is None:
                raise ModelError(f"{where}: tau_refr (seconds) is required for kind 'srm'.")
            object.__setattr__(self, "tau_refr", value)
        elif self.tau_refr is not None:
            raise ModelError(f"{where}: tau_refr applies only to kind 'srm', got {self.tau_refr!r} for kind {kind!r}.")
        amplitude = _check_real(self.refractory_amplitude, where=where, name="refractory_amplitude", low=0,
                                low_open=True)
        if amplitude != 1.0 and (kind != "srm" or self.reset != "subtract"):
            raise ModelError(f"{where}: refractory_amplitude applies only to kind 'srm' with reset 'subtract', got "
                             f"{amplitude:g} for kind {kind!r} with reset {self.reset!r}.")
        object.__setattr__(self, "refractory_amplitude", amplitude)
        if not isinstance(self.strict_threshold, (bool, np.bool_)):
            raise ModelError(f"{where}: strict_threshold must be True or False, got {self.strict_threshold!r}.")
        object.__setattr__(self, "strict_threshold", bool(self.strict_threshold))
        object.__setattr__(self, "v_init_fraction",
                           _check_real(self.v_init_fraction, where=where, name="v_init_fraction"))

    @property
    def spiking(self) -> bool:
        """Whether this kind emits spikes (``li``, ``cuba_li`` and ``i`` are read-outs that never do)."""
        return self.kind in SPIKING_KINDS

    @property
    def ode(self) -> bool:
        """Whether the parameters are NIR's continuous-time ones (``r`` given)."""
        return self.r is not None

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-neuron fields that hold arrays, by name."""
        return {n: getattr(self, n) for n in self.PER_NEURON if isinstance(getattr(self, n), np.ndarray)}

    def describe(self) -> str:
        """One line, e.g. ``if θ=1 subtract``."""
        parts = [self.kind]
        if self.spiking:
            parts += [f"θ{'>' if self.strict_threshold else '='}{_show(self.threshold)}",
                      self.reset if self.reset == "subtract" else f"zero→{_show(self.v_reset)}"]
        if self.kind == "lif" and not self.ode:
            parts.append(f"β={_show(self.beta)}")
        if self.tau_mem is not None:
            parts.append(f"τm={_show(self.tau_mem)}s")
        if self.kind == "srm":
            parts.append(f"τs={self.tau_syn:g}s τr={self.tau_refr:g}s")
            if self.refractory_amplitude != 1.0:
                parts.append(f"ν={-self.refractory_amplitude:g}θ")
        elif self.tau_syn is not None:
            parts.append(f"τs={_show(self.tau_syn)}s")
        if self.ode:
            parts.append(f"R={_show(self.r)}")
        if not _equals(self.v_leak, 0.0):
            parts.append(f"v_leak={_show(self.v_leak)}")
        if not _equals(self.w_in, 1.0):
            parts.append(f"w_in={_show(self.w_in)}")
        if self.v_init_fraction:
            parts.append(f"v0={self.v_init_fraction:g}θ")
        return " ".join(parts)


def _real_or_array(value: object, *, where: str, name: str, positive: bool) -> float | np.ndarray:
    """A finite float, or a read-only float array (one value per neuron)."""
    if np.ndim(value) == 0 and not isinstance(value, np.ndarray):
        return _check_real(value, where=where, name=name, low=0 if positive else None, low_open=positive)
    return check_array(value, where=where, name=name, ensure_positive=positive)


def _equals(value: float | np.ndarray, number: float) -> bool:
    return bool(np.all(np.asarray(value) == number))


def _show(value: float | np.ndarray) -> str:
    if isinstance(value, np.ndarray):
        if value.size and value.min() == value.max():
            return f"{value.flat[0]:.3g}"
        return f"[{value.min():.3g}..{value.max():.3g}]" if value.size else "[]"
    return f"{value:g}"


@dataclass(frozen=True, eq=False)
class Population(BitExact):
    """A group of identical spiking neurons (Brian2's NeuronGroup, NIR's neuron node).

    Parameters
    ----------
    name : str
        A Python identifier, unique in the model (not ``"input"``).
    shape : tuple of int
        E.g. ``(1200,)`` or ``(12, 24, 24)`` (channels, height, width).
    neuron : NeuronSpec, default=NeuronSpec()
    bias : array of the population's shape, optional
        Constant input current added every step.
    """

    name: str
    shape: tuple[int, ...]
    neuron: NeuronSpec = field(default_factory=NeuronSpec)
    bias: np.ndarray | None = None
    kind: ClassVar[str] = "population"

    def __post_init__(self) -> None:
        check_name(self.name, what="Population")
        if self.name == INPUT:
            raise ModelError(f"Population name {INPUT!r} is reserved for the model input; rename it.")
        where = f"Population {self.name!r}"
        shape = _check_size(check_shape(self.shape, where=where, name="shape"), where=where)
        object.__setattr__(self, "shape", shape)
        if not isinstance(self.neuron, NeuronSpec):
            raise ModelError(f"{where}: neuron must be a NeuronSpec, got {type(self.neuron).__name__}.")
        for name, arr in self.neuron.arrays().items():
            if arr.shape != shape:
                raise ModelError(f"{where}: {name} must be a scalar or have shape {shape}, got {arr.shape}.")
        if self.bias is not None:
            object.__setattr__(self, "bias", check_array(self.bias, where=where, name="bias", shape=shape))

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __repr__(self) -> str:
        bias = "" if self.bias is None else ", bias"
        return f"Population({self.name!r}, shape={self.shape}, {self.neuron.describe()}{bias})"


@dataclass(frozen=True, eq=False)
class Projection(BitExact):
    """Synapses from ``source`` (a population or ``"input"``) to ``target``.

    Parameters
    ----------
    name : str
        A Python identifier, unique among projections.
    source, target : str
        Population names; ``source`` may be ``"input"``.
    op : Dense, Conv2d or Sparse
        The linear operator applied to the source's spikes.
    delay : int, steps, default=0
        Spikes of step ``t`` arrive at step ``t + delay``. Cycles are allowed
        only through projections with ``delay >= 1``.
    """

    name: str
    source: str
    target: str
    op: Operator
    delay: int = 0
    kind: ClassVar[str] = "projection"

    def __post_init__(self) -> None:
        check_name(self.name, what="Projection")
        where = f"Projection {self.name!r}"
        for end in ("source", "target"):
            value = getattr(self, end)
            if not isinstance(value, str):
                raise ModelError(f"{where}: {end} must be a population name, got {value!r}.")
        if not isinstance(self.op, (Dense, Conv2d, Sparse)):
            raise ModelError(f"{where}: op must be Dense, Conv2d or Sparse, got {type(self.op).__name__}.")
        if isinstance(self.delay, bool) or not isinstance(self.delay, (int, np.integer)) or self.delay < 0:
            raise ModelError(f"{where}: delay must be an integer number of steps >= 0, got {self.delay!r}.")
        if self.delay > MAX_DELAY:
            raise ModelError(f"{where}: delay must be at most MAX_DELAY = {MAX_DELAY} steps, got {self.delay!r}.")
        object.__setattr__(self, "delay", int(self.delay))

    def __repr__(self) -> str:
        return f"Projection({self.name!r}, {self.source} -> {self.target}, {describe_op(self.op)}, delay={self.delay})"


@dataclass(frozen=True, eq=False)
class SpikingModel(BitExact):
    """A spiking network: input, populations in topological order, projections.

    Parameters
    ----------
    input : InputSpec
    populations : sequence of Population
        In topological order: a projection with ``delay == 0`` must go from an
        earlier population (or the input) to a later one.
    projections : sequence of Projection
        Several projections may enter one population; their currents add.
    output : str, optional
        Name of the output population; default the last one.
    readout : {"count", "membrane"}, default="count"
        ``count``: the prediction is the output neuron with most spikes;
        ``membrane``: the output population never spikes and the prediction
        is the largest integrated input.
    dt : float, seconds, default=1e-3
        Length of one step.
    provenance : mapping, optional
        How the model was made (source network, normalization and its
        factors, seed, versions). Values: str, int, float, bool, None, lists
        of those, numpy arrays, and nested mappings with str keys.

    Examples
    --------
    >>> import numpy as np
    >>> from evsnn import SpikingModel, InputSpec, Population, Projection, Dense
    >>> m = SpikingModel(
    ...     input=InputSpec((2,)),
    ...     populations=[Population("out", (3,))],
    ...     projections=[Projection("w", "input", "out", Dense(np.ones((3, 2))))],
    ... )
    >>> m.n_neurons, m.n_synapses()
    (3, 6)
    """

    input: InputSpec
    populations: tuple[Population, ...]
    projections: tuple[Projection, ...]
    output: str | None = None
    readout: str = "count"
    dt: float = 1e-3
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = "SpikingModel"
        if not isinstance(self.input, InputSpec):
            raise ModelError(f"{where}: input must be an InputSpec, got {type(self.input).__name__}.")
        pops = _as_tuple(self.populations, Population, where=where, name="populations")
        projs = _as_tuple(self.projections, Projection, where=where, name="projections")
        if not pops:
            raise ModelError(f"{where}: populations must not be empty.")
        object.__setattr__(self, "populations", pops)
        object.__setattr__(self, "projections", projs)
        output = pops[-1].name if self.output is None else self.output
        object.__setattr__(self, "output", output)
        object.__setattr__(self, "readout", _check_choice(self.readout, READOUTS, where=where, name="readout"))
        object.__setattr__(self, "dt", _check_real(self.dt, where=where, name="dt", low=0, low_open=True))
        object.__setattr__(self, "provenance", _freeze_provenance(self.provenance, "provenance"))
        problems = self._problems()
        if problems:
            listing = "\n".join(f"  - {p}" for p in problems)
            raise ModelError(f"{where}: {len(problems)} problem(s) found:\n{listing}")

    def _problems(self) -> list[str]:
        """Whole-model checks (Brian2's ``before_run``): every offender, not just the first."""
        problems = []
        order = {INPUT: -1}
        for i, p in enumerate(self.populations):
            if p.name in order:
                problems.append(f"Population {p.name!r}: name is used more than once.")
            order.setdefault(p.name, i)
        shapes = {INPUT: self.input.shape, **{p.name: p.shape for p in self.populations}}
        seen: set[str] = set()
        for pr in self.projections:
            where = f"Projection {pr.name!r}"
            if pr.name in seen:
                problems.append(f"{where}: name is used more than once.")
            seen.add(pr.name)
            missing = [(end, n) for end, n in (("source", pr.source), ("target", pr.target)) if n not in shapes]
            if pr.target == INPUT:
                missing.append(("target", INPUT))
            for end, n in missing:
                problems.append(f"{where}: {end} {n!r} is not a population of this model.")
            if missing:
                continue
            problems += _shape_problems(pr, shapes[pr.source], shapes[pr.target])
            if pr.delay == 0 and order[pr.source] >= order[pr.target]:
                problems.append(
                    f"{where}: delay-0 projection from {pr.source!r} to {pr.target!r} goes against the "
                    "population order; list populations in topological order, or give a recurrent "
                    "projection delay >= 1."
                )
        if self.output not in order or self.output == INPUT:
            problems.append(f"output {self.output!r} is not a population of this model.")
        for p in self.populations:
            if not p.neuron.spiking and (p.name != self.output or self.readout != "membrane"):
                problems.append(f"Population {p.name!r}: kind {p.neuron.kind!r} never spikes; it can only be the "
                                "output population of a model with readout='membrane'.")
        return problems

    # --- access -------------------------------------------------------------------------
    def population(self, name: str) -> Population:
        """The population called ``name``."""
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(f"no population {name!r}; populations: {[p.name for p in self.populations]}")

    def projections_into(self, name: str) -> tuple[Projection, ...]:
        """Projections whose target is ``name``, in model order."""
        return tuple(pr for pr in self.projections if pr.target == name)

    @property
    def n_neurons(self) -> int:
        return sum(p.size for p in self.populations)

    @property
    def n_params(self) -> int:
        """Stored weights, biases and per-neuron thresholds."""
        n = sum(pr.op.n_params for pr in self.projections)
        for p in self.populations:
            n += 0 if p.bias is None else p.bias.size
            n += sum(a.size for a in p.neuron.arrays().values())
        return n

    def n_synapses(self) -> int:
        """(pre, post) pairs with a non-zero weight, over all projections."""
        return sum(pr.op.n_synapses() for pr in self.projections)

    def replace(self, **changes: Any) -> "SpikingModel":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_neuron(self, neuron: NeuronSpec) -> "SpikingModel":
        """A copy in which every population uses ``neuron`` (e.g. another threshold, leak or reset)."""
        return self.replace(populations=[dataclasses.replace(p, neuron=neuron) for p in self.populations])

    # --- the analog network this SNN approximates -----------------------------------------
    def ann_forward(self, x: np.ndarray, *, clip_rates: bool = False) -> dict[str, np.ndarray]:
        r"""Rate-model forward pass: the ANN that conversion maps onto this SNN.

        Each population's rate in spikes per step is
        :math:`a = \max(0, \sum_p W_p a_{src} + b) / \theta` (clipped to 1 with
        ``clip_rates``, since a neuron spikes at most once per step); a
        ``membrane`` readout returns its input current unrectified. The input
        rate is ``scale * x`` for ``current`` and ``x * max_rate * dt``
        (clipped to 1) for spike encodings. Delays are ignored (steady state).

        Parameters
        ----------
        x : array, shape (batch, *input.shape)

        Returns
        -------
        dict
            Population name -> activations of shape ``(batch, size)``.
        """
        x = np.asarray(x)
        if x.shape[1:] != self.input.shape:
            raise ModelError(f"ann_forward: x must have shape (batch, {', '.join(map(str, self.input.shape))}), "
                             f"got {x.shape}.")
        flat = x.reshape(x.shape[0], -1)
        if self.input.encoding == "current":
            acts = {INPUT: flat * self.input.scale}
        else:
            acts = {INPUT: np.clip(flat * self.input.max_rate * self.dt, 0, 1)}
        for pop in self.populations:
            current = sum(pr.op.forward(acts[pr.source]) for pr in self.projections_into(pop.name))
            current = current + (0 if pop.bias is None else pop.bias.reshape(-1))
            current = np.broadcast_to(current, (flat.shape[0], pop.size))
            if pop.name == self.output and self.readout == "membrane":
                acts[pop.name] = current
                continue
            th = pop.neuron.threshold
            rate = np.maximum(current, 0) / (th.reshape(-1) if isinstance(th, np.ndarray) else th)
            acts[pop.name] = np.minimum(rate, 1) if clip_rates else rate
        del acts[INPUT]
        return acts

    # --- display --------------------------------------------------------------------------
    def __repr__(self) -> str:
        pops = ", ".join(f"{p.name}{p.shape}" for p in self.populations)
        return (f"SpikingModel(input={self.input.shape} {self.input.encoding}, populations=[{pops}], "
                f"projections={len(self.projections)}, neurons={self.n_neurons}, "
                f"readout={self.readout!r} of {self.output!r}, dt={self.dt:g})")

    def summary(self) -> str:
        """A readable table: layers, shapes, neurons, parameters, synapses and provenance."""
        return summary(self)


def _as_tuple(items: object, cls: type, *, where: str, name: str) -> tuple:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ModelError(f"{where}: {name} must be a sequence of {cls.__name__}, got {type(items).__name__}.")
    items = tuple(items)
    for i, item in enumerate(items):
        if not isinstance(item, cls):
            raise ModelError(f"{where}: {name}[{i}] must be a {cls.__name__}, got {type(item).__name__}.")
    return items


def _shape_problems(pr: Projection, src: tuple[int, ...], dst: tuple[int, ...]) -> list[str]:
    where, op = f"Projection {pr.name!r}", pr.op
    problems = []
    if isinstance(op, Conv2d):
        if op.in_shape != src:
            problems.append(f"{where}: conv2d input_shape must equal the shape of {pr.source!r}, "
                            f"{src}, got {op.in_shape}.")
        if op.out_shape != dst:
            problems.append(f"{where}: conv2d output shape must equal the shape of {pr.target!r}, "
                            f"{dst}, got {op.out_shape}.")
        return problems
    n_src, n_dst = math.prod(src), math.prod(dst)
    if op.n_in != n_src:
        problems.append(f"{where}: {op.kind} input size must equal the size of {pr.source!r}, {n_src}, "
                        f"got {op.n_in}.")
    if op.n_out != n_dst:
        problems.append(f"{where}: {op.kind} output size must equal the size of {pr.target!r}, {n_dst}, "
                        f"got {op.n_out}.")
    return problems


# --- provenance ---------------------------------------------------------------------------
def _freeze_provenance(value: object, path: str) -> Mapping[str, Any]:
    """Normalise provenance to JSON-like values and arrays, so that it survives a file round trip."""
    if not isinstance(value, Mapping):
        raise ModelError(f"SpikingModel: {path} must be a mapping, got {type(value).__name__}.")
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or "/" in key or key.startswith((".", "encoding-")):
            raise ModelError(f"SpikingModel: {path} keys must be non-empty strings without '/', "
                             f"a leading '.' or the reserved prefix 'encoding-', got {key!r}.")
        out[key] = _provenance_value(item, f"{path}/{key}")
    return MappingProxyType(out)


def _provenance_value(item: object, path: str) -> Any:
    if isinstance(item, Mapping):
        return _freeze_provenance(item, path)
    if isinstance(item, np.ndarray):
        if item.dtype.kind not in "biuf":
            raise ModelError(f"SpikingModel: {path} must be a numeric array, got dtype {item.dtype}.")
        arr = np.array(item, dtype=item.dtype.newbyteorder("="), order="C", copy=True)
        arr.setflags(write=False)
        return arr
    if isinstance(item, np.generic):
        item = item.item()
    if isinstance(item, (list, tuple)):
        return [_provenance_value(v, f"{path}[{i}]") for i, v in enumerate(item)]
    if item is None or isinstance(item, (bool, int, float, str)):
        json.dumps(item)  # every remaining value must be JSON-encodable
        return item
    raise ModelError(
        f"SpikingModel: {path} must be str, int, float, bool, None, a list, a numpy array or a "
        f"mapping, got {type(item).__name__}. Convert it, e.g. with str()."
    )


def provenance_to_dict(prov: Mapping[str, Any]) -> dict[str, Any]:
    """Provenance as plain nested dicts (arrays become lists), e.g. for JSON output."""
    def plain(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v
    return plain(prov)

