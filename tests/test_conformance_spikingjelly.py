"""The SpikingJelly adapter against SpikingJelly's documented update, computed here by hand.

SpikingJelly 2.0.0 (``neuron/lif.py``, ``functional/neuron.py``): ``LIFNode`` charges
``v += (x − (v − v_reset))/τ`` (``decay_input=True``) or ``v += x − (v − v_reset)/τ``, ``CUBALIFNode``
``c = c_decay c + x``, ``v = v_decay v + c``; a spike where ``v ≥ θ``, then ``v = v_reset``. Its
``import_from_nir`` sets τ = τ_NIR/dt and accepts only the ``r`` (and ``w_in``) these forms imply.
"""

import numpy as np
import pytest

pytest.importorskip("spikingjelly", reason="SpikingJelly is not installed: its NIR conformance is not checked")
nir = pytest.importorskip("nir", reason="nir is not installed")

import evsnn  # noqa: E402
from evsnn.nir_conformance._spikingjelly import SpikingJellyAdapter  # noqa: E402
from evsnn.io.nir import hard_reset  # noqa: E402
from evsnn.nir_conformance import explain  # noqa: E402
from evsnn.nir_conformance._probe import neuron_node  # noqa: E402
from evsnn.nir_conformance.adapter import EXPORT_CASES  # noqa: E402

A = SpikingJellyAdapter()
N = 3
DT = 1e-3
W = np.array([[0.5, 0.25], [0.7, 0.0], [0.3, 0.45]])


def graph(node):
    nodes = {"input": nir.Input(input_type=np.array([2])), "fc": nir.Affine(weight=W, bias=np.zeros(N)),
             "n": node, "output": nir.Output(output_type=np.array([N]))}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "n"), ("n", "output")])


def full(v):
    return np.full(N, float(v))


def lif(tau, r, theta=1.0):
    return nir.LIF(tau=full(tau), r=full(r), v_leak=full(0), v_threshold=full(theta), v_reset=full(0))


def by_hand(x, charge, theta):
    """Spikes of SpikingJelly's node by hand (float64): ``charge(v, c, i) -> (v, c)``, fire at v ≥ θ, reset to 0."""
    v = c = np.zeros((x.shape[1], N))
    out = []
    for xt in x:
        v, c = charge(v, c, xt @ W.T)
        s = (v >= theta).astype(float)
        v = np.where(s > 0, 0.0, v)
        out.append(s)
    return np.stack(out)


def spikes_in(steps=20, seed=0):
    return (np.random.default_rng(seed).random((steps, 2, 2)) < 0.7).astype(float)


@pytest.mark.parametrize("r", [1.0, 10.0])  # r = 1: decay_input=True; r = τ/dt = 10: decay_input=False
def test_lif_forward_euler(r):
    tau = 10 * DT
    g = graph(lif(tau, r, theta=0.6 if r == 1 else 1.0))
    eff = A.effective(g, DT)
    gain = 1 / 10 if r == 1 else 1.0
    assert eff.beta == pytest.approx(0.9, rel=1e-12)  # 1 − dt/τ, where the ODE has e^{-0.1} = 0.9048
    assert eff.spike_gain == pytest.approx(gain, rel=1e-12) and eff.analog_gain == pytest.approx(gain, rel=1e-12)
    assert (eff.threshold_rule, eff.reset, eff.v_reset) == (">=", "zero", 0.0)
    why = explain(eff, neuron_node(g)[1], DT, hard_reset=hard_reset())
    assert why[0] == "β = 0.9 = forward Euler, 1 − dt/τ" and "spikes at v >= θ where NIR says v > θ" in why
    x = 4 * spikes_in()
    expected = by_hand(x, lambda v, c, i: (v + (i - v) / 10 if r == 1 else v + i - v / 10, c), eff.threshold)
    y = A.run_imported(g, x, DT)
    assert y.sum() > 0
    np.testing.assert_array_equal(y, expected)


def test_if_at_threshold_and_its_r():
    g = graph(nir.IF(r=full(1 / DT), v_threshold=full(1), v_reset=full(0)))
    x = np.zeros((4, 1, 2))
    x[:, 0, 0] = 1  # neuron 0: v = 0.5, 1.0 (fires at v = θ exactly), then again
    np.testing.assert_array_equal(A.run_imported(g, x, DT)[:, 0, 0], [0, 1, 0, 1])
    eff = A.effective(g, DT)
    assert (eff.beta, eff.spike_gain, eff.analog_gain) == (1.0, 1.0, 1.0)  # the ODE's jump would be R = 1000
    with pytest.raises(ValueError, match="r must equal 1 / dt"):
        A.run_imported(graph(nir.IF(r=full(1), v_threshold=full(1), v_reset=full(0))), x, DT)


def test_cuba_lif():
    tau_syn, tau_mem = 5 * DT, 10 * DT
    g = graph(nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau_mem), r=full(10), v_leak=full(0),
                          v_threshold=full(2), v_reset=full(0), w_in=full(5)))
    eff = A.effective(g, DT)
    assert eff.syn_beta == pytest.approx(0.8) and eff.beta == pytest.approx(0.9)
    assert eff.syn_gain == pytest.approx(1.0) and eff.spike_gain == pytest.approx(1.0)
    x = spikes_in()
    y = A.run_imported(g, x, DT)
    assert y.sum() > 0
    np.testing.assert_array_equal(y, by_hand(x, lambda v, c, i: (0.9 * v + 0.8 * c + i, 0.8 * c + i), 2.0))


@pytest.mark.parametrize("node", [nir.LI(tau=full(0.01), r=full(1), v_leak=full(0)), nir.I(r=full(1))])
def test_readouts_not_imported(node):
    with pytest.raises(ValueError, match="mapping does not exist"):
        A.run_imported(graph(node), spikes_in(3), DT)


@pytest.mark.parametrize("case", EXPORT_CASES)
def test_exports_read_by_evsnn(case):
    if case == "li":
        with pytest.raises(NotImplementedError, match="no LI neuron"):
            A.export(case, DT)
        return
    ex = A.export(case, DT, seed=1)
    n_in = 6 if case == "two_layer" else 4
    x = (np.random.default_rng(2).random((8, 2, n_in)) < 0.6).astype(float)
    y = ex.run(x)
    assert y.shape == (8, 2, 3)
    np.testing.assert_array_equal(ex.run(x), y)  # each run starts from rest
    model = evsnn.from_nir(ex.graph, dt=ex.dt)
    assert model.input.shape == (n_in,)
    lifs = [n for n in ex.graph.nodes.values() if type(n).__name__ == "LIF"]
    for node in lifs:  # LIFNode() is τ = 2 steps, decay_input=True: τ = 2 dt, r = 1
        np.testing.assert_allclose(node.tau, 2 * DT)
        np.testing.assert_array_equal(node.r, 1.0)
