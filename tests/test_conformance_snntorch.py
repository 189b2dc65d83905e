"""The snnTorch adapter against snnTorch's documented update, computed here by hand.

snnTorch's ``Leaky``: ``mem = beta * mem + input``, a spike where ``mem > threshold``, then the reset
(``subtract``: ``mem - threshold``; ``zero``: 0). Its ``import_from_nir`` (1.0.0, ``import_nir.py``) maps IF onto
``Leaky(beta=0.9)`` with a subtracting reset, and LIF onto ``Leaky(beta=1 - 1e-4/tau, reset zero)`` with the
threshold divided by ``r * 1e-4 / tau``.
"""

import numpy as np
import pytest

snntorch = pytest.importorskip("snntorch", reason="snnTorch is not installed: its NIR conformance is not checked")
nir = pytest.importorskip("nir", reason="nir is not installed")

import evsnn  # noqa: E402
from evsnn.io.nir import hard_reset  # noqa: E402
from evsnn.nir_conformance import explain  # noqa: E402
from evsnn.nir_conformance._snntorch import SnntorchAdapter  # noqa: E402

A = SnntorchAdapter()
N = 3


def single(node, weight):
    nodes = {"input": nir.Input(input_type={"input": np.array([N])}), "lin": nir.Linear(weight=weight),
             "neu": node, "output": nir.Output(output_type={"output": np.array([N])})}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "lin"), ("lin", "neu"), ("neu", "output")])


def leaky(x, w, beta, theta, reset, delay=False):
    """snnTorch's Leaky by hand, float64: per step the spikes and the smallest |mem - theta| met.

    Each step subtracts ``theta`` (``_base_sub``) when the membrane it starts with is above ``theta``; with
    ``reset_delay=False`` (the import) the step's own spike is then reset at once, the pending subtraction being
    undone when no spike follows; with ``reset_delay=True`` (snnTorch's default) only the next step resets.
    """
    mem, out, margin = np.zeros(x.shape[1:-1] + (w.shape[0],)), [], np.inf
    for xt in x:
        pending = (mem > theta).astype(float)
        if reset == "zero":
            mem = mem * (1 - pending)
        mem = beta * mem + xt @ w.T - (pending * theta if reset == "subtract" else 0)
        margin = min(margin, np.abs(mem - theta).min())
        s = (mem > theta).astype(float)
        if not delay:
            mem = mem - (s - pending) * theta if reset == "subtract" else mem * (1 - s)
        out.append(s)
    return np.stack(out), margin


def spikes(steps=40, seed=0, p=0.4, n=N):
    return (np.random.default_rng(seed).random((steps, 2, n)) < p).astype(float)


def test_if_imports_as_a_leaky_neuron_with_beta_0_9_and_a_subtracting_reset():
    w = np.random.default_rng(1).uniform(0.2, 0.9, (N, N))
    g = single(nir.IF(r=np.ones(N), v_threshold=np.full(N, 1.25), v_reset=np.zeros(N)), w)
    x = spikes()
    expected, margin = leaky(x, w, 0.9, 1.25, "subtract")
    assert margin > 1e-4 and expected.sum() > 10  # no float32 tie decides a spike, and it does spike
    np.testing.assert_array_equal(A.run_imported(g, x, 1e-3), expected)
    eff = A.effective(g, 1e-3)
    assert eff.beta == pytest.approx(0.9, rel=1e-6) and eff.spike_gain == pytest.approx(1, rel=1e-6)
    assert (eff.threshold, eff.threshold_rule, eff.reset) == (1.25, ">", "subtract")
    assert any(t.startswith("IF imported as a leaky neuron, β = 0.9") for t in explain(eff, g.nodes["neu"], 1e-3,
                                                                                       hard_reset=hard_reset()))


@pytest.mark.parametrize("dt", [1e-3, 1e-4])
def test_lif_hard_codes_dt_1e_4_whatever_dt_is_asked(dt):
    tau, r, theta = 2e-3, 4.0, 0.5
    w = np.random.default_rng(2).uniform(0.5, 2.0, (N, N))
    g = single(nir.LIF(tau=np.full(N, tau), r=np.full(N, r), v_leak=np.zeros(N), v_threshold=np.full(N, theta),
                       v_reset=np.zeros(N)), w)
    x = spikes(seed=3)
    scaled = theta / (r * 1e-4 / tau)  # the threshold the import writes, 2.5
    expected, margin = leaky(x, w, 1 - 1e-4 / tau, scaled, "zero")
    assert margin > 1e-4 and expected.sum() > 5
    np.testing.assert_array_equal(A.run_imported(g, x, dt), expected)
    eff = A.effective(g, dt)
    assert eff.beta == pytest.approx(0.95, rel=1e-6)
    assert eff.spike_gain == pytest.approx(r * 1e-4 / tau, rel=1e-6)  # in NIR units: the membrane x 0.2
    assert eff.analog_gain == pytest.approx(r * 1e-4 / tau, rel=1e-6)
    assert (eff.threshold, eff.threshold_rule, eff.reset, eff.v_reset) == (theta, ">", "zero", 0.0)
    reading = "1 − dt'/τ at dt' = 0.0001 s" if dt != 1e-4 else "forward Euler, 1 − dt/τ"
    assert reading in explain(eff, g.nodes["neu"], dt, hard_reset=hard_reset())[0]


def test_cuba_lif_synaptic_current_and_membrane():
    ts, tm = 5e-4, 1e-3
    node = nir.CubaLIF(tau_syn=np.full(N, ts), tau_mem=np.full(N, tm), r=np.full(N, tm / 1e-4),
                       v_leak=np.zeros(N), v_threshold=np.ones(N), v_reset=np.zeros(N), w_in=np.full(N, 2.0))
    eff = A.effective(single(node, np.eye(N)), 1e-3)
    assert eff.syn_beta == pytest.approx(1 - 1e-4 / ts, rel=1e-6) and eff.beta == pytest.approx(1 - 1e-4 / tm, rel=1e-6)
    assert eff.syn_gain == pytest.approx(2.0 * 1e-4 / ts, rel=1e-6)  # w_in dt/tau_syn, the threshold's divisor
    assert eff.spike_gain == pytest.approx(1.0, rel=1e-6)
    assert (eff.threshold, eff.reset) == (1.0, "zero")


def test_cuba_lif_with_another_r_and_li_are_refused_by_snntorch():
    cuba = nir.CubaLIF(tau_syn=np.full(N, 1e-3), tau_mem=np.full(N, 1e-3), r=np.ones(N), v_leak=np.zeros(N),
                       v_threshold=np.ones(N), v_reset=np.zeros(N), w_in=np.ones(N))
    with pytest.raises(AssertionError, match="r not supported"):
        A.run_imported(single(cuba, np.eye(N)), spikes(3), 1e-3)
    with pytest.raises(ValueError, match="LI"):
        A.run_imported(single(nir.LI(tau=np.ones(N), r=np.ones(N), v_leak=np.zeros(N)), np.eye(N)), spikes(3), 1e-3)


@pytest.mark.parametrize("case", ["lif", "cuba_lif", "two_layer"])
def test_export_passes_nir_and_reads_in_evsnn(case, tmp_path):
    ex = A.export(case, 1e-3, seed=1)
    assert ex.dt == 1e-4
    nir.NIRGraph(nodes=ex.graph.nodes, edges=ex.graph.edges)  # nir's own type check
    nir.write(tmp_path / "g.nir", ex.graph)
    model = evsnn.from_nir(tmp_path / "g.nir", dt=ex.dt)
    assert [p.neuron.kind for p in model.populations] == {"lif": ["lif"], "cuba_lif": ["cuba_lif"],
                                                          "two_layer": ["lif", "lif"]}[case]
    neurons = [n for n in ex.graph.nodes.values() if isinstance(n, (nir.LIF, nir.CubaLIF))]
    for n in neurons:  # tau = 1e-4 / (1 - beta), r = tau / 1e-4, and a reset to 0 although the module subtracts
        np.testing.assert_allclose(getattr(n, "tau", getattr(n, "tau_mem", None)), 1e-3, rtol=1e-6)
        np.testing.assert_array_equal(n.v_reset, 0)
    x = spikes(30, seed=4, p=0.5, n=model.input.shape[0])
    out = ex.run(x)
    assert out.shape == (30, 2, 3) and set(np.unique(out)) <= {0.0, 1.0} and out.sum() > 0


def test_export_of_a_missing_neuron_names_it():
    for case, name in (("if", "IF"), ("li", "LI")):
        with pytest.raises(NotImplementedError, match=name):
            A.export(case, 1e-3)


def test_the_exported_lif_runs_the_leaky_update():
    ex = A.export("lif", 1e-3, seed=2)
    w = np.asarray(next(n for n in ex.graph.nodes.values() if isinstance(n, (nir.Linear, nir.Affine))).weight)
    x = spikes(30, seed=5, n=4)
    expected, margin = leaky(x, w, 0.9, 1.0, "subtract", delay=True)  # built with defaults
    assert margin > 1e-4
    np.testing.assert_array_equal(ex.run(x), expected)
