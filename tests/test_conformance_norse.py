"""The Norse adapter against Norse's documented update, computed here by hand.

Norse 1.1.0 (``norse/torch/functional``): ``LIFBoxCell`` steps ``v += dt/tau (v_leak - v + i)`` from
``v = v_leak``, ``IAFCell`` steps ``v += i``; a spike where ``v > v_th``, then ``v = v_reset`` (its parameter,
0 by default). ``from_nir`` (``utils/import_nir.py``) builds these from IF and LIF with ``tau_mem_inv = 1/tau``
and the ``dt`` it is given, ignoring ``r`` and ``v_reset``; ``to_nir`` writes ``tau = dt / tau_mem_inv``.
"""

import numpy as np
import pytest

norse = pytest.importorskip("norse", reason="Norse is not installed: its NIR conformance is not checked")
nir = pytest.importorskip("nir", reason="nir is not installed")

from evsnn.nir_conformance import explain  # noqa: E402
import evsnn  # noqa: E402
from evsnn.nir_conformance._norse import NorseAdapter  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:nirtorch.load is being deprecated:DeprecationWarning")
A = NorseAdapter()
N = 3


def single(node, weight):
    nodes = {"input": nir.Input(input_type={"input": np.array([N])}), "lin": nir.Linear(weight=weight),
             "neu": node, "output": nir.Output(output_type={"output": np.array([N])})}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "lin"), ("lin", "neu"), ("neu", "output")])


def euler(x, w, a, theta, v0=0.0):
    """``v += a (v0 - v + W x)`` (a = dt/tau; a = None: ``v += W x``), spike at ``v > theta``, reset to 0, by
    hand in float64; also the smallest |v - theta| met."""
    v, out, margin = np.full(x.shape[1:-1] + (w.shape[0],), v0), [], np.inf
    for xt in x:
        v = v + (xt @ w.T if a is None else a * (v0 - v + xt @ w.T))
        margin = min(margin, np.abs(v - theta).min())
        s = (v > theta).astype(float)
        v = v * (1 - s)
        out.append(s)
    return np.stack(out), margin


def spikes(steps=40, seed=0, p=0.4, n=N):
    return (np.random.default_rng(seed).random((steps, 2, n)) < p).astype(float)


def test_lif_is_forward_euler_at_the_dt_given_and_ignores_r():
    dt, tau, theta = 1e-3, 5e-3, 0.5
    w = np.random.default_rng(1).uniform(1.0, 3.0, (N, N))
    g = single(nir.LIF(tau=np.full(N, tau), r=np.full(N, 2.0), v_leak=np.zeros(N), v_threshold=np.full(N, theta),
                       v_reset=np.zeros(N)), w)
    x = spikes()
    expected, margin = euler(x, w, dt / tau, theta)
    assert margin > 1e-4 and expected.sum() > 10
    np.testing.assert_array_equal(A.run_imported(g, x, dt), expected)
    eff = A.effective(g, dt)
    assert eff.beta == pytest.approx(1 - dt / tau, rel=1e-6)
    assert eff.spike_gain == pytest.approx(dt / tau, rel=1e-5) and eff.analog_gain == pytest.approx(dt / tau, rel=1e-5)
    assert (eff.threshold, eff.threshold_rule, eff.reset, eff.v_reset) == (theta, ">", "zero", 0.0)
    assert any("The parameter r is expected to be set to 1" in n for n in eff.notes)


def test_if_ignores_v_reset():
    w = np.random.default_rng(2).uniform(0.2, 0.9, (N, N))
    g = single(nir.IF(r=np.ones(N), v_threshold=np.full(N, 1.25), v_reset=np.full(N, 0.3)), w)
    x = spikes(seed=3)
    expected, margin = euler(x, w, None, 1.25)
    assert margin > 1e-4 and expected.sum() > 10
    np.testing.assert_array_equal(A.run_imported(g, x, 1e-3), expected)
    eff = A.effective(g, 1e-3)
    assert (eff.beta, eff.spike_gain, eff.threshold, eff.reset, eff.v_reset) == (1.0, 1.0, 1.25, "zero", 0.0)
    assert "resets to 0 where the node says v_reset = 0.3" in explain(eff, g.nodes["neu"], 1e-3, hard_reset=True)


def test_cuba_lif_synapse_then_membrane():
    dt, ts, tm, w_in, r = 1e-4, 5e-4, 1e-3, 2.0, 3.0
    node = nir.CubaLIF(tau_syn=np.full(N, ts), tau_mem=np.full(N, tm), r=np.full(N, r), v_leak=np.zeros(N),
                       v_threshold=np.ones(N), v_reset=np.zeros(N), w_in=np.full(N, w_in))
    eff = A.effective(single(node, np.eye(N)), dt)
    assert eff.syn_beta == pytest.approx(1 - dt / ts, rel=1e-6)
    assert eff.syn_gain == pytest.approx(w_in * dt / ts, rel=1e-5)
    assert eff.beta == pytest.approx(1 - dt / tm, rel=1e-6) and eff.spike_gain == pytest.approx(r * dt / tm, rel=1e-5)


@pytest.mark.parametrize("kind", ["LI", "Threshold"])
def test_nodes_without_a_norse_module_pass_their_input_through(kind):
    node = (nir.LI(tau=np.full(N, 1e-3), r=np.ones(N), v_leak=np.zeros(N)) if kind == "LI"
            else nir.Threshold(threshold=np.ones(N)))
    w = np.random.default_rng(4).normal(size=(N, N))
    x = spikes(5, seed=5)
    np.testing.assert_allclose(A.run_imported(single(node, w), x, 1e-3), x @ w.T, rtol=1e-6)
    eff = A.effective(single(node, w), 1e-3)
    assert (eff.beta, eff.spike_gain) == (0.0, 1.0) and f"maps no module for {kind}" in eff.notes[0]


@pytest.mark.parametrize("case", ["if", "lif", "cuba_lif", "li", "two_layer"])
def test_export_passes_nir_and_reads_in_evsnn(case, tmp_path):
    dt = 1e-3
    ex = A.export(case, dt, seed=1)
    nir.NIRGraph(nodes=ex.graph.nodes, edges=ex.graph.edges)  # nir's own type check
    kinds = {"if": ["if"], "lif": ["lif"], "cuba_lif": ["cuba_lif"], "li": ["li"], "two_layer": ["lif", "lif"]}
    model = evsnn.from_nir(ex.graph, dt=dt)
    assert [p.neuron.kind for p in model.populations] == kinds[case]
    for node in ex.graph.nodes.values():  # tau = dt / tau_mem_inv = dt * (10 dt), not 10 dt
        tau = getattr(node, "tau", getattr(node, "tau_mem", None))
        if tau is not None:
            np.testing.assert_allclose(np.asarray(tau), 10 * dt * dt, rtol=1e-5)
    x = spikes(30, seed=4, p=0.5, n=model.input.shape[0])
    out = ex.run(x)
    assert out.shape == (30, 2, 3) and np.isfinite(out).all() and np.abs(out).sum() > 0


def test_the_exported_lif_runs_the_euler_update():
    dt = 1e-3
    ex = A.export("lif", dt, seed=2)
    w = np.asarray(next(n for n in ex.graph.nodes.values() if isinstance(n, (nir.Linear, nir.Affine))).weight)
    x = spikes(30, seed=6, n=4)
    expected, margin = euler(x, w, 0.1, 1.0)
    assert margin > 1e-4 and expected.sum() > 0
    np.testing.assert_array_equal(ex.run(x), expected)


def test_unknown_case_is_refused():
    with pytest.raises(ValueError, match="unknown case 'lstm'"):
        A.export("lstm", 1e-3)
