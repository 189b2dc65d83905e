"""The Rockpool adapter against Rockpool 3.1.0's NIR import and export as its source defines them
(rockpool/nn/modules/torch/nir.py): a module's step taken from the node as min(τ / (1 + r)) whatever dt is asked
for, exact exponential decays over that step, LI's τ cast to an integer, LIF read from a field NIR's LIF lacks,
and an export that writes r = τ e^(−dt/τ) / dt and leaves torch Parameters in LI nodes."""

import math

import numpy as np
import pytest

pytest.importorskip("rockpool", reason="Rockpool is not installed: its NIR conformance is not checked")
nir = pytest.importorskip("nir", reason="nir is not installed")

from evsnn import ConversionError  # noqa: E402
from evsnn.io.nir import from_nir  # noqa: E402
from evsnn.nir_conformance._rockpool import RockpoolAdapter  # noqa: E402

A = RockpoolAdapter()
N = 3


def single(node):
    nodes = {"input": nir.Input(input_type={"input": np.array([N])}), "lin": nir.Linear(weight=np.eye(N)),
             "neu": node, "output": nir.Output(output_type={"output": np.array([N])})}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "lin"), ("lin", "neu"), ("neu", "output")])


def cuba(r=1.0):
    full = lambda v: np.full(N, v)  # noqa: E731
    return nir.CubaLIF(tau_syn=full(0.005), tau_mem=full(0.02), r=full(r), v_leak=full(0.0), v_threshold=full(1.0),
                       v_reset=full(0.0), w_in=full(1.0))


@pytest.mark.parametrize("r", [1.0, 3.0])
def test_cuba_lif_steps_by_tau_over_one_plus_r_whatever_dt(r):
    h = 0.02 / (1 + r)  # Rockpool's step for this node
    for dt in (1e-3, 1e-4):
        eff = A.effective(single(cuba(r)), dt)
        assert eff.beta == pytest.approx(math.exp(-h / 0.02), rel=1e-5)
        assert eff.syn_beta == pytest.approx(math.exp(-h / 0.005), rel=1e-5)
        assert f"dt = {h:g} s derived" in eff.notes[0]


def test_imported_cuba_lif_runs_and_spikes():
    x = (np.random.default_rng(0).random((30, 2, N)) < 0.5).astype(float) * 3.0
    out = A.run_imported(single(cuba()), x, 1e-3)
    assert out.shape == (30, 2, N) and out.sum() > 0


def test_lif_and_if_are_not_imported():
    full = lambda v: np.full(N, v)  # noqa: E731
    lif = nir.LIF(tau=full(0.02), r=full(1.0), v_leak=full(0.0), v_threshold=full(1.0), v_reset=full(0.0))
    with pytest.raises(AttributeError, match="tau_mem"):  # the importer reads LIF.tau_mem, which NIR's LIF lacks
        A.run_imported(single(lif), np.zeros((2, 1, N)), 1e-3)
    with pytest.raises(NotImplementedError, match="IF"):
        A.run_imported(single(nir.IF(r=full(1.0), v_threshold=full(1.0), v_reset=full(0.0))), np.zeros((2, 1, N)),
                       1e-3)


def test_li_time_constant_is_cast_to_an_integer():
    eff = A.effective(single(nir.LI(tau=np.full(N, 0.02), r=np.ones(N), v_leak=np.zeros(N))), 1e-3)
    assert eff.spike_gain == 0  # τ = int(0.02) = 0: nothing of an input survives to the output


def test_exports_write_r_from_their_dt_and_evsnn_reads_the_lif_ones():
    dt = 1e-3
    exported = A.export("lif", dt)
    (lif,) = [n for n in exported.graph.nodes.values() if isinstance(n, nir.LIF)]
    np.testing.assert_allclose(np.asarray(lif.r, dtype=float), 0.01 * math.exp(-0.1) / dt, rtol=1e-6)
    model = from_nir(exported.graph, dt=exported.dt)
    assert model.populations[-1].neuron.kind == "lif"
    x = (np.random.default_rng(1).random((20, 2, 4)) < 0.3).astype(float)
    assert exported.run(x).shape == (20, 2, 3)
    with pytest.raises(ConversionError, match=r"\(LI\): tau must be a numeric array"):
        from_nir(A.export("li", dt).graph, dt=dt)
    with pytest.raises(NotImplementedError, match="no IF neuron"):
        A.export("if", dt)
