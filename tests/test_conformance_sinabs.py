"""The sinabs adapter against sinabs's documented update, computed here by hand.

sinabs 3.1.3 (``sinabs/layers/lif.py``, norm_input=False): ``v = α v + x`` with ``α = e^{-1/tau_mem}``, then
``floor(v/θ)`` spikes where ``v > 0`` (MultiSpike), each subtracting θ (MembraneSubtract). Its ``from_nir``
(``sinabs/nir.py``) gives ``tau_mem`` NIR's τ as it is (seconds read as steps) and ignores ``r``; nodes it has no
mapping for become no module at all.
"""

import numpy as np
import pytest

pytest.importorskip("sinabs", reason="sinabs is not installed: its NIR conformance is not checked")
nir = pytest.importorskip("nir", reason="nir is not installed")

import evsnn  # noqa: E402
from evsnn.nir_conformance._sinabs import SinabsAdapter  # noqa: E402
from evsnn.nir_conformance import explain  # noqa: E402
from evsnn.nir_conformance._probe import neuron_node  # noqa: E402
from evsnn.nir_conformance.adapter import EXPORT_CASES  # noqa: E402

A = SinabsAdapter()
N = 3
W = np.array([[0.5, 0.25], [0.7, 0.0], [0.3, 0.45]])


def graph(node, linear="Affine"):
    fc = nir.Affine(weight=W, bias=np.zeros(N)) if linear == "Affine" else nir.Linear(weight=W)
    nodes = {"input": nir.Input(input_type=np.array([2])), "fc": fc, "n": node,
             "output": nir.Output(output_type=np.array([N]))}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "n"), ("n", "output")])


def full(v):
    return np.full(N, float(v))


def multispike(x, w, alpha, theta):
    """sinabs's LIF/IAF by hand (float64): v = αv + x w^T, floor(v/θ) spikes where v > 0, v -= spikes θ."""
    v, out = np.zeros((x.shape[1], w.shape[0])), []
    for xt in x:
        v = alpha * v + xt @ w.T
        s = np.where(v > 0, np.floor(v / theta), 0.0)
        v = v - s * theta
        out.append(s)
    return np.stack(out)


def spikes_in(steps=12, seed=0):
    return (np.random.default_rng(seed).random((steps, 2, 2)) < 0.6).astype(float)


def test_lif_tau_read_as_steps_and_r_ignored():
    tau, r = 2.0, 3.0  # NIR says 2 s and R = 3; sinabs decays by e^{-1/2} per step, gain 1, whatever dt
    g = graph(nir.LIF(tau=full(tau), r=full(r), v_leak=full(0), v_threshold=full(1)))
    for dt in (1e-3, 1e-2):
        eff = A.effective(g, dt)
        assert eff.beta == pytest.approx(np.exp(-1 / tau), rel=1e-6)
        assert eff.spike_gain == pytest.approx(1.0) and eff.analog_gain == pytest.approx(1.0)
        assert (eff.threshold, eff.threshold_rule, eff.reset) == (1.0, ">=", "subtract")
        why = explain(eff, neuron_node(g)[1], dt, hard_reset=False)  # nir 1.0.4, sinabs's pin: subtract
        assert "τ read as a number of steps" in why[0] and "input added unscaled, R ignored" in why[1]
    x = spikes_in()
    np.testing.assert_array_equal(A.run_imported(g, x, 1e-3), multispike(x, W, np.exp(-1 / tau), 1.0))


def test_if_counts_spikes_at_threshold():
    g = graph(nir.IF(r=full(1), v_threshold=full(1)))
    x = np.zeros((4, 1, 2))
    x[:, 0, 0] = 1  # neuron 0 gets 0.5 a step: v = 0.5, 1.0 (fires at v = θ exactly), 0.5, 1.0
    y = A.run_imported(g, x, 1e-3)
    np.testing.assert_array_equal(y[:, 0, 0], [0, 1, 0, 1])
    big = np.zeros((1, 1, 2))
    big[0, 0, 0] = 5.0  # v = 2.5 θ in one step: a count of 2 where NIR emits one event
    assert A.run_imported(g, big, 1e-3)[0, 0, 0] == 2
    eff = A.effective(g, 1e-3)
    assert (eff.beta, eff.spike_gain, eff.threshold_rule, eff.reset) == (1.0, 1.0, ">=", "subtract")


def test_linear_node_is_dropped():
    """A nir.Linear maps to no module: the neurons get the input itself, unweighted."""
    g = graph(nir.IF(r=full(1), v_threshold=full(1)), linear="Linear")
    with pytest.raises(RuntimeError, match="size of tensor"):  # 2 inputs reach 3 neurons' thresholds
        A.run_imported(g, spikes_in(), 1e-3)
    square = nir.NIRGraph(nodes={**g.nodes, "input": nir.Input(input_type=np.array([N])),
                                 "fc": nir.Linear(weight=0.5 * np.eye(N))}, edges=g.edges)
    x = np.zeros((4, 1, N))
    x[:, 0, 0] = 1  # weighted by 0.5, neuron 0 would fire every second step; unweighted it fires every step
    np.testing.assert_array_equal(A.run_imported(square, x, 1e-3)[:, 0], [[1, 0, 0]] * 4)
    assert any("'fc'" in n and "no module" in n for n in A.effective(g, 1e-3).notes)


@pytest.mark.parametrize("node", [
    nir.CubaLIF(tau_syn=full(0.005), tau_mem=full(0.01), r=full(1), v_leak=full(0), v_threshold=full(1)),
    nir.I(r=full(1)),
])
def test_unmapped_neurons_pass_input_through(node):
    g = graph(node)
    x = spikes_in(5)
    np.testing.assert_allclose(A.run_imported(g, x, 1e-3), x @ W.T.astype(np.float32), rtol=1e-6)
    eff = A.effective(g, 1e-3)
    assert eff.beta is None and "no module" in eff.notes[0]


@pytest.mark.parametrize("case", EXPORT_CASES)
def test_exports_read_by_evsnn(case):
    ex = A.export(case, 1e-3, seed=1)
    kinds = [type(n).__name__ for n in ex.graph.nodes.values()]
    expected = {"if": "IF", "lif": "LIF", "cuba_lif": "LIF", "li": "LI", "two_layer": "LIF"}[case]
    assert expected in kinds and "CubaLIF" not in kinds  # to_nir writes sinabs's LIF with tau_syn as a plain LIF
    for node in ex.graph.nodes.values():
        if type(node).__name__ in ("LIF", "LI"):  # tau in steps, r = 1
            np.testing.assert_array_equal(node.tau, 10.0)
            np.testing.assert_array_equal(node.r, 1.0)
    x = spikes_in(8, seed=2)
    x = np.concatenate([x] * (6 if case == "two_layer" else 2), axis=2)[:, :, :6 if case == "two_layer" else 4]
    y = ex.run(x)
    assert y.shape == (8, 2, 3)
    np.testing.assert_array_equal(ex.run(x), y)  # each run starts from rest
    model = evsnn.from_nir(ex.graph, dt=ex.dt)
    assert model.input.shape == x.shape[2:]
