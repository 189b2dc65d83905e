"""The event engine's compiled kernels against their readable references.

- the fused neuron step against :func:`evsnn.engines.neurons.neuron_step` / ``integrate`` (the one rule), bit for
  bit, for every kind and form the event engine runs, scalar and per-neuron parameters, serial and parallel;
- each delivery against scipy's loops it replaced (bit for bit: same summation order) and against the operator's
  dense forward pass; the BLAS path against the event kernel (to rounding).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from evsnn import Conv2d, Dense, NeuronSpec, Population, Sparse
from evsnn.engines import kernels
from evsnn.engines.event import (EVENT_KINDS, _ConvDelivery, _delivery, _DenseDelivery, _param_table, _SparseDelivery,
                                 step_flags)
from evsnn.engines.torch_ops import pool_factorization
from evsnn.engines.neurons import NeuronParams, initial_state, integrate, neuron_step
from evsnn.model import Projection

N = 7

SPECS = {
    "if subtract": NeuronSpec("if", threshold=0.7),
    "if zero strict": NeuronSpec("if", threshold=0.6, reset="zero", v_reset=-0.2, strict_threshold=True),
    "lif per-neuron": NeuronSpec("lif", beta=np.linspace(0.5, 1.0, N), threshold=np.linspace(0.4, 1.0, N),
                                 v_leak=0.3, v_init_fraction=0.5),
    "threshold": NeuronSpec("threshold", threshold=0.5),
    "srm": NeuronSpec("srm", threshold=np.linspace(0.4, 1.0, N), tau_syn=2e-3, tau_refr=4e-3, v_init_fraction=0.5),
    "srm seed 003": NeuronSpec("srm", threshold=0.6, tau_syn=3e-3, tau_refr=2e-3, refractory_amplitude=2.0),
    "srm zero strict": NeuronSpec("srm", threshold=0.5, tau_syn=1e-3, tau_refr=5e-3, reset="zero", v_reset=-0.1,
                                  strict_threshold=True),
    "ode if": NeuronSpec("if", r=2.0, threshold=0.8),
    "ode lif": NeuronSpec("lif", tau_mem=np.linspace(0.005, 0.02, N), r=1.5, v_leak=0.2, threshold=0.9),
    "ode cuba_lif": NeuronSpec("cuba_lif", tau_mem=0.01, tau_syn=np.linspace(0.002, 0.01, N), r=2.0, w_in=1.3,
                               threshold=0.5, reset="zero"),
    "ode li": NeuronSpec("li", tau_mem=0.01, r=2.0, v_leak=0.5),
    "ode cuba_li": NeuronSpec("cuba_li", tau_mem=0.01, tau_syn=0.004, r=2.0, w_in=1.5),
    "ode i": NeuronSpec("i", r=3.0),
}


def test_every_event_kind_is_covered():
    assert {s.kind for s in SPECS.values()} == set(EVENT_KINDS)


def fused(p: NeuronParams, state, current, held, emit: bool, parallel: bool):
    """One fused step on copies, as step 2 of 4 (its counts and marks recorded in column 2); returns (spiked
    mask, v, the extra state by name, current after, at_threshold)."""
    v, cur = state.v.copy(), current.copy()
    batch, n = v.shape
    idx, counts, at = np.full((batch, n), -1, np.int64), np.zeros(batch, np.int64), np.zeros(batch, bool)
    record, marks = np.full((batch, 4), -1, np.int64), np.zeros((batch, 4, n), np.int64)
    flags = step_flags(p, held is not None, emit, mark=emit)
    names = kernels.EXTRA_STATE.get(int(flags[0]), ())
    extra = np.stack([getattr(state, name) for name in names]) if names else np.zeros((1, 1, 1), v.dtype)
    total, above = kernels.neuron_step(parallel, v, extra, cur, cur if held is None else held,
                                       _param_table(p, n, v.dtype), flags, idx, counts, at, record, marks, 2)
    assert total == counts.sum() and above == at.any()
    spiked = np.zeros((batch, n), bool)
    for b in range(batch):
        assert np.all(np.diff(idx[b, :counts[b]]) > 0), "spike indices must be ascending"
        spiked[b, idx[b, :counts[b]]] = True
    np.testing.assert_array_equal(record[:, 2], spiked.sum(axis=1))
    np.testing.assert_array_equal(marks[:, 2], spiked)
    assert (record[:, [0, 1, 3]] == -1).all() and not marks[:, [0, 1, 3]].any(), "other steps untouched"
    return spiked, v, dict(zip(names, extra)), cur, at


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,with_held", [(name, held) for name, spec in SPECS.items()
                                            for held in ((False, True) if spec.ode else (False,))])
def test_fused_step_is_neuron_step_bit_for_bit(name, with_held, dtype, parallel):
    """Held analog input only where the neuron has it: the ODE form."""
    spec = SPECS[name]
    dtype = np.dtype(dtype)
    pop = Population("p", (N,), spec)
    p = NeuronParams.from_population(pop, dtype, engine="event", dt=1e-3)
    rng = np.random.default_rng([list(SPECS).index(name), with_held])
    batch = 5
    state = initial_state(p, batch, N, dtype)
    state = state._replace(v=(state.v + rng.normal(0, 0.5, state.v.shape)).astype(dtype),
                           i=None if state.i is None else rng.normal(0, 0.5, state.i.shape).astype(dtype))
    held = rng.normal(0, 0.5, (batch, N)).astype(dtype) if with_held else None
    for step in range(6):  # several steps: the state carries over
        current = rng.normal(0.3, 0.6, (batch, N)).astype(dtype)
        stepped = neuron_step(state, current, p, held)
        for emit, (want_spiked, want) in ((True, stepped),
                                          (False, (np.zeros((batch, N), bool), integrate(state, current, p, held)))):
            spiked, v, extra, cur, at = fused(p, state, current, held, emit, parallel)
            np.testing.assert_array_equal(spiked, want_spiked)
            assert v.dtype == want.v.dtype and np.array_equal(v.view(np.uint8), want.v.view(np.uint8)), name
            assert set(extra) == {k for k in ("i", "psp", "refractory") if getattr(want, k) is not None}
            for key, value in extra.items():
                assert np.array_equal(value.view(np.uint8), getattr(want, key).view(np.uint8)), (name, key)
            assert not cur.any(), "the impulses are consumed"
            np.testing.assert_array_equal(at, (want.v >= p.threshold).any(axis=1))
        state = stepped[1]
    assert step == 5


def spikes_of(rng, batch: int, n: int, density: float):
    mask = rng.random((batch, n)) < density
    mask[0] = False  # a row without spikes
    counts = mask.sum(axis=1).astype(np.int64)
    return mask, (np.cumsum(counts) - counts).astype(np.int64), counts, np.nonzero(mask)[1].astype(np.int64)


OPS = {
    "dense": Dense(np.random.default_rng(1).normal(size=(9, 20))),
    "conv": Conv2d(np.random.default_rng(2).normal(size=(4, 3, 3, 3)), input_shape=(3, 6, 5), stride=(2, 1),
                   padding=1),
    "conv folded": Conv2d(np.random.default_rng(3).normal(size=(2, 2, 4, 4)), input_shape=(2, 8, 8), stride=2),
    # an average pooling folded into the conv after it (block-constant kernel, stride 2; odd padding and height):
    # the BLAS path pools the padded spikes first
    "conv pooled": Conv2d(np.repeat(np.repeat(np.random.default_rng(4).normal(size=(3, 2, 2, 3)), 2, axis=2), 2,
                                    axis=3) / 4, input_shape=(2, 9, 8), stride=2, padding=(1, 2)),
    "sparse": Sparse.from_matrix(sp.random(11, 20, density=0.3, random_state=4) * 3),
}


def scipy_reference(op, mask: np.ndarray, out: np.ndarray, dtype) -> np.ndarray:
    """What the scipy loops computed: dense rows added one by one into ``out``; conv and CSR summed apart, then added."""
    out = out.copy()
    if isinstance(op, Dense):
        wt = op.weight.T.astype(dtype)
        for b in range(mask.shape[0]):
            for j in np.nonzero(mask[b])[0]:
                out[b] += wt[j]
        return out
    csr = sp.csr_array(op.to_csr().astype(dtype))  # (n_out, n_in)
    for b in range(mask.shape[0]):
        sums = np.zeros(op.n_out, dtype)
        for j in np.nonzero(mask[b])[0]:
            col = csr[:, [j]].tocoo()  # one entry per target (no duplicates in these operators)
            for r, w in zip(col.row, col.data):
                sums[r] += w
        out[b] += sums
    return out


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(OPS))
def test_event_delivery_sums_in_the_reference_order(name, dtype, parallel):
    op, dtype = OPS[name], np.dtype(dtype)
    rng = np.random.default_rng(5)
    mask, starts, counts, flat = spikes_of(rng, 6, op.n_in, 0.3)
    start_values = rng.normal(size=(6, op.n_out)).astype(dtype)
    out = start_values.copy()
    delivery = _delivery(Projection("p", "a", "b", op), dtype, None)
    sops, nominal = np.zeros((6, 3), np.int64), np.zeros((6, 3), np.int64)
    delivery.deliver(parallel, starts, counts, flat, False, out, (*op.fan_out(), sops, nominal, 1))
    assert np.array_equal(out, scipy_reference(op, mask, start_values, dtype))
    assert_sops_of_the_spikes(op, mask, sops, nominal)
    forward = start_values + op.forward(mask.astype(np.float64)).astype(dtype)
    np.testing.assert_allclose(out, forward, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("name", ["dense", "conv", "conv folded", "conv pooled"])
def test_blas_delivery_matches_the_event_kernel(name):
    op = OPS[name]
    rng = np.random.default_rng(6)
    _, starts, counts, flat = spikes_of(rng, 9, op.n_in, 0.5)
    cls = _DenseDelivery if isinstance(op, Dense) else _ConvDelivery
    delivery = cls(op, np.dtype("float64"), None)
    event, blas = np.ones((9, op.n_out)), np.ones((9, op.n_out))
    counted = [(np.zeros((9, 3), np.int64), np.zeros((9, 3), np.int64)) for _ in range(2)]
    delivery.deliver(False, starts, counts, flat, False, event, (*op.fan_out(), *counted[0], 1))
    delivery.deliver(False, starts, counts, flat, True, blas, (*op.fan_out(), *counted[1], 1))
    assert counted[0][0][:, 1].any()
    for a, b in zip(*counted):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(blas, event, rtol=0, atol=1e-12)


def test_a_pooling_folded_into_a_conv_is_recognized_and_only_then():
    import torch.nn as nn

    import evsnn

    assert pool_factorization(OPS["conv pooled"])
    assert _ConvDelivery(OPS["conv pooled"], np.dtype("float32"), None).product.pooled
    assert not pool_factorization(OPS["conv"]) and not pool_factorization(OPS["conv folded"])
    w = OPS["conv pooled"].weight.copy()
    w[1, 0, 0, 1] += 1e-9  # one tap off its block's value
    assert not pool_factorization(Conv2d(w, input_shape=(2, 9, 8), stride=2, padding=(1, 2)))
    assert not pool_factorization(Conv2d(w[:, :, :3], input_shape=(2, 9, 8), stride=2, padding=1))  # kernel 3 x 4
    # what the converter folds: conv, ReLU, AvgPool2d(2), conv -> the second conv is a pooled one with 1/4 the MACs
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 5, 3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(5 * 4 * 4, 3))
    model = evsnn.convert(net, input_shape=(1, 14, 14), norm="none")
    folded = model.projections[1].op
    assert folded.stride == (2, 2) and folded.weight.shape[2:] == (6, 6)
    delivery = _ConvDelivery(folded, np.dtype("float32"), None)
    assert delivery.product.pooled and delivery.macs == folded.n_out * 4 * 9 + folded.n_in


def test_crossover_is_per_projection_and_dense_above_overrides_it():
    dense, conv = OPS["dense"], OPS["conv"]
    d = _DenseDelivery(dense, np.dtype("float32"), None)
    c = _ConvDelivery(conv, np.dtype("float32"), None)
    assert d.dense_limit(1) == np.inf  # at batch 1 the matmul never pays for a dense layer
    assert d.dense_limit(64) < 64 * dense.n_in
    # padding: the conv's dense MACs exceed its connections, which raises its crossover
    assert c.dense_limit(64) / (64 * conv.n_in) > c.dense_limit(64) * conv.n_connections() / (64 * conv.n_in * c.macs)
    assert _DenseDelivery(dense, np.dtype("float32"), 0.25).dense_limit(64) == 0.25 * 64 * dense.n_in
    assert _DenseDelivery(dense, np.dtype("float32"), 0.25).dense_limit(4) == np.inf
    assert _SparseDelivery(OPS["sparse"], np.dtype("float32"), 0.0).dense_limit(64) == np.inf


def assert_sops_of_the_spikes(op, mask, sops, nominal) -> None:
    """Column 1 holds each row's SOPs: the operator's non-zero weights (nominal: connections) of every spike,
    counted synapse by synapse from the dense matrix; the other columns are untouched."""
    matrix = op.to_csr().toarray() if not isinstance(op, Dense) else op.weight
    np.testing.assert_array_equal(sops[:, 1], mask @ (matrix != 0).sum(axis=0))
    if not isinstance(op, Sparse):  # every (input, output) pair a stencil reaches is a connection, zero or not
        assert (nominal[:, 1] >= sops[:, 1]).all()
    assert not sops[:, [0, 2]].any() and not nominal[:, [0, 2]].any()


def test_a_conv_that_reaches_only_padding_is_never_delivered_densely():
    """A 1x1 kernel at stride 2 on one pixel padded by 1 reads only padding: zero connections (found by the random
    models of test_event_engine, where the crossover divided by them)."""
    op = Conv2d(np.full((1, 1, 1, 1), 0.5), input_shape=(1, 1, 1), stride=2, padding=1)
    assert op.n_connections() == 0 and op.out_shape == (1, 2, 2)
    assert _ConvDelivery(op, np.dtype("float32"), None).dense_limit(64) == np.inf
    from evsnn import InputSpec, SpikingModel, simulate

    model = SpikingModel(input=InputSpec((1, 1, 1), encoding="poisson"),
                         populations=[Population("out", (1, 2, 2), NeuronSpec(threshold=0.4))],
                         projections=[Projection("p", "input", "out", op)])
    result = simulate(model, np.ones((8, 1, 1, 1)), steps=5, batch_size=8)
    assert result.total_sops().sum() == 0 and result.spike_counts["out"].sum() == 0


@pytest.mark.parametrize("parallel", [False, True])
def test_sop_count_is_the_fan_out_rule(parallel):
    op = OPS["conv"]
    rng = np.random.default_rng(7)
    mask, starts, counts, flat = spikes_of(rng, 4, op.n_in, 0.4)
    sops, nominal = np.zeros((4, 3), np.int64), np.zeros((4, 3), np.int64)
    kernels.count_sops(parallel, starts, counts, flat, *op.fan_out(), sops, nominal, 1)
    synapses, connections = op.fan_out()
    np.testing.assert_array_equal(sops[:, 1], mask @ synapses)
    np.testing.assert_array_equal(nominal[:, 1], mask @ connections)
    assert_sops_of_the_spikes(op, mask, sops, nominal)


@pytest.mark.parametrize("parallel", [False, True])
def test_spike_rows_are_the_rasters_nonzero_entries_row_by_row(parallel):
    rng = np.random.default_rng(11)
    raster = rng.random((37, 23)) < 0.3
    raster[3] = False  # an empty row
    raster[5] = True  # a full one
    raster[-1] = False  # the last row empty: indptr must still end at the total
    indptr, flat = kernels.spike_rows(parallel, raster)
    assert indptr.dtype == flat.dtype == np.int64
    rows, cols = np.nonzero(raster)  # row-major, ascending columns within a row
    np.testing.assert_array_equal(flat, cols)
    np.testing.assert_array_equal(indptr, np.searchsorted(rows, np.arange(raster.shape[0] + 1)))
    indptr, flat = kernels.spike_rows(parallel, np.zeros((4, 6), dtype=bool))
    assert flat.size == 0 and not indptr.any()


def threads_models():
    """A few models: Gaussian weights (conv, sparse skip, delays, recurrence, LIF, bias), the factories' MLP and
    everything-model (SRM swapped for LIF, which the event engine runs)."""
    from factories import make_everything, make_mlp
    from test_event_engine import gaussian_model

    everything = make_everything()
    pops = list(everything.populations)
    pops[2] = Population("out", (5,), NeuronSpec("lif", beta=0.9))
    rng = np.random.default_rng(8)
    return {"gaussian poisson": gaussian_model("poisson", "count"),
            "gaussian current membrane": gaussian_model("current", "membrane"),
            "everything": (everything.replace(populations=pops), rng.random((10, 2, 7, 7))),
            "mlp": (make_mlp(), rng.random((10, 1, 28, 28)))}


@pytest.mark.parametrize("dense_above", [None, 0.0])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_results_do_not_depend_on_threads(dtype, dense_above):
    """threads=1, 2, 3, with and without rasters (the compiled step loop, or Python at every recorded step): every
    record identical, bit for bit (the crossover's choices and forced BLAS steps too)."""
    from evsnn.simulation import simulate
    from test_event_engine import results_equal

    for name, (model, x) in threads_models().items():
        runs = [simulate(model, x, steps=15, dtype=dtype, record=record, batch_size=10, threads=n,
                         options={"event": {"dense_above": dense_above}}) for n in (1, 2, 3) for record in ("all", ())]
        assert sum(int(c.sum()) for c in runs[0].spike_counts.values()) > 0, name
        for other in runs[1:]:
            results_equal(runs[0], other, rasters=bool(other.rasters))
            assert np.array_equal(runs[0].output.view(np.uint8), other.output.view(np.uint8)), name


def test_threads_are_restored_after_a_run():
    import torch
    from threadpoolctl import threadpool_info

    from evsnn.simulation import simulate

    before = torch.get_num_threads(), [p["num_threads"] for p in threadpool_info()]
    model, x = threads_models()["mlp"]
    simulate(model, x, steps=3, threads=1)
    assert (torch.get_num_threads(), [p["num_threads"] for p in threadpool_info()]) == before


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_analog_product_sums_the_nonzero_inputs_in_order_in_float64(dtype, parallel):
    """kernels.analog_dense against a numpy loop over the inputs in order (float64 sums, one rounding at the end),
    bit for bit; zero inputs (most of an image) are skipped, which changes no bit."""
    rng = np.random.default_rng(5)
    x = rng.random((9, 40)).astype(dtype)
    x[x < 0.6] = 0  # 60 % zeros, one row all zero
    x[4] = 0
    wt = rng.normal(0, 1, (40, 33)).astype(dtype)
    expected = np.zeros((9, 33), dtype=dtype)
    for b in range(9):
        acc = np.zeros(33)
        for j in range(40):
            acc += np.float64(x[b, j]) * wt[j].astype(np.float64)
        expected[b] = acc
    out = np.full((9, 33), np.nan, dtype=dtype)
    kernels.analog_dense(parallel, x, wt, out)
    assert np.abs(out).max() > 0 and not out[4].any()
    assert np.array_equal(out.view(np.uint8), expected.view(np.uint8))
    if dtype == "float32":  # the float32 result is the float64 product, rounded once (a BLAS sgemm rounds each step)
        assert np.array_equal(out, (x.astype(np.float64) @ wt.astype(np.float64)).astype(np.float32))


def test_a_wide_analog_input_layer_gives_the_same_float32_sums_on_any_threads():
    """The input layer's product (analog input, once per batch) runs on the run's threads, each row's sums in one
    order (kernels.analog_dense), so threads=1 and 2 give the same bits (the membrane read-out shows every bit of
    the sums)."""
    from evsnn import InputSpec, SpikingModel
    from evsnn.simulation import simulate

    rng = np.random.default_rng(3)
    weight = rng.normal(0, 0.05, (1200, 784)).astype(np.float32)  # float32 weights: numpy's product is sgemm
    model = SpikingModel(input=InputSpec((784,), encoding="current"),
                         populations=[Population("out", (1200,), NeuronSpec("lif", beta=0.9, threshold=1e9))],
                         projections=[Projection("fc1", "input", "out", Dense(weight))], readout="membrane")
    x = rng.random((64, 784))
    runs = [simulate(model, x, steps=3, dtype="float32", batch_size=64, threads=n) for n in (1, 2)]
    assert np.abs(runs[0].output).max() > 0
    assert np.array_equal(runs[0].output.view(np.uint8), runs[1].output.view(np.uint8))


def test_rows_apart_give_the_step_loops_records_and_fall_back_where_a_step_goes_dense(monkeypatch):
    """On several threads, after a batch without dense steps the next batch runs with its rows apart
    (kernels.run_rows; one thread always steps); one whose
    hidden layer then turns out to be above its dense limit in a step is run again step by step. Batches of 8:
    quiet, quiet, busy, quiet, quiet. Every record equals the step loop's (a run with rasters always steps) on 1
    and 2 threads, in float32, where a dense step's sums differ from the event kernels' (without the second run
    the output potentials differ); both paths ran."""
    from evsnn import InputSpec, SpikingModel
    from evsnn.simulation import simulate
    from test_event_engine import results_equal

    rng = np.random.default_rng(5)
    model = SpikingModel(input=InputSpec((20,), encoding="current"),
                         populations=[Population("hidden", (40,), NeuronSpec("if")),
                                      Population("out", (5,), NeuronSpec("if"))],
                         projections=[Projection("fc1", "input", "hidden", Dense(rng.uniform(0, 0.1, (40, 20)))),
                                      Projection("fc2", "hidden", "out", Dense(rng.normal(0, 0.3, (5, 40))))],
                         readout="membrane")  # every bit of fc2's sums, which a dense step rounds otherwise
    x = rng.uniform(0, 0.1, (40, 20))
    x[16:24] = 1  # the third batch: every hidden neuron fires at every step, above fc2's limit of 25 % of them
    calls = []

    def spy(name, kernel):
        def run(*args):
            if name == "rows" or args[:2] == (0, -1):  # a batch's first call
                calls.append(name)
            return kernel(*args)
        return run

    monkeypatch.setattr(kernels, "run_rows", spy("rows", kernels.run_rows))
    monkeypatch.setattr(kernels, "run_steps", spy("steps", kernels.run_steps))
    settings = dict(steps=20, dtype="float32", batch_size=8, options={"event": {"dense_above": 0.25}})
    stepped = simulate(model, x, record="all", **settings)
    assert calls == ["steps"] * 5
    per_step = stepped.spike_counts["hidden"].reshape(5, 8, -1).sum(axis=1)  # each batch's hidden spikes per step
    assert per_step[[0, 1, 3, 4]].max() <= 0.25 * 8 * 40 < per_step[2].max() and per_step[[0, 1, 3, 4]].all(axis=0).any()
    for threads in (1, 2):
        calls.clear()
        apart = simulate(model, x, threads=threads, **settings)
        assert calls == (["steps"] * 5 if threads == 1 else ["steps", "rows", "rows", "steps", "steps", "rows"])
        results_equal(stepped, apart, rasters=False)
        assert np.array_equal(stepped.output.view(np.uint8), apart.output.view(np.uint8))
    calls.clear()  # the engine option turns it off
    settings["options"]["event"]["rows_apart"] = False
    off = simulate(model, x, threads=2, **settings)
    assert calls == ["steps"] * 5 and off.settings["rows_apart"] is False and apart.settings["rows_apart"] is True
    results_equal(stepped, off, rasters=False)
    with pytest.raises(ValueError, match="rows_apart must be true or false, got 'no'"):
        simulate(model, x, steps=2, options={"event": {"rows_apart": "no"}})
