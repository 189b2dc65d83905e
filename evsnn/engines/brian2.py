r"""The Brian2 reference engine (registered as ``"brian2"``).

Brian2 is the continuous-time simulator that timestep engines are checked
against. This engine builds one Brian2 ``Network`` per model (per input kind:
spikes or analog current) and reuses it for every sample: the state stored
right after the build is restored before each sample, the sample's input is
set, and ``Network.run`` simulates it. Nothing is rebuilt per sample.

The network
-----------
- one ``NeuronGroup`` per population. Discrete IF/LIF: ``v`` is updated
  once per Brian2 step by one code block,
  :math:`v \leftarrow \beta_f v + I + (1 - \beta_f) v_{leak}`, which is the
  exact solution of :math:`\tau_m \dot v = v_{leak} - v` over the step
  (:math:`\beta_f = e^{-dt'/\tau_m} = \beta^{dt'/dt}`) followed by the
  step's input as an impulse. SRM: the PSP kernel
  :math:`\epsilon(s) = (s/\tau_s)\,e^{1-s/\tau_s}` and the refractory kernel
  are written as linear ODEs (``x``, ``y``: alpha kernel; ``r``:
  exponential) that Brian2 integrates exactly; :math:`u = y + r`.
  ODE form (NIR's neurons; docs/nir.md, "Discretization"): the neuron's own
  differential equations, integrated by Brian2's ``exact`` method (IF and I,
  whose derivative is constant over a step: forward Euler, exact there),
  LIF/LI :math:`\tau_m \dot v = v_{leak} - v + R I_{held}`, CubaLIF/CubaLI
  :math:`\tau_s \dot I_s = w_{in} I_{held} - I_s`,
  :math:`\tau_m \dot v = v_{leak} - v + R I_s`, IF/I :math:`\dot v = R I_{held}`,
  with :math:`I_{held}` the analog input and bias held over the step; the
  step's spikes follow as unit impulses (``v += R w / τ_m``, ``I_s += w_in w
  / τ_s``, IF/I ``v += R w``). Threshold: stateless, ``v`` is the step's input.
  Then the threshold ``v >= th`` (``v > th`` where strict) and the reset:
  subtract (``v - th``) or to ``v_reset``. Every per-neuron field of
  :class:`~evsnn.NeuronSpec` is a per-neuron constant of the group;
- one ``Synapses`` per projection with only the non-zero weights (dense:
  ``W != 0``; conv2d: its unrolled (pre, post) index arrays; sparse: the CSR
  entries), ``on_pre`` adds the weight to the target's input of the step;
- spike input is a ``SpikeGeneratorGroup`` fed the shared spike trains
  (:meth:`~evsnn.encoding.EncodedInput.spike_events`); analog input is the
  projected current :math:`W x` (computed once per sample with the
  operator's ``forward``, as every engine does), held in a per-neuron
  constant of the target group and set per sample. The ``current``
  encoding is constant in time, so this is what a ``TimedArray`` of it
  would give, without a steps x neurons table per sample; a delayed analog
  projection is gated by ``t_in_timesteps``.

Time and update order
---------------------
``propagation="same_step"`` (default) is the event engine's convention
(docs/design.md, "Time and update order"): a delay-0 spike crosses every layer
within the step it was emitted. Brian2's schedule is arranged for it: all
objects run in the ``groups`` slot, ordered per population (in model order)
as synaptic pathways into it, its update, its thresholder, its resetter.
A projection's delay ``d`` becomes a synaptic delay of ``d`` steps (``d - 1``
for a projection from a later population, whose pathway runs before that
population's thresholder and so reads its spikes one step late).

``propagation="next_step"`` is Brian2's default schedule (``groups``,
``thresholds``, ``synapses``, ``resets``): a spike reaches its target one
Brian2 step later than ``same_step`` (one step per layer). At ``dt`` equal to
the model's, this equals the event engine on the model whose spike-carried
projections have their delay raised by one.

The order in which inputs are summed is the event engine's, so that float64
runs agree bit for bit: per target, pathways run in order of (delay
descending, source in model order, projection in model order); dense
pathways add each spike's weights into the input accumulator in order of
source index, conv2d/sparse pathways (after the first) accumulate into their
own variable that is added to the accumulator right after; then the analog
currents and the bias are added, and the sum is applied in one update.
The ODE form runs, per population, the held input (``I_held``), Brian2's
state updater over the step, then the impulses of the summed spike input:
the event engine's order; its float64 spikes agree with the event engine's
(its potentials to rounding: Brian2 evaluates the same exact solution in
another arithmetic order).

Finer dt
--------
``dt=model.dt / k`` (``k`` integer) runs a continuous-time reference with
the same input spike times, the same delays in seconds, and currents in the
same units. An input spike of step ``t`` reaches its target at the end of
step ``t`` (its last Brian2 step), as at ``dt``; an SRM target, whose
kernel starts at the start of the step, gets it at its first. A discrete
IF/LIF (and SRM) takes an analog current or bias ``I`` per model step as
``I / k`` per Brian2 step, a spike still adds its weight, and a LIF decays
by :math:`\beta^{1/k}` per Brian2 step; the ODE form keeps its held
currents as they are and is integrated exactly over each Brian2 step, so
its sub-threshold state is the one at ``dt``. A threshold neuron compares
the input of each whole model step (summed over its Brian2 steps) at the
step's last Brian2 step. What a finer ``dt`` changes is when a threshold
crossing inside a step is seen, and with it the reset and the spikes it
sends. Spike counts, SOPs and rasters are binned by model step (a neuron
may then spike more than once per step); a ``membrane`` output is read at
the end of each model step.

SOPs are counted from Brian2's own recorded spikes (``SpikeMonitor`` on the
input and every population) with the rule every engine shares,
:meth:`~evsnn.ops.Dense.fan_out`: a spike of neuron ``j`` through projection
``p`` costs the number of non-zero weights ``j`` has in ``p`` (nominal: its
connections, zeros included).

Neuron constants (threshold, leak per Brian2 step, reset, ``v_reset``,
initial potential, SRM time constants) come from
:class:`~evsnn.engines.neurons.NeuronParams`, derived from the model once, as
for the event engine; the ODE form's ``tau_mem``, ``tau_syn``, ``r``,
``v_leak`` and ``w_in`` come from the :class:`~evsnn.NeuronSpec` itself (Brian2
solves the equations; the event engine's coefficients are not used).

SRM semantics (every engine: :mod:`evsnn.engines.neurons`)
---------------------------------------------------------
With :math:`I[t]` the input of step ``t`` (spikes delivered at ``t``, analog
current, bias), arriving at the start of the step, and the state read at its
end:

.. math::

    u[t] = \sum_{k=0}^{t} \epsilon\big((k+1)\,dt\big)\, I[t-k] + r[t], \qquad
    s[t] = [u[t] \ge \theta],

    r[t] = e^{-dt/\tau_r}\, r^+[t-1], \qquad
    r^+[t] = r[t] - A\theta s[t] \ (\text{subtract}) \ \text{ or } \
             r[t] + (v_{reset} - u[t])\, s[t] \ (\text{zero}),

with :math:`r^+[-1] = v_{init}\,\theta` (``v_init_fraction``) and :math:`A` the
``refractory_amplitude`` (seed 003's refractory kernel :math:`-2\theta e^{-t/\tau_r}`
is :math:`A = 2`). The reset is carried by the refractory kernel and fades with
:math:`\tau_r`. ``beta`` must be 1 for SRM neurons. Brian2 integrates the
kernels as ODEs (the alpha kernel as two linear ODEs, the input kicking the
first by :math:`e` at the start of the step); the event and torch engines run
their exact recursions.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..encoding import EncodedInput
from ..errors import EngineError
from ..model import INPUT, NeuronSpec, Population, Projection, SpikingModel
from ..ops import Conv2d, Dense, Sparse
from ..settings import PROPAGATIONS
from . import memory, register_engine
from .base import BatchOutput, Engine
from .neurons import NeuronParams

try:
    import brian2 as b2
except ImportError as err:  # pragma: no cover - brian2 is a dependency, but may be missing
    raise EngineError("Engine 'brian2' needs the brian2 package; install it with `pip install brian2`.") from err

__all__ = ["Brian2Engine", "PROPAGATIONS", "CODEGENS", "BRIAN2_KINDS"]

#: Neuron kinds this engine integrates: every kind of the IR, in both forms.
BRIAN2_KINDS = ("if", "lif", "srm", "cuba_lif", "li", "cuba_li", "i", "threshold")

try:  # newer pyparsing deprecates the names Brian2's parsers call, once per parsed statement
    from pyparsing import PyparsingDeprecationWarning as _ParserWarning
except ImportError:  # pragma: no cover - older pyparsing warns about nothing
    _ParserWarning = None


@contextlib.contextmanager
def _quiet_parser():
    """Silence pyparsing's deprecation warnings about Brian2's calls (noise, not about the user's model)."""
    with warnings.catch_warnings():
        if _ParserWarning is not None:
            warnings.simplefilter("ignore", _ParserWarning)
        yield


CODEGENS = ("numpy", "cython")


def _codeobj_class(codegen: str):
    if codegen == "numpy":
        from brian2.codegen.runtime.numpy_rt import NumpyCodeObject

        return NumpyCodeObject
    try:
        from brian2.codegen.runtime.cython_rt import CythonCodeObject
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise EngineError("Engine 'brian2': codegen='cython' needs Cython; install it or use codegen='numpy'.") from err
    if not CythonCodeObject.is_available():
        raise EngineError("Engine 'brian2': codegen='cython' needs Cython and a working C compiler; "
                          "none was found. Use codegen='numpy'.")
    return CythonCodeObject


def synapse_arrays(op, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero synapses of an operator as ``(pre, post, weight)``, sorted by (pre, post)."""
    if isinstance(op, Dense):
        pre, post = np.nonzero(op.weight.T)
        return pre.astype(np.int64), post.astype(np.int64), op.weight[post, pre].astype(dtype)
    coo = op.to_csr().tocoo()
    keep = coo.data != 0
    post, pre, w = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64), coo.data[keep]
    order = np.lexsort((post, pre))
    return pre[order], post[order], w[order].astype(dtype)


def _chain_sum(terms: list[str], lines: list[str]) -> str:
    """Sum ``terms`` left to right, one binary sum per statement appended to ``lines``; return the result's name.

    Brian2 may reorder the terms of a longer sum (float64 equality with the event engine needs its order), and
    its numpy target turns ``a = a + b`` into an in-place add, which would write through a temporary that
    aliases a constant array: each partial sum goes into a new temporary.
    """
    cur = terms[0]
    for n, term in enumerate(terms[1:], start=1):
        lines.append(f"sum_in{n} = {cur} + {term}")
        cur = f"sum_in{n}"
    return cur


@dataclass
class _Built:
    """One Brian2 network for one input kind, with handles to what changes per sample."""

    net: object
    dt: float
    generator: object | None
    analog: list[tuple[object, str, Projection]]  # (group, variable, projection)
    spike_monitors: dict[str, object]  # population name (or INPUT) -> SpikeMonitor
    state_monitor: object | None  # v of a membrane readout
    objects: dict[str, object] = field(default_factory=dict)  # Brian2 objects by role, for tests and inspection


class Brian2Engine(Engine):
    """Brian2 simulation of a :class:`~evsnn.SpikingModel` (the continuous-time reference).

    Parameters
    ----------
    model : SpikingModel
    dtype : {"float32", "float64"}, default="float32"
        Precision of Brian2's state variables and weights. Cross-validation
        uses float64.
    propagation : {"same_step", "next_step"}, default="same_step"
        ``same_step``: a delay-0 spike crosses every layer within its step
        (the event engine's convention); ``next_step``: Brian2's default
        schedule, one Brian2 step per layer.
    codegen : {"numpy", "cython"}, default="numpy"
        Brian2's code-generation target; ``numpy`` needs no compiler,
        ``cython`` compiles on first use (cached).
    dt : float, seconds, optional
        Brian2's time step; ``model.dt`` divided by a positive integer (e.g.
        ``model.dt / 10``). Default ``model.dt``.

    Notes
    -----
    Samples run one after the other on the one network (restored to its
    initial state before each): at batch 64 each sample costs what it costs
    at batch 1. :attr:`timing` accumulates the build time, the seconds
    spent inside ``Network.run`` and per sample overall (restore, input,
    run, spike read-out). Brian2 objects are named by position (``pop0``,
    ``proj1``), the same in every engine, so that the cython target reuses
    the code it compiled for another model of the same structure.
    """

    name = "brian2"

    def __init__(self, model: SpikingModel, *, dtype: str = "float32", propagation: str = "same_step",
                 codegen: str = "numpy", dt: float | None = None):
        super().__init__(model, dtype=dtype)
        where = f"Engine {self.name!r}"
        if propagation not in PROPAGATIONS:
            raise EngineError(f"{where}: propagation must be one of {', '.join(map(repr, PROPAGATIONS))}, "
                              f"got {propagation!r}.")
        if codegen not in CODEGENS:
            raise EngineError(f"{where}: codegen must be one of {', '.join(map(repr, CODEGENS))}, got {codegen!r}.")
        self.propagation, self.codegen = propagation, codegen
        self.substeps = self._substeps(dt)
        self.dt_brian2 = model.dt / self.substeps
        for pop in model.populations:
            self._check_supported(pop)
        self.params = {p.name: NeuronParams.from_population(p, self.dtype, engine=self.name, dt=model.dt,
                                                            kinds=BRIAN2_KINDS, substeps=self.substeps)
                       for p in model.populations}
        self.check_tables()
        self.codeobj_class = _codeobj_class(codegen)
        self.index = {p.name: i for i, p in enumerate(model.populations)}
        self.rank = {pr.name: j for j, pr in enumerate(model.projections)}
        self.timing = {"samples": 0, "run_s": 0.0, "sample_s": 0.0, "build_s": 0.0}
        self._built: dict[bool, _Built] = {}

    def _check_supported(self, pop: Population) -> None:
        """Refuse, by name, the ODE-form neurons whose exact solution Brian2 cannot evaluate (never run them wrong).

        A current-based neuron's solution divides by ``tau_mem - tau_syn``: Brian2 solves the equal case
        separately, so either every neuron has ``tau_syn == tau_mem`` or none does; and it evaluates
        ``exp(dt / tau)``, which overflows float64 beyond ``dt / tau = 700``.
        """
        spec = pop.neuron
        if not (spec.ode and spec.kind.startswith("cuba")):
            return
        where = f"Population {pop.name!r}: engine {self.name!r}"
        tau_mem, tau_syn = (np.broadcast_to(np.asarray(t, dtype=np.float64).reshape(-1), (pop.size,))
                            for t in (spec.tau_mem, spec.tau_syn))
        equal = tau_mem == tau_syn
        if equal.any() and not equal.all():
            raise EngineError(f"{where} integrates tau_syn == tau_mem for all neurons of a population or for none; "
                              f"{int(equal.sum())} of {pop.size} are equal. Run it on the event engine.")
        ratio = self.dt_brian2 / min(tau_mem.min(), tau_syn.min())
        if not equal.all() and ratio > 700:
            raise EngineError(f"{where}: a time constant of {min(tau_mem.min(), tau_syn.min()):g} s is below "
                              f"dt / 700; Brian2's exact solution would overflow. Pass a finer dt.")

    def _spread(self, p: NeuronParams) -> bool:
        """Whether analog input and bias are divided among the Brian2 steps of a model step (the discrete IF/LIF
        and SRM at a finer dt); the ODE form holds them as currents, a threshold neuron sees each step's whole."""
        return self.substeps != 1 and not p.ode and p.kind != "threshold"

    def _equations(self, pop: Population, held: bool) -> tuple[list[str], object]:
        """A population's own NeuronGroup equations (its inputs are added by the caller) and Brian2's method.

        ``held``: the ODE form has analog input or bias, held over the step in ``I_held``.
        """
        p, spec = self.params[pop.name], pop.neuron
        eqs = ["th : 1 (constant)"]
        if p.kind == "srm":
            return eqs + ["dx/dt = -x / tau_s : 1", "dy/dt = (x - y) / tau_s : 1", "dr/dt = -r / tau_r : 1",
                          "v = y + r : 1", "tau_s : second (constant, shared)", "tau_r : second (constant, shared)",
                          "e_kick : 1 (constant, shared)", "jump : 1 (constant)"], "exact"
        if not p.ode:  # updated by run_regularly code alone
            eqs.append("v : 1")
            if p.kind == "lif":
                eqs.append("beta_step : 1 (constant)")
            if p.leak is not None:
                eqs.append("leak_step : 1 (constant)")
            return eqs, ("exact", "euler", "heun")
        eqs.append("R : 1 (constant)")
        if held:
            eqs.append("I_held : 1")
        if p.kind in ("if", "i"):  # dv/dt = R I: forward Euler is exact for a derivative constant over the step
            eqs.append("dv/dt = R * I_held / second : 1" if held else "v : 1")
            return eqs, ("exact", "euler")
        eqs += ["tau_mem : second (constant)", "v_leak : 1 (constant)"]
        if p.kind in ("lif", "li"):
            eqs.append(f"dv/dt = (v_leak - v{' + R * I_held' if held else ''}) / tau_mem : 1")
            return eqs, "exact"
        tau_syn = self._tau_syn(spec)
        if tau_syn == "tau_syn":
            eqs.append("tau_syn : second (constant)")
        eqs += ["w_in : 1 (constant)", "dv/dt = (v_leak - v + R * I_s) / tau_mem : 1",
                f"dI_s/dt = ({'w_in * I_held - ' if held else '-'}I_s) / {tau_syn} : 1"]
        return eqs, "exact"

    @staticmethod
    def _tau_syn(spec: NeuronSpec) -> str:
        """The name of a current-based neuron's synaptic time constant in its equations: ``tau_mem`` where they
        are equal (Brian2's general solution divides by their difference), else ``tau_syn``."""
        return "tau_mem" if np.all(np.asarray(spec.tau_mem) == np.asarray(spec.tau_syn)) else "tau_syn"

    def _impulse(self, pop: Population) -> str:
        """The ODE form's jump for the step's summed spike input ``I_syn`` (unit impulses; docs/nir.md)."""
        kind = pop.neuron.kind
        if kind in ("if", "i"):
            return "v = v + R * I_syn"
        if kind in ("lif", "li"):
            return "v = v + R * I_syn * second / tau_mem"
        return f"I_s = I_s + w_in * I_syn * second / {self._tau_syn(pop.neuron)}"

    def _substeps(self, dt: float | None) -> int:
        if dt is None:
            return 1
        ok = not isinstance(dt, bool) and isinstance(dt, (int, float, np.integer, np.floating))
        ratio = self.model.dt / float(dt) if ok and math.isfinite(float(dt)) and dt > 0 else 0.0
        k = round(ratio)
        if k < 1 or abs(ratio - k) > 1e-9 * k:
            raise EngineError(f"Engine {self.name!r}: dt must be the model's dt ({self.model.dt:g} s) divided by a "
                              f"positive integer, got {dt!r}. Pass e.g. dt=model.dt / 10.")
        return int(k)

    @property
    def settings(self) -> dict:
        return {**super().settings, "propagation": self.propagation, "codegen": self.codegen,
                "brian2_dt": self.dt_brian2, "substeps": self.substeps}

    def table_bytes(self) -> int:
        objects = len(self.model.populations) + len(self.model.projections)
        total = 150_000 * objects  # Brian2's objects, namespaces and generated code
        for pr in self.model.projections:
            op = pr.op
            synapses, connections = (int(a.sum()) for a in op.fan_out())
            total += 16 * op.n_in + 64 * synapses  # Brian2's synapse arrays, spike queue and stored copy
            # what synapse_arrays builds on the way: (pre, post, weight) of every synapse, and for a conv the
            # (C_out, C_in, OH, OW, kh, kw) box of to_csr
            total += 24 * synapses
            if isinstance(op, Conv2d):
                total += op.n_out * op.weight[0].size * 9 + connections * 24
            elif isinstance(op, Sparse):
                total += op.data.size * 24
            else:
                total += op.weight.size
        return total

    def batch_bytes(self, batch: int, steps: int, spiking: bool) -> int:
        fine = steps * self.substeps
        neurons = sum(p.size for p in self.model.populations) + (self.model.input.size if spiking else 0)
        # one sample at a time: its monitored spikes (time, index and their binned copies), a membrane trace
        monitored = int(memory.RASTER_DENSITY * fine * neurons) * 8 * 6
        trace = fine * self.model.population(self.model.output).size * 8 * 2
        return monitored + trace + 64 * neurons

    # --- building ------------------------------------------------------------------------------
    def prepare(self, encoded: EncodedInput, batch_size: int | None = None) -> None:
        """Build the network for this kind of input (spikes or analog current), once (samples run one by one, so
        the batch size changes nothing)."""
        self.network(encoded.is_spiking)

    def network(self, spiking: bool) -> _Built:
        """The Brian2 network for spike input (``True``) or analog input, built on first use."""
        if spiking not in self._built:
            begin = time.perf_counter()
            with _quiet_parser():
                self._built[spiking] = self._build(spiking)
            self.timing["build_s"] += time.perf_counter() - begin
        return self._built[spiking]

    def _incoming(self, pop: Population, spiking: bool) -> tuple[list[Projection], list[Projection]]:
        """Spike-carried projections into ``pop`` in summation order, and analog ones in model order."""
        model = self.model
        rank = self.rank
        src = lambda pr: -1 if pr.source == INPUT else self.index[pr.source]  # noqa: E731
        into = model.projections_into(pop.name)
        silent = model.output if model.readout == "membrane" else None  # a membrane output never spikes
        # A projection without a non-zero weight adds only zeros: it gets no Synapses object (its SOPs, zero,
        # and nominal SOPs are still counted from its source's spikes).
        spikes = [pr for pr in into if (pr.source != INPUT or spiking) and pr.source != silent
                  and pr.op.fan_out()[0].any()]
        spikes.sort(key=lambda pr: (-pr.delay, src(pr), rank[pr.name]))
        analog = [pr for pr in into if pr.source == INPUT and not spiking]
        return spikes, analog

    def _build(self, spiking: bool) -> _Built:
        model, dtype, k = self.model, self.dtype, self.substeps
        same = self.propagation == "same_step"
        cc, sec = self.codeobj_class, b2.second
        clock = b2.Clock(dt=self.dt_brian2 * sec, name="evsnn_clock")
        objects: list = []
        roles: dict[str, object] = {}
        order = iter(range(1, 10**6))
        schedule = lambda obj, when: (setattr(obj, "when", "groups" if same else when),  # noqa: E731
                                      setattr(obj, "order", next(order)))

        generator = None
        if spiking:
            generator = b2.SpikeGeneratorGroup(model.input.size, np.zeros(0, dtype=np.int64), np.zeros(0) * sec,
                                               clock=clock, when="groups" if same else "thresholds", order=0,
                                               name="evsnn_input", codeobj_class=cc)
            objects.append(generator)
            roles["input"] = generator

        groups: dict[str, object] = {}
        plans = {}
        membrane_group = None
        for pop in model.populations:  # every group first: a projection may come from a later population
            p = self.params[pop.name]
            membrane = model.readout == "membrane" and pop.name == model.output
            incoming, analog = self._incoming(pop, spiking)
            partial = {n for n, pr in enumerate(incoming) if n > 0 and not isinstance(pr.op, Dense)}
            held = p.ode and bool(analog or pop.bias is not None)  # the ODE form's input held over the step
            plans[pop.name] = (incoming, analog, partial, membrane, held)
            eqs, method = self._equations(pop, held)
            if incoming:
                eqs.append("I_syn : 1")
            eqs += [f"I_p{n} : 1" for n in sorted(partial)]
            eqs += [f"I_ext{n} : 1 (constant)" for n in range(len(analog))]
            if pop.bias is not None:
                eqs.append("bias : 1 (constant)")
            if self._spread(p) and (analog or pop.bias is not None):
                eqs.append("substep_fraction : 1 (constant, shared)")
            if p.reset == "zero" and not membrane:
                eqs.append("v_reset : 1 (constant)")
            threshold = reset = None
            if not membrane:
                threshold = "v > th" if p.strict else "v >= th"
                if p.kind == "srm":
                    reset = "r = r - jump" if p.reset == "subtract" else "r = v_reset - y"  # jump: A theta
                else:
                    reset = "v = v - th" if p.reset == "subtract" else "v = v_reset"
            else:
                membrane_group = pop.name
            group = b2.NeuronGroup(pop.size, "\n".join(eqs), threshold=threshold, reset=reset, method=method,
                                   namespace={}, dtype=dtype, clock=clock, name=f"pop{self.index[pop.name]}",
                                   codeobj_class=cc)
            self._initialise(group, pop)
            groups[pop.name] = group
            objects.append(group)
            roles[f"group:{pop.name}"] = group

        pathways: list[tuple[object, object | None]] = []  # next_step: (pathway, merge), targets in model order
        analog_vars: list[tuple[object, str, Projection]] = []
        for i, pop in enumerate(model.populations):
            p, group = self.params[pop.name], groups[pop.name]
            incoming, analog, partial, membrane, held = plans[pop.name]
            for n, pr in enumerate(incoming):  # pathways into this population, in summation order
                source = generator if pr.source == INPUT else groups[pr.source]
                later = pr.source != INPUT and self.index[pr.source] >= i
                # an input spike of step t is sent at its first Brian2 step; all but SRM (whose kernel starts
                # at the start of the step) receive it at the end of step t, its last Brian2 step
                late = k - 1 if pr.source == INPUT and p.kind != "srm" else 0
                syn = self._synapses(pr, source, group, clock, f"I_p{n}" if n in partial else "I_syn",
                                     delay=pr.delay * k + late - (1 if same and later else 0))
                objects.append(syn)
                roles[f"synapses:{pr.name}"] = syn
                merge = None
                if n in partial:
                    merge = group.run_regularly(f"I_syn = I_syn + I_p{n}\nI_p{n} = 0", clock=clock,
                                                name=f"{syn.name}_merge", codeobj_class=cc)
                    objects.append(merge)
                    roles[f"merge:{pr.name}"] = merge
                if same:
                    schedule(syn.pre, "synapses")
                    if merge is not None:
                        schedule(merge, "synapses")
                else:
                    pathways.append((syn.pre, merge))

            # the analog currents and the bias, in the event engine's order (a discrete LIF or IF spreads them
            # over the Brian2 steps of a model step; the ODE form holds them; a threshold neuron sees them whole)
            spread = " * substep_fraction" if self._spread(p) else ""
            outside = []
            for n, pr in enumerate(analog):
                term = f"I_ext{n}" + spread
                if pr.delay:
                    term += f" * int(t_in_timesteps >= {pr.delay * k})"
                outside.append(term)
                analog_vars.append((group, f"I_ext{n}", pr))
            if pop.bias is not None:
                outside.append("bias" + spread)
            steps_of_update = []  # (role, code) in the order they run within the step
            if held:  # the input held over the step, then the exact solution over it, then the impulses
                lines = []
                total = _chain_sum(outside, lines)
                steps_of_update.append(("held", lines + [f"I_held = {total}"]))
            if p.ode:
                steps_of_update.append(("integrate", group.state_updater))
                if incoming:
                    steps_of_update.append(("update", [self._impulse(pop), "I_syn = 0"]))
            else:
                terms = (["I_syn"] if incoming else []) + outside
                lines = []
                cur = _chain_sum(terms, lines) if terms else None
                if p.kind == "threshold":  # stateless: the potential is the input of the (model) step
                    last = f"int(t_in_timesteps % {k} == {k - 1})"
                    lines.append(f"v = {cur or 0}" + (f" * {last}" if k != 1 else ""))
                    if incoming:
                        lines.append("I_syn = 0" if k == 1 else f"I_syn = I_syn * (1 - {last})")
                else:
                    if p.kind == "srm":
                        if terms:
                            lines.append(f"x = x + e_kick * {cur}")
                    elif p.kind == "lif":
                        lines.append(f"v = beta_step * v + {cur}" if terms else "v = beta_step * v")
                    elif terms:
                        lines.append(f"v = v + {cur}")
                    if p.leak is not None:
                        lines.append("v = v + leak_step")
                    if incoming:
                        lines.append("I_syn = 0")
                if lines:
                    steps_of_update.append(("update", lines))
                if p.kind == "srm":
                    steps_of_update.append(("integrate", group.state_updater))
            for role, code in steps_of_update:
                if isinstance(code, list):
                    code = group.run_regularly("\n".join(code), clock=clock, name=f"pop{i}_{role}",
                                               codeobj_class=cc)
                    objects.append(code)
                    roles[f"{role}:{pop.name}"] = code
                schedule(code, "groups")
            if not membrane:
                schedule(group.thresholder["spike"], "thresholds")
                schedule(group.resetter["spike"], "resets")

        if not same:  # Brian2's default slots; in the synapses slot, pathways into one target in summation order
            for pre, merge in pathways:
                pre.when, pre.order = "synapses", next(order)
                if merge is not None:
                    merge.when, merge.order = "synapses", next(order)

        monitors = {}
        for name, source in ([(INPUT, generator)] if spiking else []) + list(groups.items()):
            if name == membrane_group:
                continue
            monitors[name] = b2.SpikeMonitor(source, record=True, when="end", order=0,
                                             name=f"{source.name}_spikes", codeobj_class=cc)
            objects.append(monitors[name])
        state_monitor = None
        if membrane_group is not None:
            state_monitor = b2.StateMonitor(groups[membrane_group], "v", record=True, clock=clock, when="end", order=1,
                                            name=f"{groups[membrane_group].name}_v", codeobj_class=cc)
            objects.append(state_monitor)

        net = b2.Network(*objects, name="evsnn_network")
        net.store("initial")
        return _Built(net=net, dt=self.dt_brian2, generator=generator, analog=analog_vars,
                      spike_monitors=monitors, state_monitor=state_monitor, objects=roles)

    def _initialise(self, group, pop: Population) -> None:
        """Constants and initial state of a population: from its NeuronParams (the event engine's), and for the
        ODE form the NeuronSpec's own time constants, resistance, resting potential and input weight."""
        p, k, spec = self.params[pop.name], self.substeps, pop.neuron
        values = {"th": p.threshold}
        if p.kind == "srm":
            values.update(r=p.v_init, e_kick=math.e, jump=p.refractory_jump)
        else:
            values["v"] = p.v_init
        optional = {"beta_step": p.beta, "leak_step": p.leak, "v_reset": p.v_reset, "substep_fraction": 1.0 / k,
                    "R": spec.r, "tau_mem": spec.tau_mem, "tau_syn": spec.tau_syn, "v_leak": spec.v_leak,
                    "w_in": spec.w_in}
        values.update({name: value for name, value in optional.items() if name in group.variables})
        if pop.bias is not None:
            values["bias"] = pop.bias.reshape(-1)
        for name, value in values.items():
            var = group.variables[name]
            value = np.asarray(value, dtype=np.float64)
            if not var.scalar:
                value = np.broadcast_to(value.reshape(-1), (pop.size,))
            var.set_value(np.asarray(value, dtype=var.dtype))
        if p.kind == "srm":
            group.tau_s = p.tau_syn * b2.second
            group.tau_r = p.tau_refr * b2.second

    def _synapses(self, pr: Projection, source, target, clock, variable: str, *, delay: int):
        """A Synapses object with the projection's non-zero weights; ``on_pre`` adds them to ``variable``."""
        pre, post, w = synapse_arrays(pr.op, self.dtype)
        syn = b2.Synapses(source, target, "w : 1 (constant)", on_pre=f"{variable}_post += w",
                          delay=delay * self.dt_brian2 * b2.second, namespace={}, dtype=self.dtype, clock=clock,
                          name=f"proj{self.rank[pr.name]}", codeobj_class=self.codeobj_class)
        syn.connect(i=pre, j=post)
        syn.variables["w"].set_value(w)
        return syn

    # --- running -------------------------------------------------------------------------------
    def run_batch(self, encoded: EncodedInput, start: int, stop: int, record: frozenset[str]) -> BatchOutput:
        model, dtype, k = self.model, self.dtype, self.substeps
        built = self.network(encoded.is_spiking)
        batch, steps = stop - start, encoded.steps
        out = BatchOutput.empty(model, encoded, batch, record)
        sec = b2.second
        duration = steps * k * built.dt * sec
        if encoded.is_spiking:
            sample, step, neuron = encoded.spike_events(start, stop)
            bounds = np.searchsorted(sample, np.arange(start, stop + 1))
        else:
            x = encoded.current(start, stop)
            currents = {}
            for _, _, pr in built.analog:
                currents[pr.name] = pr.op.forward(x.astype(dtype)).astype(dtype)
                out.input_macs[pr.name][:] = pr.op.input_macs(x)[:, None]
        spike_fed = [pr for pr in model.projections if pr.name in out.sops and pr.source in built.spike_monitors]

        for b in range(batch):
            begin = time.perf_counter()
            built.net.restore("initial")
            if encoded.is_spiking:
                lo, hi = bounds[b], bounds[b + 1]
                built.generator.set_spikes(neuron[lo:hi], step[lo:hi] * k * built.dt * sec, sorted=True)
            else:
                for group, variable, pr in built.analog:
                    group.variables[variable].set_value(currents[pr.name][b])
            with _quiet_parser():
                run_start = time.perf_counter()
                built.net.run(duration, namespace={})
                run_time = time.perf_counter() - run_start

            spikes = {}
            for name, mon in built.spike_monitors.items():
                fine = np.rint(np.asarray(mon.variables["t"].get_value()) / built.dt).astype(np.int64)
                spikes[name] = (fine // k, np.asarray(mon.variables["i"].get_value()).astype(np.int64))
            for pop in model.populations:
                if pop.name not in spikes:
                    continue  # membrane readout
                st, nr = spikes[pop.name]
                out.spike_counts[pop.name][b] = np.bincount(st, minlength=steps)
                if pop.name == model.output:
                    np.add.at(out.output[b], (st, nr), 1)
                if pop.name in out.rasters:
                    out.rasters[pop.name].append((np.full(st.size, start + b), st, nr))
            for pr in spike_fed:
                st, nr = spikes[pr.source]
                synapses, connections = pr.op.fan_out()
                out.sops[pr.name][b] = np.bincount(st, weights=synapses[nr], minlength=steps)
                out.sops_nominal[pr.name][b] = np.bincount(st, weights=connections[nr], minlength=steps)
            if built.state_monitor is not None:
                v = np.asarray(built.state_monitor.variables["v"].get_value())  # (fine steps, neurons)
                out.output[b] = v[k - 1::k]
            self.timing["samples"] += 1
            self.timing["run_s"] += run_time
            self.timing["sample_s"] += time.perf_counter() - begin
        return out


register_engine("brian2", Brian2Engine)
