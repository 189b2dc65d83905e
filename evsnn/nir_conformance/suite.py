"""The reference graphs the conformance checker hands to other frameworks' NIR imports.

Each :class:`Case` is a small NIR graph with chosen parameters and the input
it runs on: every neuron primitive alone (``Input -> Affine -> neuron ->
Output``) on spike and on analog input, then the connection primitives and
their combinations (dense, convolutional, pooled, recurrent) in front of
LIF neurons. Weights and inputs are drawn from one seeded generator and
sized from the exact per-step gains of each neuron (``ode_coefficients``),
so that every case spikes at a moderate rate whatever its time constants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..engines.neurons import ode_coefficients
from ..io.nir import _nir, hard_reset

__all__ = ["Case", "reference_suite", "NEURON_CASES", "NETWORK_CASES"]

N_IN, N_OUT = 4, 3  # a neuron case: 4 inputs, 3 neurons


@dataclass(frozen=True)
class Case:
    """One reference graph and its input.

    ``x``: float64 ``(steps, batch, *input_shape)``: 0/1 spikes (``input_kind="spike"``)
    or an analog value held over every step (``"analog"``, constant in time).
    ``primitive``: the NIR node the case is about; ``neuron_key``: the key of
    the neuron node :meth:`Adapter.effective` is asked about (neuron cases only).
    """

    name: str
    primitive: str
    input_kind: str  # "spike" | "analog"
    graph: object  # nir.NIRGraph
    x: np.ndarray
    neuron_key: str | None = None


def _nodes_graph(nodes: dict, edges: list[tuple[str, str]]) -> object:
    nir = _nir()
    return nir.NIRGraph(nodes=nodes, edges=edges)


def _io(input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> dict:
    nir = _nir()
    return {"input": nir.Input(input_type={"input": np.array(input_shape)}),
            "output": nir.Output(output_type={"output": np.array(output_shape)})}


def _reset(n: int) -> dict:
    """``v_reset`` where the installed nir has it (NIR resets to it), else nothing (nir <= 1.0.4 subtracts)."""
    return {"v_reset": np.zeros(n)} if hard_reset() else {}


def _neuron(primitive: str, n: int, dt: float) -> tuple[object, dict]:
    """A neuron node of ``n`` neurons with chosen parameters, and its exact per-step gains over ``dt``."""
    nir = _nir()
    full = lambda v: np.full(n, float(v))  # noqa: E731  (NIR nodes take one value per neuron)
    # R = 1 and w_in = 1, the values Norse and sinabs assume and SpikingJelly accepts for LIF: the cases then
    # measure each framework's dynamics instead of stopping at its refusal of other values
    tau, tau_syn = 20 * dt, 5 * dt
    if primitive == "IF":  # R = 1: a spike of weight w adds w, as every framework's IF does
        node = nir.IF(r=full(1.0), v_threshold=full(1.0), **_reset(n))
        gains = ode_coefficients("if", dt, tau_mem=None, tau_syn=None, r=1.0, w_in=1.0)
    elif primitive == "LIF":
        node = nir.LIF(tau=full(tau), r=full(1.0), v_leak=full(0.0), v_threshold=full(1.0), **_reset(n))
        gains = ode_coefficients("lif", dt, tau_mem=tau, tau_syn=None, r=1.0, w_in=1.0)
    elif primitive == "CubaLIF":
        node = nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau), r=full(1.0), v_leak=full(0.0),
                           v_threshold=full(1.0), w_in=full(1.0), **_reset(n))
        gains = ode_coefficients("cuba_lif", dt, tau_mem=tau, tau_syn=tau_syn, r=1.0, w_in=1.0)
    elif primitive == "LI":
        node = nir.LI(tau=full(tau), r=full(1.0), v_leak=full(0.0))
        gains = ode_coefficients("li", dt, tau_mem=tau, tau_syn=None, r=1.0, w_in=1.0)
    elif primitive == "CubaLI":
        node = nir.CubaLI(tau_syn=full(tau_syn), tau_mem=full(tau), r=full(1.0), v_leak=full(0.0),
                          w_in=full(1.0))
        gains = ode_coefficients("cuba_li", dt, tau_mem=tau, tau_syn=tau_syn, r=1.0, w_in=1.0)
    elif primitive == "I":
        node = nir.I(r=full(1.0))
        gains = ode_coefficients("i", dt, tau_mem=None, tau_syn=None, r=1.0, w_in=1.0)
    elif primitive == "Threshold":  # stateless: its input of each step meets θ = 1 about half the time
        node = nir.Threshold(threshold=full(1.0))
        gains = {"spike_gain": 0.35, "analog_gain": 0.35}
    else:
        raise ValueError(f"no reference neuron {primitive!r}")
    return node, gains


def _drive(gains: dict) -> tuple[float, float]:
    """Weight scales for spike and for analog input that move a neuron of these gains by about 0.35 θ per step.

    A current-based neuron reaches its potential through the synaptic current: its gain from one unit of
    input to ``v`` is the sum over the following steps, which ``syn_to_v / (1 - alpha)`` bounds.
    """
    if "alpha" in gains:
        to_v = float(np.asarray(gains["syn_to_v"])) / (1 - float(np.asarray(gains["alpha"])))
        spike, analog = float(np.asarray(gains["syn_spike_gain"])) * to_v, float(np.asarray(gains["syn_analog_gain"])) * to_v
    else:
        spike, analog = float(np.asarray(gains["spike_gain"])), float(np.asarray(gains["analog_gain"]))
    target = 0.35
    return target / spike, target / analog


NEURON_CASES = ("IF", "LIF", "CubaLIF", "LI", "CubaLI", "I", "Threshold")
NETWORK_CASES = ("Linear", "Affine", "Scale", "two_layer", "Conv2d", "SumPool2d", "Flatten", "recurrent")


def _spikes(rng: np.random.Generator, steps: int, batch: int, shape: tuple[int, ...], rate: float = 0.3) -> np.ndarray:
    return (rng.random((steps, batch, *shape)) < rate).astype(np.float64)


def _analog(rng: np.random.Generator, steps: int, batch: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(rng.uniform(0.5, 1.5, (1, batch, *shape)), (steps, batch, *shape)).copy()


def _neuron_case(primitive: str, input_kind: str, dt: float, steps: int, batch: int,
                 rng: np.random.Generator) -> Case:
    nir = _nir()
    node, gains = _neuron(primitive, N_OUT, dt)
    spike_scale, analog_scale = _drive(gains)
    scale = spike_scale if input_kind == "spike" else analog_scale
    # each neuron's summed weight is ~1 scale unit, so that a spike rate of 0.3 or an analog value of 1 drives it
    weight = rng.uniform(0.2, 1.0, (N_OUT, N_IN)) * scale / (0.3 * N_IN * 0.6 if input_kind == "spike" else N_IN * 0.6)
    nodes = _io((N_IN,), (N_OUT,))
    nodes["affine"] = nir.Affine(weight=weight, bias=np.zeros(N_OUT))
    nodes["neuron"] = node
    graph = _nodes_graph(nodes, [("input", "affine"), ("affine", "neuron"), ("neuron", "output")])
    x = _spikes(rng, steps, batch, (N_IN,)) if input_kind == "spike" else _analog(rng, steps, batch, (N_IN,))
    return Case(f"{primitive} ({input_kind})", primitive, input_kind, graph, x, neuron_key="neuron")


def _lif(n: int | tuple[int, ...], dt: float, threshold: float = 1.0) -> tuple[object, float, float]:
    """A LIF node (any shape) and the weight scales that move it by about 0.35 θ per unit of spike / held input."""
    nir = _nir()
    shape = (n,) if isinstance(n, int) else n
    tau = 20 * dt
    full = lambda v: np.full(shape, float(v))  # noqa: E731
    node = nir.LIF(tau=full(tau), r=full(1.0), v_leak=full(0.0), v_threshold=full(threshold),
                   **({"v_reset": full(0.0)} if hard_reset() else {}))
    return (node, *(threshold * g for g in _drive(ode_coefficients("lif", dt, tau_mem=tau, tau_syn=None, r=1.0,
                                                                       w_in=1.0))))


def _network_case(primitive: str, dt: float, steps: int, batch: int, rng: np.random.Generator) -> Case:
    nir = _nir()
    edges: list[tuple[str, str]]
    if primitive in ("Linear", "Affine", "Scale"):
        lif, w, held = _lif(N_OUT, dt)
        weight = rng.uniform(0.2, 1.0, (N_OUT, N_IN)) * w / (0.3 * N_IN * 0.6)
        nodes = _io((N_IN,), (N_OUT,))
        if primitive == "Linear":
            nodes["linear"] = nir.Linear(weight=weight)
            edges = [("input", "linear"), ("linear", "lif")]
        elif primitive == "Affine":  # a bias held over the step: about 0.1 θ per step at rest
            nodes["affine"] = nir.Affine(weight=weight, bias=np.full(N_OUT, held * 0.1 / 0.35))
            edges = [("input", "affine"), ("affine", "lif")]
        else:
            nodes["linear"] = nir.Linear(weight=weight / 2)
            nodes["scale"] = nir.Scale(scale=np.full(N_OUT, 2.0))
            edges = [("input", "linear"), ("linear", "scale"), ("scale", "lif")]
        nodes["lif"] = lif
        edges.append(("lif", "output"))
        return Case(primitive, primitive, "spike", _nodes_graph(nodes, edges), _spikes(rng, steps, batch, (N_IN,)))
    if primitive == "two_layer":
        (lif1, w, _), (lif2, _, _) = _lif(5, dt), _lif(3, dt)
        nodes = _io((6,), (3,))
        nodes.update(fc1=nir.Affine(weight=rng.uniform(-0.2, 1.0, (5, 6)) * w / (0.3 * 6 * 0.4), bias=np.zeros(5)),
                     lif1=lif1, fc2=nir.Affine(weight=rng.uniform(0.2, 1.0, (3, 5)) * w / (0.2 * 5 * 0.6),
                                              bias=np.zeros(3)), lif2=lif2)
        edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
        return Case("two-layer dense", "Affine+LIF x2", "spike", _nodes_graph(nodes, edges),
                    _spikes(rng, steps, batch, (6,)))
    if primitive in ("Conv2d", "SumPool2d", "Flatten"):
        # Conv2d: conv -> LIF; SumPool2d: conv -> LIF -> pool -> LIF; Flatten: conv -> LIF -> flatten -> Affine -> LIF
        conv_out = (2, 4, 4)
        lif1, w, _ = _lif(conv_out, dt)
        nodes = _io((1, 6, 6), {"Conv2d": conv_out, "SumPool2d": (2, 2, 2), "Flatten": (3,)}[primitive])
        nodes["conv"] = nir.Conv2d(input_shape=(6, 6), weight=rng.uniform(0.2, 1.0, (2, 1, 3, 3)) * w / (0.3 * 9 * 0.6),
                                   stride=np.array([1, 1]), padding=np.array([0, 0]), dilation=np.array([1, 1]),
                                   groups=1, bias=np.zeros(2))
        nodes["lif1"] = lif1
        chain = ["input", "conv", "lif1"]
        if primitive == "SumPool2d":  # four spike trains of rate ~0.3 summed, unweighted: θ = 2.5 spikes' jumps
            nodes["pool"] = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                          padding=np.array([0, 0]))
            nodes["lif2"] = _lif((2, 2, 2), dt, threshold=2.5 * 0.35 / w)[0]
            chain += ["pool", "lif2"]
        elif primitive == "Flatten":
            n_flat = int(np.prod(conv_out))
            nodes["flatten"] = nir.Flatten(input_type={"input": np.array(conv_out)}, start_dim=0, end_dim=-1)
            nodes["fc"] = nir.Affine(weight=rng.uniform(0.2, 1.0, (3, n_flat)) * w / (0.15 * n_flat * 0.6),
                                     bias=np.zeros(3))
            nodes["lif2"] = _lif(3, dt)[0]
            chain += ["flatten", "fc", "lif2"]
        chain.append("output")
        name = {"Conv2d": "conv", "SumPool2d": "conv + sum pooling", "Flatten": "conv + flatten + dense"}[primitive]
        return Case(name, primitive, "spike", _nodes_graph(nodes, list(zip(chain[:-1], chain[1:]))),
                    _spikes(rng, steps, batch, (1, 6, 6)))
    if primitive == "recurrent":
        lif, w, _ = _lif(N_OUT, dt)
        nodes = _io((N_IN,), (N_OUT,))
        nodes.update(affine=nir.Affine(weight=rng.uniform(0.2, 1.0, (N_OUT, N_IN)) * w / (0.3 * N_IN * 0.6),
                                       bias=np.zeros(N_OUT)),
                     lif=lif, rec=nir.Linear(weight=rng.uniform(-0.6, 0.6, (N_OUT, N_OUT)) * w))
        edges = [("input", "affine"), ("affine", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
        return Case("recurrent LIF", "recurrent", "spike", _nodes_graph(nodes, edges), _spikes(rng, steps, batch, (N_IN,)))
    raise ValueError(f"no reference network {primitive!r}")


def reference_suite(dt: float = 1e-3, *, steps: int = 50, batch: int = 4, seed: int = 0,
                    only: Callable[[Case], bool] | None = None) -> list[Case]:
    """Every reference case, built for a step ``dt``, with seeded weights and inputs.

    ``CubaLI`` is left out where the installed nir has no such node (nir <= 1.0.4).
    """
    nir = _nir()
    rng = np.random.default_rng(seed)
    cases = []
    for primitive in NEURON_CASES:
        if not hasattr(nir, primitive):
            continue
        for kind in ("spike", "analog"):
            cases.append(_neuron_case(primitive, kind, dt, steps, batch, rng))
    for primitive in NETWORK_CASES:
        cases.append(_network_case(primitive, dt, steps, batch, rng))
    return [c for c in cases if only is None or only(c)]
