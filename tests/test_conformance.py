"""The conformance checker itself, with no framework installed: two adapters written here simulate the reference
neuron graphs independently of evsnn (matrix exponentials of NIR's ODEs, scipy.linalg.expm), one exactly and one with
forward Euler, and the checker must call the first identical and explain the second."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.linalg import expm

nir = pytest.importorskip("nir", reason="the nir package is evsnn's NIR dependency (extra 'nir')")

from evsnn.io.nir import hard_reset  # noqa: E402
from evsnn.nir_conformance import (FRAMEWORKS, Adapter, ConformanceReport, Effective, check, compare,  # noqa: E402
                                   explain, format_table, reference_suite)

DT = 1e-3


def first(node, name, default=None):
    value = getattr(node, name, None)
    return default if value is None else float(np.asarray(value).ravel()[0])


def system(node):
    """NIR's ODE as x' = A x + F u (u: the held input), the state's impulse response J per unit of spike, and where
    v sits in the state."""
    kind = type(node).__name__
    r = first(node, "r", 1.0)
    if kind in ("IF", "I"):
        return np.zeros((1, 1)), np.array([r]), np.array([r]), np.zeros(1), 0
    if kind in ("LIF", "LI"):
        tau, leak = first(node, "tau"), first(node, "v_leak", 0.0)
        return np.array([[-1 / tau]]), np.array([r / tau]), np.array([r / tau]), np.array([leak / tau]), 0
    tm, ts, w_in, leak = first(node, "tau_mem"), first(node, "tau_syn"), first(node, "w_in", 1.0), first(node, "v_leak", 0.0)
    a = np.array([[-1 / ts, 0.0], [r / tm, -1 / tm]])  # state (i, v)
    return a, np.array([w_in / ts, 0.0]), np.array([w_in / ts, 0.0]), np.array([0.0, leak / tm]), 1


class ExpmAdapter(Adapter):
    """Runs Input -> Affine -> neuron -> Output graphs by NIR's ODE: held input integrated with expm, spikes as unit
    impulses at the end of the step, then v > θ and the installed nir's reset. ``euler=True`` replaces the
    propagator by forward Euler (x += dt (A x + F u + c); a spike as a current held over the step)."""

    name, package = "expm-reference", "scipy"

    def __init__(self, euler=False):
        self.euler = euler

    def version(self):
        return "euler" if self.euler else "exact"

    def run_imported(self, graph, x, dt):
        aff, node = graph.nodes["affine"], graph.nodes["neuron"]
        weighted, bias = x @ np.asarray(aff.weight).T, np.asarray(aff.bias)
        kind = type(node).__name__
        if kind == "Threshold":
            return (weighted + bias > np.asarray(node.threshold)).astype(float)
        spike_input = np.isin(x, (0, 1)).all()
        held = bias + (0 if spike_input else weighted)  # a bias, and analog input, are currents held over the step
        spiking = kind in ("IF", "LIF", "CubaLIF")
        a, f, j, c, iv = system(node)
        n = a.shape[0]
        m = np.zeros((n + 2, n + 2))  # augmented: the constant forcing of the step (u and the leak) as two states
        m[:n, :n], m[:n, n], m[:n, n + 1] = a, f, c
        prop = expm(m * dt) if not self.euler else np.eye(n + 2) + m * dt
        steps, batch, width = weighted.shape
        state = np.zeros((batch, width, n))
        out = np.zeros_like(weighted)
        for t in range(steps):
            u = np.broadcast_to(held, weighted.shape)[t]
            full = np.concatenate([state, u[..., None], np.ones_like(u)[..., None]], axis=-1)
            state = full @ prop.T[:, :n]
            if spike_input:  # spikes: unit impulses at the end of the step (Euler: a current held over dt)
                state = state + weighted[t][..., None] * (j * (dt if self.euler else 1.0))
            if spiking:
                spike = state[..., iv] > first(node, "v_threshold")
                if hard_reset():
                    state[..., iv] = np.where(spike, first(node, "v_reset", 0.0), state[..., iv])
                else:
                    state[..., iv] -= spike * first(node, "v_threshold")
                out[t] = spike
            else:
                out[t] = state[..., iv]
        return out

    def effective(self, graph, dt):
        node = graph.nodes["neuron"]
        if type(node).__name__ not in ("IF", "LIF"):
            raise NotImplementedError("measured here for IF and LIF only")
        a, f, *_ = system(node)
        beta = math.exp(a[0, 0] * dt) if not self.euler else 1 + a[0, 0] * dt
        gain = f[0] * (dt if self.euler else 1.0)
        analog = (f[0] * dt if self.euler else (f[0] / -a[0, 0] * (1 - beta) if a[0, 0] else f[0] * dt))
        return Effective(beta=beta, spike_gain=gain, analog_gain=analog, threshold=first(node, "v_threshold"),
                         threshold_rule=">", reset="zero" if hard_reset() else "subtract",
                         v_reset=0.0 if hard_reset() else None, notes=["from the test's own matrices"])

    def export(self, case, dt, seed=0):
        raise NotImplementedError("this test simulator builds no modules")


def neuron_cases(case):
    return case.neuron_key is not None


def test_an_exact_independent_simulator_is_identical_on_every_neuron_case():
    report = check(ExpmAdapter(), dt=DT, steps=40, brian2=False, only=neuron_cases)
    imported = [r for r in report.results if r.direction == "import"]
    assert {r.primitive for r in imported} >= {"IF", "LIF", "CubaLIF", "LI", "I", "Threshold"}
    for r in imported:
        assert r.status == "identical", (r.case, r.detail)
        if r.comparison["kind"] == "spikes":
            assert r.comparison["spikes"][0] > 20, r.case  # liveness: the case spikes
    for r in imported:
        if r.primitive in ("IF", "LIF"):
            assert r.explanation == [], (r.case, r.explanation)  # the measured update is the ODE's
    export = [r for r in report.results if r.direction == "export"]
    assert export and all(r.status == "not available" for r in export)


def test_forward_euler_diverges_on_lif_and_the_checker_says_why():
    report = check(ExpmAdapter(euler=True), dt=DT, steps=40, brian2=False,
                   only=lambda c: c.primitive in ("IF", "LIF"))
    rows = {r.case: r for r in report.results if r.direction == "import"}
    # IF has no leak: Euler integrates a held input exactly, but a spike becomes a current held over one step
    assert rows["IF (analog)"].status == "identical"
    lif = rows["LIF (spike)"]  # a spike moves v by R·dt/τ = 0.1 instead of R/τ = 2: almost silent
    assert lif.status == "diverges" and lif.comparison["spikes"][0] > 20 and lif.comparison["agreement"] < 0.2
    text = " ".join(lif.explanation)
    assert "forward Euler, 1 − dt/τ" in text and "R·dt/τ" in text
    again = ConformanceReport.from_dict(json.loads(json.dumps(report.to_dict())))  # what --json prints
    assert again.to_markdown() == report.to_markdown()
    assert [(r.status, r.explanation) for r in again.results] == [(r.status, r.explanation) for r in report.results]
    md = report.to_markdown()
    assert "LIF (spike)" in md and "forward Euler" in md
    assert "diverges" not in format_table([report]).split("IF (analog)")[1].split("\n")[0]


def test_compare_counts_against_a_hand_made_pair():
    ref = np.zeros((5, 1, 2))
    ref[1, 0, 0] = ref[3, 0, 1] = ref[4, 0, 0] = 1
    other = ref.copy()
    other[3, 0, 1], other[4, 0, 1] = 0, 1  # step 3 lost one spike, step 4 gained one
    c = compare(ref, other, kind="spikes")
    assert (c.identical, c.first_divergent_step, c.spikes) == (False, 3, (3, 3))
    assert c.agreement == pytest.approx(2 / 4)  # bins where either spiked: 4; where both did: 2
    assert c.count_correlation == pytest.approx(np.corrcoef([2, 1], [2, 1])[0, 1])
    assert compare(ref, ref, kind="spikes").identical
    counts = compare(ref, 2 * ref, kind="spikes")  # a framework that outputs spike counts (2 where one spike was)
    assert (counts.identical, counts.first_divergent_step, counts.not_binary) == (False, 1, (0.0, 2.0))
    m = compare(np.ones((3, 1, 1)), np.array([1.0, 1.0, 1.5]).reshape(3, 1, 1), kind="membrane")
    assert (m.identical, m.first_divergent_step, m.max_abs_difference) == (False, 2, 0.5)


def test_explain_names_the_known_mistakes():
    tau, dt = 0.02, DT
    lif = nir.LIF(tau=np.full(1, tau), r=np.full(1, tau), v_leak=np.zeros(1), v_threshold=np.ones(1))
    text = explain(Effective(beta=math.exp(-1 / tau)), lif, dt, hard_reset=hard_reset())
    assert text and "τ read as a number of steps" in text[0]
    text = explain(Effective(beta=1 - 1e-4 / tau), lif, dt, hard_reset=hard_reset())
    assert "1 − dt'/τ at dt' = 0.0001 s" in text[0]
    if_node = nir.IF(r=np.ones(1), v_threshold=np.ones(1))
    text = explain(Effective(beta=0.9, spike_gain=1.0, threshold_rule=">="), if_node, dt, hard_reset=hard_reset())
    assert text[0].startswith("IF imported as a leaky neuron, β = 0.9")
    assert any("v >= θ where NIR says v > θ" in t for t in text)
    assert explain(Effective(beta=1.0, spike_gain=1.0), if_node, dt, hard_reset=hard_reset()) == []


def test_the_suite_is_seeded_and_every_case_runs_on_the_event_engine():
    a, b = reference_suite(DT, seed=3), reference_suite(DT, seed=3)
    assert [c.name for c in a] == [c.name for c in b]
    for ca, cb in zip(a, b):
        np.testing.assert_array_equal(ca.x, cb.x)
    assert not np.array_equal(a[0].x, reference_suite(DT, seed=4)[0].x)


def test_cli_rejects_an_unknown_framework_and_names_them_all():
    out = subprocess.run([sys.executable, "-m", "evsnn", "conformance", "--framework", "nest"], capture_output=True,
                         text=True)
    assert out.returncode == 2
    for name in FRAMEWORKS:
        assert name in out.stderr
