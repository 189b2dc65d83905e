"""Measuring the per-step update a framework runs for one neuron node, by driving it (shared by the adapters).

An adapter supplies ``run(x) -> Trace``: its imported probe graph (:func:`probe_graph`) run from rest on the
weighted input ``x`` (``(steps, batch, n)``), returning per step the output spikes and the state it exposes
after the step (membrane ``v``, synaptic current ``syn``). :func:`measure_effective` finds the coefficients of
:class:`~evsnn.nir_conformance.adapter.Effective` from a few such runs, all probes of one question in one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .adapter import Effective

__all__ = ["Trace", "probe_graph", "measure_effective", "neuron_node", "rule_through_raised_threshold"]

NEURONS = ("IF", "LIF", "CubaLIF", "LI", "CubaLI", "I", "Threshold")


@dataclass
class Trace:
    """Per step (``(steps, batch, n)``, float64): output spikes (None: the node does not spike), and the state
    the framework exposes after the step (None where it exposes none)."""

    spikes: np.ndarray | None
    v: np.ndarray | None
    syn: np.ndarray | None = None


def neuron_node(graph) -> tuple[str, object]:
    """The (key, node) of the one neuron node of ``graph`` (Input -> Linear -> neuron -> Output)."""
    found = [(k, n) for k, n in graph.nodes.items() if type(n).__name__ in NEURONS]
    if len(found) != 1:
        raise ValueError(f"effective: the graph must hold exactly one neuron node ({', '.join(NEURONS)}), "
                         f"it holds {[k for k, _ in found]}.")
    return found[0]


def probe_graph(graph):
    """``Input(n) -> Linear(identity) -> neuron -> Output`` with the neuron node of ``graph`` (so that the
    probe's input is the neuron's weighted input), keeping that node's key."""
    import nir

    key, node = neuron_node(graph)
    n = int(np.prod(np.asarray(node.input_type["input"]).reshape(-1)))
    shape = np.array([n])
    nodes = {"input": nir.Input(input_type={"input": shape}), "linear": nir.Linear(weight=np.eye(n)), key: node,
             "output": nir.Output(output_type={"output": shape})}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "linear"), ("linear", key), (key, "output")])


def _one(values: np.ndarray, what: str, notes: list[str]) -> float | None:
    """The value of neuron 0; a note when the neurons differ or the value is not finite."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(values).all():
        notes.append(f"{what}: not finite ({values.tolist()}), left undetermined.")
        return None
    if not np.allclose(values, values[0], rtol=1e-6, atol=0):
        notes.append(f"{what} differs between neurons: {values.tolist()} (reported: neuron 0).")
    return float(values[0])


def measure_effective(run: Callable[[np.ndarray], Trace], n: int, *, scale: float = 1.0,
                      threshold: float | None = None, dtype: type = np.float32) -> Effective:
    """Measure the update behind ``run`` (see the module docstring) from rest.

    ``scale``: a size of input the neuron takes without spiking is searched from ``scale / 4`` down;
    ``threshold``: the threshold the framework's module holds (read off it), which the measured crossing must
    confirm and against which the threshold rule is decided (a probe whose membrane lands exactly on it).
    Gains are per unit of weighted input; a current-based neuron is read as
    ``i[t] = syn_beta i[t-1] + syn_gain x[t]``, ``v[t] = beta v[t-1] + spike_gain i[t]`` (``analog_gain``: the
    change of ``v`` over the first step per unit of held input, through the current).
    """
    eff = Effective()
    notes = eff.notes
    steps = 3
    a = scale / 4
    for _ in range(12):  # an impulse and a held input small enough not to fire
        x = np.zeros((steps, 3, n))
        x[0, 1] = a
        x[:, 2] = 0.75 * a
        tr = run(x)
        if tr.spikes is None or not tr.spikes.any():
            break
        a /= 8
    else:
        notes.append(f"the neuron fires at rest or on any input down to {a:g}: nothing measured.")
        return eff
    if tr.v is None:
        notes.append("the framework exposes no membrane and the node does not output it: gains not measured.")
    else:
        dv = tr.v[:, 1:] - tr.v[:, :1]  # the response to the inputs, net of the rest trajectory (leak to v_leak)
        if np.any(tr.v[:, 0] != 0):
            notes.append(f"at rest (no input) v is {tr.v[:, 0, 0].tolist()} over 3 steps (neuron 0).")
        imp, held = dv[:, 0], dv[:, 1]
        if tr.syn is None:
            eff.spike_gain = _one(imp[0] / a, "spike_gain", notes)
            eff.beta = _one(imp[1] / imp[0], "beta", notes) if np.all(imp[0] != 0) else None
            eff.analog_gain = _one(held[0] / (0.75 * a), "analog_gain", notes)
            predicted = imp[1] * imp[1] / imp[0]
        else:
            ds = tr.syn[:, 1:] - tr.syn[:, :1]
            si = ds[:, 0]
            eff.syn_gain = _one(si[0] / a, "syn_gain", notes)
            eff.syn_beta = _one(si[1] / si[0], "syn_beta", notes)
            g = imp[0] / si[0]
            eff.spike_gain = _one(g, "spike_gain (current to membrane)", notes)
            eff.beta = _one((imp[1] - g * si[1]) / imp[0], "beta", notes) if np.all(imp[0] != 0) else None
            eff.analog_gain = _one(held[0] / (0.75 * a), "analog_gain (through the current)", notes)
            predicted = (imp[1] - g * si[1]) / imp[0] * imp[1] + g * si[2]
        if not np.allclose(imp[2], predicted, rtol=1e-4, atol=1e-12 * abs(a)):
            notes.append(f"the impulse response is not one linear recursion: step 3 gives {imp[2].tolist()}, "
                         f"the recursion {np.asarray(predicted).tolist()}.")
    if tr.spikes is None:
        eff.reset = "none"
        notes.append("a non-spiking node: no threshold, no reset.")
        return eff
    _threshold(run, n, a, eff, threshold, dtype)
    return eff


def _threshold(run: Callable[[np.ndarray], Trace], n: int, a: float, eff: Effective, threshold: float | None,
               dtype: type):
    """Threshold (the one-step input at which the rested neuron starts to fire), rule and reset."""
    notes = eff.notes
    lo, hi = a, a
    for _ in range(60):  # grow until a single step fires
        hi *= 4
        if run(np.full((1, 1, n), hi)).spikes[0, 0].all():
            break
    else:
        notes.append(f"no single input up to {hi:g} makes the neuron fire: threshold not measured.")
        return
    for _ in range(6):  # bisection, 64 candidates a run
        cand = np.linspace(lo, hi, 64)
        tr = run(np.broadcast_to(cand[None, :, None], (1, 64, n)).copy())
        fired = tr.spikes[0, :, 0] > 0
        if not fired.any() or fired[0]:
            break
        k = int(np.argmax(fired))
        lo, hi = cand[k - 1], cand[k]
    tr = run(np.broadcast_to(np.array([lo, hi])[None, :, None], (1, 2, n)).copy())
    if tr.v is None or tr.spikes[0, 1, 0] == 0:
        return
    below = tr.v[0, 0]  # the largest membrane reached without a spike
    if threshold is None:
        eff.threshold = _one(below, "threshold (largest membrane without a spike)", notes)
    else:
        eff.threshold = float(threshold)
        notes.append(f"threshold {threshold!r} read off the module; a single step fires from an input between "
                     f"{float(lo)!r} (v = {float(below[0])!r}, no spike) and {float(hi)!r}.")
        # the rule: membranes landing on the threshold itself, among inputs a few units of rounding around lo
        cand = lo + np.arange(-256, 257) * np.spacing(dtype(lo))
        tr = run(np.broadcast_to(cand[None, :, None], (1, cand.size, n)).copy())
        on = (tr.spikes[0, :, 0] == 0) & (tr.v[0, :, 0] == threshold)
        if on.any():
            eff.threshold_rule = ">"
            notes.append("rule '>': a membrane exactly at the threshold does not fire.")
        else:
            notes.append("rule: no probe left the membrane exactly at the threshold without firing "
                         "(consistent with '>=' only if one landed on it; undetermined).")
    _reset(run, n, hi, eff)


def _reset(run: Callable[[np.ndarray], Trace], n: int, hi: float, eff: Effective):
    """Reset: the membrane after a spike from two input sizes, against its linear prediction."""
    notes = eff.notes
    amps = np.array([1.5 * hi, 3.0 * hi])
    tr = run(np.broadcast_to(amps[None, :, None], (1, 2, n)).copy())
    if tr.v is None or not tr.spikes[0, :, 0].all():
        return
    rest = run(np.zeros((1, 1, n))).v[0, 0, 0]
    small = run(np.full((1, 1, n), hi / 8)).v[0, 0, 0]
    pre = rest + (small - rest) * amps / (hi / 8)  # membrane the input would reach without a reset
    post = tr.v[0, :, 0]
    th = eff.threshold
    if np.allclose(post, post[0], rtol=1e-5, atol=1e-6):
        eff.reset, eff.v_reset = "zero", float(post[0])
    elif th is not None and np.allclose(post, pre - th, rtol=1e-4, atol=1e-5):
        eff.reset = "subtract"
    elif np.allclose(post, pre, rtol=1e-4, atol=1e-5):
        eff.reset = "none"
    notes.append(f"after a spike from inputs {amps.tolist()} (membrane {pre.tolist()} without reset) v is "
                 f"{post.tolist()}: reset {eff.reset or 'not recognised'}.")


def rule_through_raised_threshold(run: Callable[[np.ndarray], Trace], run_raised: Callable[[np.ndarray], Trace],
                                  n: int, threshold: float, gain: float, dtype: type) -> str | None:
    """``">="`` or ``">"`` from inputs that land the membrane exactly on ``threshold``.

    ``run_raised`` runs the same neuron with a higher threshold, so the membrane an input reaches in one step
    from rest is read without a spike resetting it; ``run`` then shows whether that input fires.
    None when no probe lands exactly on the threshold.
    """
    guess = dtype(threshold / gain)
    cand = guess + np.arange(-256, 257) * np.spacing(guess)
    x = np.broadcast_to(cand[None, :, None], (1, cand.size, n)).copy()
    on = run_raised(x).v[0, :, 0] == dtype(threshold)
    if not on.any():
        return None
    fired = run(x[:, on]).spikes[0, :, 0] > 0
    return ">=" if fired.all() else ">" if not fired.any() else None
