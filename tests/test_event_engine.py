"""The event engine against an independent, naive reference simulator.

The reference (``reference_run``) is a deliberately plain per-sample, per-neuron,
per-synapse Python loop over the documented semantics (docs/design.md, "Time and
update order"):

- per step ``t``, populations in model order; the input current of a
  population is the sum over its incoming projections of weight x source
  spikes emitted at step ``t - delay`` (for a ``current`` input: ``scale * x``
  through the projection, also ``delay`` steps late), plus its bias;
- IF ``v = v + I``, LIF ``v = beta * v + I``; spike where ``v >= threshold``;
  reset ``subtract`` (``v -= threshold``) or ``zero`` (``v = v_reset``);
  initial ``v = v_init_fraction * threshold``;
- ``membrane`` readout: the output population only integrates, ``output[:, t]``
  is its ``v`` after step ``t``; ``count`` readout: ``output[:, t]`` are its
  spikes at step ``t``, prediction = most spikes (ties to the lowest index);
- SOPs: every spike of neuron ``j`` at step ``t`` through a spike-fed
  projection adds the number of non-zero weights of ``j`` (nominal: structural
  entries, zeros included); analog input MACs: per step, over non-zero inputs,
  the non-zero synapses of each.

Synapses are built with explicit loops (conv: over output positions and kernel
taps), never from the engine's tables. Weights, inputs, biases and thresholds
are dyadic rationals with few bits (k / 16), so every sum of input current is
exact in float64 whatever the summation order: engine and reference must then
agree *exactly* -- spikes, potentials, SOPs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from evsnn import Conv2d, Dense, InputSpec, NeuronSpec, Population, Projection, Sparse, SpikingModel
from evsnn.encoding import encode
from evsnn.engines import available_engines, get_engine
from evsnn.errors import EngineError
from evsnn.model import INPUT
from evsnn.ops import conv2d_output_shape
from evsnn.simulation import simulate


# ============================================================================================
# The reference simulator
# ============================================================================================
def reference_synapses(op) -> list[list[tuple[int, float]]]:
    """For each source neuron ``j``: its structural synapses ``[(target i, weight), ...]`` (zeros kept).

    Explicit loops only: dense over every pair, conv over output positions and kernel taps
    (PyTorch cross-correlation with zero padding), sparse over the stored CSR entries.
    """
    if isinstance(op, Dense):
        w = op.weight
        n_out, n_in = w.shape
        return [[(i, float(w[i, j])) for i in range(n_out)] for j in range(n_in)]
    if isinstance(op, Conv2d):
        c_out, c_in, kh, kw = op.weight.shape
        _, h, w_ = op.input_shape
        (ph, pw), (sh, sw) = op.padding, op.stride
        oh = (h + 2 * ph - kh) // sh + 1
        ow = (w_ + 2 * pw - kw) // sw + 1
        fan: list[list[tuple[int, float]]] = [[] for _ in range(c_in * h * w_)]
        for o in range(c_out):
            for oy in range(oh):
                for ox in range(ow):
                    i = (o * oh + oy) * ow + ox
                    for c in range(c_in):
                        for ky in range(kh):
                            for kx in range(kw):
                                iy, ix = oy * sh - ph + ky, ox * sw - pw + kx
                                if 0 <= iy < h and 0 <= ix < w_:  # inside the borders
                                    fan[(c * h + iy) * w_ + ix].append((i, float(op.weight[o, c, ky, kx])))
        return fan
    assert isinstance(op, Sparse)
    n_out, n_in = op.shape
    fan = [[] for _ in range(n_in)]
    for i in range(n_out):
        for k in range(int(op.indptr[i]), int(op.indptr[i + 1])):
            fan[int(op.indices[k])].append((i, float(op.data[k])))
    return fan


def brute_fan_out(op) -> tuple[np.ndarray, np.ndarray]:
    """Per source neuron: its non-zero synapses and its connections, counted synapse by synapse.

    The SOP rule's independent reference (never the library's ``fan_out`` or ``to_csr``): dense counts
    each weight of a column, sparse each stored entry, conv each (output position, kernel tap) pair inside
    the borders -- a loop over taps and input channels, vectorised over output positions, so that it is
    fast enough for the Diehl networks (:func:`reference_synapses` is the fully explicit loop, and
    ``test_brute_fan_out_counts_the_reference_synapses`` ties the two together).
    """
    if isinstance(op, Dense):
        n_out, n_in = op.weight.shape
        synapses, connections = np.zeros(n_in, dtype=np.int64), np.zeros(n_in, dtype=np.int64)
        for i in range(n_out):
            synapses += op.weight[i] != 0
            connections += 1
        return synapses, connections
    if isinstance(op, Sparse):
        n_in = op.shape[1]
        synapses, connections = np.zeros(n_in, dtype=np.int64), np.zeros(n_in, dtype=np.int64)
        np.add.at(connections, op.indices, 1)
        np.add.at(synapses, op.indices, (op.data != 0).astype(np.int64))
        return synapses, connections
    assert isinstance(op, Conv2d)
    c_out, c_in, kh, kw = op.weight.shape
    _, h, w = op.input_shape
    (ph, pw), (sh, sw) = op.padding, op.stride
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    synapses, connections = np.zeros((c_in, h, w), dtype=np.int64), np.zeros((c_in, h, w), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            iy, ix = np.meshgrid(np.arange(oh) * sh - ph + ky, np.arange(ow) * sw - pw + kx, indexing="ij")
            inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)  # output positions whose tap is not padding
            for c in range(c_in):
                np.add.at(connections[c], (iy[inside], ix[inside]), c_out)
                np.add.at(synapses[c], (iy[inside], ix[inside]), int(np.count_nonzero(op.weight[:, c, ky, kx])))
    return synapses.reshape(-1), connections.reshape(-1)


def brute_sops(model: SpikingModel, rasters, input_events, n: int, steps: int, *, nominal: bool = False) -> dict:
    """SOPs per projection (n, steps): every recorded spike adds its neuron's brute-force fan-out."""
    out = {}
    for pr in model.projections:
        if pr.source == INPUT:
            if input_events is None:
                continue
            sample, step, neuron = input_events
        else:
            r = rasters[pr.source]
            sample, step, neuron = r.sample, r.step, r.neuron
        fan = brute_fan_out(pr.op)[1 if nominal else 0]
        counts = np.zeros((n, steps), dtype=np.int64)
        np.add.at(counts, (sample, step), fan[neuron])
        out[pr.name] = counts
    return out


def reference_input(model: SpikingModel, x: np.ndarray, steps: int, encoding: str, *, seed: int = 0):
    """What the input looks like to the reference.

    Returns ``("current", a)`` with ``a[b][j] = scale * x`` or ``("spikes", s)`` with
    ``s[t]`` the list of ``(b, j)`` input spikes at step ``t``. ``regular`` is computed here
    from its documented rule; ``poisson`` spikes are taken from :func:`evsnn.encoding.encode`
    (random draws cannot be re-derived independently), so both simulators see the same spikes.
    """
    spec = model.input
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n, n_in = flat.shape
    if encoding == "current":
        return "current", [[spec.scale * float(flat[b, j]) for j in range(n_in)] for b in range(n)]
    spikes: list[list[tuple[int, int]]] = [[] for _ in range(steps)]
    if encoding == "regular":
        for b in range(n):
            for j in range(n_in):
                p = min(float(flat[b, j]) * spec.max_rate * model.dt, 1.0)
                for t in range(steps):
                    if math.floor((t + 1) * p) > math.floor(t * p):
                        spikes[t].append((b, j))
    else:
        s = encode(model, x, steps=steps, encoding=encoding, seed=seed).spikes(0, n).toarray()
        for t in range(steps):
            for b in range(n):
                for j in range(n_in):
                    if s[t * n + b, j]:
                        spikes[t].append((b, j))
    return "spikes", spikes


def _argmax(values) -> int:
    best = 0
    for k in range(1, len(values)):
        if values[k] > values[best]:  # strict: ties go to the lowest index
            best = k
    return best


def reference_run(model: SpikingModel, x: np.ndarray, steps: int, encoding: str | None = None, *,
                  seed: int = 0) -> dict:
    """Simulate ``model`` the naive way; return a dict with the fields of a Result (plus raw spike sets)."""
    encoding = encoding or model.input.encoding
    kind, inp = reference_input(model, x, steps, encoding, seed=seed)
    n = len(x)
    fans = {pr.name: reference_synapses(pr.op) for pr in model.projections}
    nnz = {name: [sum(1 for _, w in f if w != 0.0) for f in fan] for name, fan in fans.items()}
    membrane = model.readout == "membrane"

    def per_neuron(value, size):
        return [float(value)] * size if np.ndim(value) == 0 else [float(v) for v in np.ravel(value)]

    th = {p.name: per_neuron(p.neuron.threshold, p.size) for p in model.populations}
    v = {p.name: [[th[p.name][i] * p.neuron.v_init_fraction for i in range(p.size)] for _ in range(n)]
         for p in model.populations}
    emitted = {p.name: [] for p in model.populations}  # name -> per step: list of (b, j)
    if kind == "spikes":
        emitted[INPUT] = inp
    raster = {p.name: set() for p in model.populations}
    counts = {p.name: np.zeros((n, steps), dtype=np.int64) for p in model.populations}
    spike_fed = [pr for pr in model.projections if pr.source != INPUT or kind == "spikes"]
    sops = {pr.name: np.zeros((n, steps), dtype=np.int64) for pr in spike_fed}
    sops_nominal = {pr.name: np.zeros((n, steps), dtype=np.int64) for pr in spike_fed}
    input_macs = {pr.name: np.zeros((n, steps), dtype=np.int64)
                  for pr in model.projections if pr.source == INPUT and kind == "current"}
    out_pop = model.population(model.output)
    output = np.zeros((n, steps, out_pop.size), dtype=np.float64 if membrane else np.int64)

    for t in range(steps):
        for pop in model.populations:
            current = [[0.0] * pop.size for _ in range(n)]
            for pr in model.projections_into(pop.name):
                s = t - pr.delay
                if s < 0:
                    continue
                fan = fans[pr.name]
                if pr.source == INPUT and kind == "current":
                    for b in range(n):
                        for j, xj in enumerate(inp[b]):
                            if xj != 0.0:
                                for i, w in fan[j]:
                                    current[b][i] += w * xj
                else:
                    for b, j in emitted[pr.source][s]:
                        for i, w in fan[j]:
                            current[b][i] += w
            if pop.bias is not None:
                bias = [float(b_) for b_ in np.ravel(pop.bias)]
                for b in range(n):
                    for i in range(pop.size):
                        current[b][i] += bias[i]
            beta, spec = pop.neuron.beta, pop.neuron
            spikes_now = []
            for b in range(n):
                vb = v[pop.name][b]
                for i in range(pop.size):
                    vb[i] = vb[i] + current[b][i] if beta == 1.0 else beta * vb[i] + current[b][i]
                    if membrane and pop.name == model.output:
                        continue  # never spikes, only integrates
                    if vb[i] >= th[pop.name][i]:
                        spikes_now.append((b, i))
                        vb[i] = vb[i] - th[pop.name][i] if spec.reset == "subtract" else spec.v_reset
            emitted[pop.name].append(spikes_now)
            for b, i in spikes_now:
                raster[pop.name].add((b, t, i))
                counts[pop.name][b, t] += 1
                if pop.name == model.output:
                    output[b, t, i] = 1
            if membrane and pop.name == model.output:
                for b in range(n):
                    output[b, t, :] = v[pop.name][b]
        # SOPs of every spike emitted at step t (input spikes included), through each projection
        for pr in spike_fed:
            for b, j in emitted[pr.source][t]:
                sops[pr.name][b, t] += nnz[pr.name][j]
                sops_nominal[pr.name][b, t] += len(fans[pr.name][j])
        for pr in model.projections:
            if pr.name in input_macs:
                for b in range(n):
                    input_macs[pr.name][b, t] = sum(nnz[pr.name][j] for j, xj in enumerate(inp[b]) if xj != 0.0)

    final = output[:, -1] if membrane else output.sum(axis=1)
    predictions = np.array([_argmax(list(final[b])) for b in range(n)], dtype=np.int64)
    return dict(raster=raster, spike_counts=counts, output=output, predictions=predictions,
                sops=sops, sops_nominal=sops_nominal, input_macs=input_macs)


# ============================================================================================
# Comparison helpers
# ============================================================================================
def engine_raster(res, name) -> set:
    r = res.rasters[name]
    order = np.lexsort((r.neuron, r.step, r.sample))
    assert (order == np.arange(len(r))).all(), f"raster of {name} is not sorted by (sample, step, neuron)"
    return set(zip(r.sample.tolist(), r.step.tolist(), r.neuron.tolist()))


def first_difference(a: set, b: set) -> str:
    only_a, only_b = sorted(a - b), sorted(b - a)
    return f"engine only: {only_a[:5]} ({len(only_a)}), reference only: {only_b[:5]} ({len(only_b)})"


def assert_matches(res, ref: dict, model: SpikingModel) -> None:
    """Engine Result == reference, exactly (float64 run with record='all')."""
    for p in model.populations:
        got = engine_raster(res, p.name)
        assert got == ref["raster"][p.name], f"population {p.name!r}: {first_difference(got, ref['raster'][p.name])}"
    assert res.spike_counts.keys() == ref["spike_counts"].keys()
    for name, c in ref["spike_counts"].items():
        np.testing.assert_array_equal(res.spike_counts[name], c, err_msg=f"spike_counts[{name!r}]")
    assert res.output.shape == ref["output"].shape
    np.testing.assert_array_equal(res.output, ref["output"], err_msg="output")
    np.testing.assert_array_equal(res.predictions, ref["predictions"], err_msg="predictions")
    for field in ("sops", "sops_nominal", "input_macs"):
        got, want = getattr(res, field), ref[field]
        assert got.keys() == want.keys(), f"{field}: projections {sorted(got)} != {sorted(want)}"
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{field}[{name!r}]")


def run_both(model, x, steps, *, encoding=None, seed=0, **kw):
    """The engine's float64 run with record='all' and the reference's; the engine's run without records (which
    stays in the compiled step loop, where a recorded population hands each step back to Python) must equal the
    recorded one."""
    res = simulate(model, x, steps=steps, encoding=encoding, seed=seed, dtype="float64", record="all", **kw)
    quiet = simulate(model, x, steps=steps, encoding=encoding, seed=seed, dtype="float64", **kw)
    results_equal(res, quiet, rasters=False)
    ref = reference_run(model, x, steps, encoding, seed=seed)
    return res, ref


def assert_lively(ref: dict, model: SpikingModel, *, low=0.01, high=0.7, skip=()) -> None:
    """Guard against vacuous tests: every spiking population fires at a moderate rate."""
    for p in model.populations:
        if p.name in skip or (model.readout == "membrane" and p.name == model.output):
            continue
        rate = ref["spike_counts"][p.name].mean() / p.size
        assert low <= rate <= high, f"test model badly scaled: {p.name!r} fires at {rate:.3f} per neuron-step"


def assume_lively(spike_counts: dict, output: np.ndarray, model: SpikingModel) -> None:
    """For random models: keep only runs where every spiking population fires and a membrane readout moves.

    A run in which nothing happens agrees with any simulator that emits nothing; such examples are
    discarded, so a simulator that never spikes makes every example fail this and hypothesis reports the
    test unsatisfiable instead of passing it."""
    for p in model.populations:
        if model.readout == "membrane" and p.name == model.output:
            assume(np.any(output != 0))
        else:
            assume(spike_counts[p.name].sum() > 0)


# ============================================================================================
# Test models (dyadic values: every current sum is exact in float64)
# ============================================================================================
def dyadic(rng, shape, lo=-6, hi=8, denom=16, zeros=0.2) -> np.ndarray:
    """Integers in [lo, hi] over ``denom``, with a fraction of exact zeros."""
    a = rng.integers(lo, hi + 1, size=shape) / denom
    a[rng.random(shape) < zeros] = 0.0
    return a.astype(np.float64)


def inputs(rng, n, shape, levels=8) -> np.ndarray:
    """Values k / levels in [0, 1], some exactly 0 (fine for every encoding)."""
    return (rng.integers(0, levels + 1, size=(n, *shape)) / levels).astype(np.float64)


def sparse_op(rng, n_out, n_in, density=0.35, **kw) -> Sparse:
    """CSR with ~density stored entries, some of them explicit zeros."""
    mask = rng.random((n_out, n_in)) < density
    w = dyadic(rng, (n_out, n_in), **kw)
    rows, cols = np.nonzero(mask)
    indptr = np.zeros(n_out + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_out), out=indptr[1:])
    return Sparse(w[rows, cols], cols.astype(np.int64), indptr, (n_out, n_in))


def mlp(encoding, *, neuron=None, out_neuron=None, seed=0, readout="count"):
    rng = np.random.default_rng(seed)
    neuron = neuron or NeuronSpec()
    out_neuron = out_neuron or neuron
    model = SpikingModel(
        input=InputSpec((24,), encoding=encoding),
        populations=[Population("h1", (30,), neuron), Population("h2", (20,), neuron),
                     Population("out", (6,), out_neuron)],
        projections=[Projection("w1", INPUT, "h1", Dense(dyadic(rng, (30, 24), lo=-4, hi=4))),
                     Projection("w2", "h1", "h2", Dense(dyadic(rng, (20, 30), lo=-6, hi=7))),
                     Projection("w3", "h2", "out", Dense(dyadic(rng, (6, 20), lo=-6, hi=8)))],
        readout=readout,
    )
    return model, inputs(rng, 4, (24,))


def case_if_soft(encoding):
    return mlp(encoding)


def case_if_hard(encoding):
    return mlp(encoding, neuron=NeuronSpec("if", reset="zero", v_reset=-0.2))


def case_lif_soft(encoding):
    return mlp(encoding, neuron=NeuronSpec("lif", beta=0.8), seed=1)


def case_lif_hard(encoding):
    return mlp(encoding, neuron=NeuronSpec("lif", beta=0.8, reset="zero", v_reset=-0.2), seed=2)


def case_thresholds_vinit(encoding):
    rng = np.random.default_rng(3)
    th1 = rng.integers(6, 24, size=(5, 6)) / 16  # per-neuron thresholds, 2-D population
    th2 = rng.integers(8, 24, size=(5,)) / 16
    model = SpikingModel(
        input=InputSpec((20,), encoding=encoding),
        populations=[Population("h", (5, 6), NeuronSpec(threshold=th1, v_init_fraction=0.5)),
                     Population("out", (5,), NeuronSpec("lif", threshold=th2, beta=0.8, reset="zero",
                                                       v_reset=-0.2, v_init_fraction=0.5))],
        projections=[Projection("a", INPUT, "h", Dense(dyadic(rng, (30, 20), lo=-3, hi=4))),
                     Projection("b", "h", "out", Dense(dyadic(rng, (5, 30), lo=-4, hi=6)))],
    )
    return model, inputs(rng, 4, (20,))


def case_delays_bias(encoding):
    rng = np.random.default_rng(4)
    model = SpikingModel(
        input=InputSpec((16,), encoding=encoding),
        populations=[Population("h1", (24,), bias=dyadic(rng, (24,), lo=-2, hi=2, denom=32)),
                     Population("h2", (18,), NeuronSpec("lif", beta=0.8),
                                bias=dyadic(rng, (18,), lo=-3, hi=3, denom=32)),
                     Population("out", (5,), bias=-np.abs(dyadic(rng, (5,), lo=1, hi=2, denom=32, zeros=0)))],
        projections=[Projection("d0", INPUT, "h1", Dense(dyadic(rng, (24, 16), lo=-4, hi=4)), delay=0),
                     Projection("d1", "h1", "h2", Dense(dyadic(rng, (18, 24), lo=-6, hi=6)), delay=1),
                     Projection("d3", "h2", "out", Dense(dyadic(rng, (5, 18), lo=-6, hi=8)), delay=3)],
    )
    return model, inputs(rng, 4, (16,))


def case_conv(encoding):
    rng = np.random.default_rng(5)
    c1 = Conv2d(dyadic(rng, (3, 2, 3, 3), lo=-4, hi=5), input_shape=(2, 8, 8), stride=2, padding=1)  # (3,4,4)
    c2 = Conv2d(dyadic(rng, (4, 3, 3, 3), lo=-3, hi=6), input_shape=(3, 4, 4), stride=1, padding=0)  # (4,2,2)
    assert c1.out_shape == (3, 4, 4) and c2.out_shape == (4, 2, 2)
    model = SpikingModel(
        input=InputSpec((2, 8, 8), encoding=encoding),
        populations=[Population("conv1", (3, 4, 4)), Population("conv2", (4, 2, 2), NeuronSpec("lif", beta=0.8)),
                     Population("out", (5,))],
        projections=[Projection("c1", INPUT, "conv1", c1), Projection("c2", "conv1", "conv2", c2),
                     Projection("fc", "conv2", "out", Dense(dyadic(rng, (5, 16), lo=-6, hi=7)))],
    )
    return model, inputs(rng, 3, (2, 8, 8))


def case_residual(encoding):
    """h2 receives a sparse projection from the input (delay 0) and a dense one from h1 (delay 1)."""
    rng = np.random.default_rng(6)
    model = SpikingModel(
        input=InputSpec((20,), encoding=encoding),
        populations=[Population("h1", (25,)), Population("h2", (15,)), Population("out", (4,))],
        projections=[Projection("a", INPUT, "h1", Dense(dyadic(rng, (25, 20), lo=-4, hi=4))),
                     Projection("b", "h1", "h2", Dense(dyadic(rng, (15, 25), lo=-4, hi=5)), delay=1),
                     Projection("skip", INPUT, "h2", sparse_op(rng, 15, 20, lo=-3, hi=6), delay=0),
                     Projection("c", "h2", "out", Dense(dyadic(rng, (4, 15), lo=-6, hi=8)))],
    )
    return model, inputs(rng, 4, (20,))


def case_recurrent(encoding):
    """h2 (later) feeds h1 (earlier) with delay 1."""
    rng = np.random.default_rng(7)
    model = SpikingModel(
        input=InputSpec((20,), encoding=encoding),
        populations=[Population("h1", (20,)), Population("h2", (16,), NeuronSpec("lif", beta=0.8)),
                     Population("out", (4,))],
        projections=[Projection("a", INPUT, "h1", Dense(dyadic(rng, (20, 20), lo=-3, hi=4))),
                     Projection("b", "h1", "h2", Dense(dyadic(rng, (16, 20), lo=-4, hi=8))),
                     Projection("rec", "h2", "h1", Dense(dyadic(rng, (20, 16), lo=-4, hi=3)), delay=1),
                     Projection("c", "h2", "out", Dense(dyadic(rng, (4, 16), lo=-6, hi=8)))],
    )
    return model, inputs(rng, 4, (20,))


def case_sparse(encoding):
    rng = np.random.default_rng(8)
    model = SpikingModel(
        input=InputSpec((30,), encoding=encoding),
        populations=[Population("h", (40,), NeuronSpec(reset="zero", v_reset=-0.2)), Population("out", (6,))],
        projections=[Projection("s1", INPUT, "h", sparse_op(rng, 40, 30, lo=-4, hi=6)),
                     Projection("s2", "h", "out", sparse_op(rng, 6, 40, density=0.5, lo=-6, hi=7))],
    )
    return model, inputs(rng, 4, (30,))


def case_membrane(encoding):
    return mlp(encoding, out_neuron=NeuronSpec("lif", beta=0.8), readout="membrane", seed=9)


def case_membrane_if(encoding):
    return mlp(encoding, neuron=NeuronSpec("lif", beta=0.8, reset="zero", v_reset=-0.2), readout="membrane",
               seed=10)


CASES = {f.__name__[5:]: f for f in (case_if_soft, case_if_hard, case_lif_soft, case_lif_hard,
                                     case_thresholds_vinit, case_delays_bias, case_conv, case_residual,
                                     case_recurrent, case_sparse, case_membrane, case_membrane_if)}
ENCODINGS = ("current", "poisson", "regular")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_matches_reference(case, encoding):
    model, x = CASES[case](encoding)
    res, ref = run_both(model, x, steps=25, seed=3)
    assert_lively(ref, model)
    assert res.engine == "event" and res.settings["dtype"] == "float64" and res.settings["encoding"] == encoding
    assert_matches(res, ref, model)


# --- the reference itself --------------------------------------------------------------------
@pytest.mark.parametrize("op", [
    Conv2d(np.arange(2 * 2 * 3 * 3, dtype=float).reshape(2, 2, 3, 3) - 9, input_shape=(2, 5, 5), stride=2, padding=1),
    Conv2d(np.arange(3 * 1 * 3 * 3, dtype=float).reshape(3, 1, 3, 3) % 4, input_shape=(1, 5, 6), stride=1, padding=0),
    Conv2d(np.ones((1, 2, 2, 3)), input_shape=(2, 4, 5), stride=(2, 1), padding=(1, 0)),
    Dense(np.array([[1.0, 0.0, 2.0], [0.0, 0.0, -1.0]])),
])
def test_reference_synapses_agree_with_to_csr(op):
    """The reference's explicit loops and ``Operator.to_csr`` unroll the same matrix (zeros kept)."""
    fan = reference_synapses(op)
    csr = op.to_csr()
    w = np.zeros((op.n_out, op.n_in))
    structural = np.zeros((op.n_out, op.n_in), dtype=bool)
    for j, syn in enumerate(fan):
        for i, wij in syn:
            assert not structural[i, j]
            structural[i, j], w[i, j] = True, wij
    np.testing.assert_array_equal(w, csr.toarray())
    assert structural.sum() == csr.nnz
    coo = csr.tocoo()
    assert structural[coo.row, coo.col].all()


def fan_out_cases() -> list:
    """Operators for the SOP rule: conv borders, strides and padding, sparse with explicit zeros, dense zeros."""
    rng = np.random.default_rng(21)
    w = dyadic(rng, (3, 2, 3, 4), zeros=0.4)
    explicit = Sparse(np.array([0.5, 0.0, -1.0, 0.0, 2.0]), np.array([0, 1, 1, 3, 0]), np.array([0, 2, 4, 5]), (3, 5))
    ops = [Conv2d(w, (2, 7, 6)), Conv2d(w, (2, 7, 6), stride=2, padding=1), Conv2d(w, (2, 5, 9), stride=(3, 2)),
           Conv2d(w, (2, 3, 4), padding=(2, 1)), Conv2d(w, (2, 8, 8), stride=(1, 3), padding=(0, 2)),
           Conv2d(np.zeros((2, 1, 2, 2)), (1, 4, 4), stride=2),
           explicit, sparse_op(rng, 9, 7, zeros=0.5),
           Dense(np.array([[1.0, 0.0, 2.0], [0.0, 0.0, -1.0]])), Dense(np.zeros((3, 2)))]
    for _ in range(12):  # random geometry: any kernel, stride and padding that fits
        kh, kw, sh, sw, ph, pw = (int(v) for v in rng.integers([1, 1, 1, 1, 0, 0], [5, 5, 4, 4, 3, 3]))
        h, w_ = int(rng.integers(max(1, kh - 2 * ph), 10)), int(rng.integers(max(1, kw - 2 * pw), 10))
        ops.append(Conv2d(dyadic(rng, (2, 3, kh, kw), zeros=0.3), (3, h, w_), stride=(sh, sw), padding=(ph, pw)))
    return ops


@pytest.mark.parametrize("op", fan_out_cases())
def test_fan_out_is_the_brute_force_count(op):
    """The one SOP rule (``Operator.fan_out``) against a synapse-by-synapse count, both conventions."""
    synapses, connections = brute_fan_out(op)
    assert connections.sum() > 0  # not vacuous: every case has connections
    got_synapses, got_connections = op.fan_out()
    np.testing.assert_array_equal(got_synapses, synapses)
    np.testing.assert_array_equal(got_connections, connections)
    assert op.n_synapses() == synapses.sum() and op.n_connections() == connections.sum()
    assert op.fan_out() is op.fan_out() and not got_synapses.flags.writeable  # computed once, shared read-only


@pytest.mark.parametrize("op", fan_out_cases()[:10])
def test_brute_fan_out_counts_the_reference_synapses(op):
    """The fast brute force equals the fully explicit loops of ``reference_synapses``."""
    fan = reference_synapses(op)
    synapses, connections = brute_fan_out(op)
    np.testing.assert_array_equal(synapses, [sum(1 for _, w in f if w != 0.0) for f in fan])
    np.testing.assert_array_equal(connections, [len(f) for f in fan])


# ============================================================================================
# Delays of the input projection
# ============================================================================================
def delayed_input_model(encoding, delay=2):
    rng = np.random.default_rng(11)
    return SpikingModel(
        input=InputSpec((12,), encoding=encoding),
        populations=[Population("h", (16,)), Population("out", (4,))],
        projections=[Projection("a", INPUT, "h", Dense(dyadic(rng, (16, 12), lo=-2, hi=5)), delay=delay),
                     Projection("b", "h", "out", Dense(dyadic(rng, (4, 16), lo=-3, hi=8)), delay=1)],
    ), inputs(rng, 3, (12,))


@pytest.mark.parametrize("encoding", ["poisson", "regular"])
def test_delayed_input_projection_spikes(encoding):
    model, x = delayed_input_model(encoding)
    res, ref = run_both(model, x, steps=12)
    assert ref["spike_counts"]["h"][:, :2].sum() == 0  # nothing arrives before step `delay`
    assert_lively(ref, model)
    assert_matches(res, ref, model)


def test_delayed_input_projection_current():
    """An analog input is delayed like spikes: through a delay-2 projection it first arrives at step 2."""
    tiny = SpikingModel(input=InputSpec((1,)), populations=[Population("out", (1,))],
                        projections=[Projection("a", INPUT, "out", Dense(np.ones((1, 1))), delay=2)])
    res, ref = run_both(tiny, np.ones((1, 1)), steps=4)
    assert ref["raster"]["out"] == {(0, 2, 0), (0, 3, 0)}
    assert engine_raster(res, "out") == ref["raster"]["out"], "analog input ignores the projection delay"
    model, x = delayed_input_model("current")
    res, ref = run_both(model, x, steps=12)
    assert_matches(res, ref, model)


# ============================================================================================
# Batch size, dtype, dense BLAS path
# ============================================================================================
def gaussian_model(encoding="poisson", readout="count", seed=12):
    """Non-dyadic weights: conv (stride 2, padding 1) + residual + recurrent + sparse."""
    rng = np.random.default_rng(seed)
    g = lambda *s: rng.standard_normal(s)  # noqa: E731
    conv = Conv2d(0.5 * g(3, 2, 3, 3), input_shape=(2, 6, 6), stride=2, padding=1)  # -> (3, 3, 3)
    skip = g(12, 72) * 0.3 * (rng.random((12, 72)) < 0.3)
    model = SpikingModel(
        input=InputSpec((2, 6, 6), encoding=encoding),
        populations=[Population("conv", (3, 3, 3), NeuronSpec("lif", beta=0.9)),
                     Population("fc", (12,), NeuronSpec(reset="zero", v_reset=-0.1), bias=0.05 * g(12)),
                     Population("out", (5,), NeuronSpec(threshold=0.8))],
        projections=[Projection("conv", INPUT, "conv", conv),
                     Projection("fc", "conv", "fc", Dense(0.5 * g(12, 27) + 0.2)),
                     Projection("skip", INPUT, "fc", Sparse.from_matrix(skip), delay=0),
                     Projection("rec", "out", "fc", Dense(0.3 * g(12, 5)), delay=1),
                     Projection("out", "fc", "out", Dense(0.6 * g(5, 12) + 0.2), delay=1)],
        readout=readout,
    )
    return model, rng.uniform(0, 1, (10, 2, 6, 6))


def results_equal(a, b, *, rtol=0.0, atol=0.0, rasters=True) -> None:
    """Every record of ``a`` and ``b`` equal (``rasters=False``: all but the rasters, for a run without them)."""
    assert a.rasters.keys() == b.rasters.keys() or not rasters
    for name in a.rasters if rasters else ():
        for f in ("sample", "step", "neuron"):
            np.testing.assert_array_equal(getattr(a.rasters[name], f), getattr(b.rasters[name], f),
                                          err_msg=f"raster {name}.{f}")
    if rtol or atol:
        np.testing.assert_allclose(a.output, b.output, rtol=rtol, atol=atol)
    else:
        np.testing.assert_array_equal(a.output, b.output)
    np.testing.assert_array_equal(a.predictions, b.predictions)
    for field in ("spike_counts", "sops", "sops_nominal", "input_macs"):
        da, db = getattr(a, field), getattr(b, field)
        assert da.keys() == db.keys()
        for k in da:
            np.testing.assert_array_equal(da[k], db[k], err_msg=f"{field}[{k}]")


@pytest.mark.parametrize("readout", ["count", "membrane"])
@pytest.mark.parametrize("encoding", ["current", "poisson"])
def test_results_do_not_depend_on_batch_size(encoding, readout):
    model, x = gaussian_model(encoding, readout)
    x = x[:5]
    runs = [simulate(model, x, steps=20, dtype="float64", record="all", batch_size=bs,
                     options={"event": {"dense_above": 1.0}})
            for bs in (1, 2, 5)]
    assert runs[0].spike_counts["fc"].sum() > 0
    for other in runs[1:]:
        results_equal(runs[0], other)


def test_dense_blas_path_equals_event_loop_exactly_on_dyadic_model():
    """dense_above=0 (always BLAS / im2col, batch >= 8) and 1 (never): exact on dyadic weights."""
    rng = np.random.default_rng(13)
    model, _ = case_conv("poisson")
    x = inputs(rng, 10, (2, 8, 8))
    a = simulate(model, x, steps=20, dtype="float64", record="all", batch_size=10, options={"event": {"dense_above": 0.0}})
    b = simulate(model, x, steps=20, dtype="float64", record="all", batch_size=10, options={"event": {"dense_above": 1.0}})
    assert a.settings["dense_above"] == 0.0 and b.settings["dense_above"] == 1.0
    results_equal(a, b)
    for dense_above in (0.0, 1.0):  # unrecorded: the compiled loop hands only the dense steps back to Python
        quiet = simulate(model, x, steps=20, dtype="float64", batch_size=10, options={"event": {"dense_above": dense_above}})
        results_equal(a, quiet, rasters=False)
    assert_matches(a, reference_run(model, x, 20), model)


def test_dense_blas_path_close_to_event_loop():
    model, x = gaussian_model("poisson", "membrane")
    a = simulate(model, x, steps=20, dtype="float64", record="all", batch_size=10, options={"event": {"dense_above": 0.0}})
    b = simulate(model, x, steps=20, dtype="float64", record="all", batch_size=10, options={"event": {"dense_above": 1.0}})
    assert a.spike_counts["conv"].sum() > 0
    results_equal(a, b, rtol=0, atol=1e-12)


def test_float32_default_agrees_with_float64_predictions():
    model, x = gaussian_model("regular", "membrane", seed=14)
    r32 = simulate(model, x, steps=25)
    r64 = simulate(model, x, steps=25, dtype="float64")
    assert r32.settings["dtype"] == "float32" and r64.settings["dtype"] == "float64"
    assert len(set(r64.predictions.tolist())) > 1
    np.testing.assert_array_equal(r32.predictions, r64.predictions)
    np.testing.assert_allclose(r32.output, r64.output, rtol=1e-4, atol=1e-4)


def test_gaussian_weights_match_reference_closely():
    """Non-dyadic weights: the summation order may differ, so potentials agree to rounding only."""
    model, x = gaussian_model("poisson", "membrane")
    x = x[:4]
    res, ref = run_both(model, x, steps=20)
    for p in model.populations[:-1]:
        assert engine_raster(res, p.name) == ref["raster"][p.name]
    np.testing.assert_allclose(res.output, ref["output"], rtol=0, atol=1e-12)
    for field in ("sops", "sops_nominal"):
        for k, v in ref[field].items():
            np.testing.assert_array_equal(getattr(res, field)[k], v)


# ============================================================================================
# Registry and errors
# ============================================================================================
def test_engine_is_registered():
    assert "event" in available_engines()
    assert get_engine("event").name == "event"
    assert get_engine("EVENT") is get_engine("event")


def test_unknown_engine_lists_the_available_ones():
    model, x = case_if_soft("current")
    with pytest.raises(EngineError) as err:
        simulate(model, x, steps=3, engine="no_such_engine")
    assert "no_such_engine" in str(err.value) and "'event'" in str(err.value)


# ============================================================================================
# Result accessors, computed by hand
# ============================================================================================
def hand_model():
    return SpikingModel(
        input=InputSpec((2,)),  # current, scale 1
        populations=[Population("h", (2,)), Population("out", (2,))],
        projections=[Projection("w1", INPUT, "h", Dense(np.eye(2))),
                     Projection("w2", "h", "out", Dense(np.array([[1.0, 0.0], [1.0, 1.0]])))],
    )


def test_result_accessors_by_hand():
    # sample 0: h gets (1, 0.5) -> h0 spikes at 0,1,2,3; h1 at 1,3.  out: I = (h0, h0 + h1):
    #   out0 spikes every step; out1 v = 1,2,2,3 -> spikes every step (reset to 0,1,1,2). Counts (4, 4): tie -> 0.
    # sample 1: h gets (0, 0.5) -> h1 spikes at 1, 3; out1 gets 1 at steps 1, 3 -> spikes there. Counts (0, 2) -> 1.
    model = hand_model()
    x = np.array([[1.0, 0.5], [0.0, 0.5]])
    res = simulate(model, x, steps=4, dtype="float64", record="all")
    np.testing.assert_array_equal(res.spike_counts["h"], [[1, 2, 1, 2], [0, 1, 0, 1]])
    np.testing.assert_array_equal(res.spike_counts["out"], [[2, 2, 2, 2], [0, 1, 0, 1]])
    np.testing.assert_array_equal(res.output[0], np.ones((4, 2)))
    np.testing.assert_array_equal(res.output[1], [[0, 0], [0, 1], [0, 0], [0, 1]])
    np.testing.assert_array_equal(res.predictions, [0, 1])
    # SOPs through w2: a spike of h0 reaches 2 non-zero synapses, of h1 one (nominal: 2 each).
    np.testing.assert_array_equal(res.sops["w2"], [[2, 3, 2, 3], [0, 1, 0, 1]])
    np.testing.assert_array_equal(res.sops_nominal["w2"], [[2, 4, 2, 4], [0, 2, 0, 2]])
    assert set(res.sops) == {"w2"} and set(res.input_macs) == {"w1"}
    np.testing.assert_array_equal(res.input_macs["w1"], [[2, 2, 2, 2], [1, 1, 1, 1]])  # non-zero inputs
    np.testing.assert_array_equal(res.total_sops(), [10, 2])
    np.testing.assert_array_equal(res.total_sops(nominal=True), [12, 4])
    assert res.accuracy(np.array([0, 1])) == 1.0
    assert res.accuracy(np.array([1, 1])) == 0.5
    np.testing.assert_array_equal(res.predictions_over_time(), [[0, 0, 0, 0], [0, 1, 1, 1]])
    np.testing.assert_allclose(res.accuracy_over_time(np.array([0, 1])), [0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(res.accuracy_over_time(np.array([1, 1])), [0.0, 0.5, 0.5, 0.5])
    spn = res.spikes_per_neuron_per_step()
    assert spn == pytest.approx({"h": 8 / 16, "out": 10 / 16})
    assert (res.n_samples, res.steps) == (2, 4)
    assert_matches(res, reference_run(model, x, 4), model)


def test_membrane_readout_by_hand():
    model = SpikingModel(
        input=InputSpec((2,)),
        populations=[Population("out", (2,), NeuronSpec("lif", beta=0.5, threshold=0.25))],
        projections=[Projection("w", INPUT, "out", Dense(np.array([[1.0, 0.0], [0.0, 1.0]])))],
        readout="membrane",
    )
    res = simulate(model, np.array([[1.0, 1.5]]), steps=3, dtype="float64", record="all")
    # v = 0.5 v + I, never spikes despite the low threshold
    np.testing.assert_array_equal(res.output[0], [[1.0, 1.5], [1.5, 2.25], [1.75, 2.625]])
    assert res.output.dtype == np.float64
    np.testing.assert_array_equal(res.predictions, [1])
    assert res.spike_counts["out"].sum() == 0 and len(res.rasters["out"]) == 0


def test_unreachable_population_never_spikes():
    rng = np.random.default_rng(15)
    model = SpikingModel(
        input=InputSpec((10,), encoding="poisson"),
        populations=[Population("h", (12,)), Population("dead", (6,)),
                     Population("dead_lif", (5,), NeuronSpec("lif", beta=0.8, v_init_fraction=0.5)),
                     Population("out", (3,))],
        projections=[Projection("a", INPUT, "h", Dense(dyadic(rng, (12, 10), lo=-2, hi=6))),
                     Projection("from_dead", "dead", "out", Dense(np.ones((3, 6)))),
                     Projection("dead_to_dead", "dead", "dead_lif", Dense(np.ones((5, 6)))),
                     Projection("b", "h", "out", Dense(dyadic(rng, (3, 12), lo=-2, hi=8)))],
    )
    x = inputs(rng, 3, (10,))
    res, ref = run_both(model, x, steps=15)
    assert res.spike_counts["h"].sum() > 0
    for name in ("dead", "dead_lif"):
        assert res.spike_counts[name].sum() == 0 and len(res.rasters[name]) == 0
    assert res.sops["from_dead"].sum() == 0 and res.sops_nominal["dead_to_dead"].sum() == 0
    assert_matches(res, ref, model)


def test_idle_populations_that_start_at_threshold_still_fire():
    """No input at all, but v_init = threshold (and a hard reset to v_reset >= threshold): fires by itself."""
    model = SpikingModel(
        input=InputSpec((4,), encoding="regular"),
        populations=[Population("a", (3,), NeuronSpec(threshold=0.5, v_init_fraction=1.0)),
                     Population("b", (2,), NeuronSpec(threshold=0.25, reset="zero", v_reset=0.25,
                                                      v_init_fraction=1.0)),
                     Population("out", (2,))],
        projections=[Projection("ab", "a", "b", Dense(np.zeros((2, 3)))),
                     Projection("bo", "b", "out", Dense(np.full((2, 2), 0.25)), delay=2)],
    )
    res, ref = run_both(model, np.zeros((2, 4)), steps=8)
    assert ref["spike_counts"]["a"].sum() == 2 * 3  # once, at step 0
    assert ref["spike_counts"]["b"].sum() == 2 * 2 * 8  # every step
    assert_matches(res, ref, model)


# ============================================================================================
# Random models (hypothesis)
# ============================================================================================
@st.composite
def random_cases(draw):
    """Small random models with dyadic values: dense/sparse/conv, IF/LIF, resets, delays 0..2, bias."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    encoding = draw(st.sampled_from(ENCODINGS))
    c, h = draw(st.integers(1, 2)), draw(st.integers(3, 6))
    shapes = {INPUT: (c, h, h)}
    pops, projs = [], []
    prev = INPUT
    for k in range(draw(st.integers(1, 3))):
        src = shapes[prev]
        name = f"p{k}"
        op_kind = draw(st.sampled_from(["conv2d", "dense", "sparse"] if len(src) == 3 else ["dense", "sparse"]))
        if op_kind == "conv2d":
            kk, s, p = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 1))
            kk = min(kk, src[1] + 2 * p, src[2] + 2 * p)
            oh, ow = conv2d_output_shape(src, (kk, kk), (s, s), (p, p))
            shape = (draw(st.integers(1, 3)), oh, ow)
            op = Conv2d(dyadic(rng, (shape[0], src[0], kk, kk), lo=-3, hi=8), src, stride=s, padding=p)
        else:
            shape = (draw(st.integers(1, 12)),)
            n_in = math.prod(src)
            op = (Dense(dyadic(rng, (shape[0], n_in), lo=-3, hi=8)) if op_kind == "dense"
                  else sparse_op(rng, shape[0], n_in, density=0.5, lo=-3, hi=8))
        kind = draw(st.sampled_from(["if", "lif"]))
        threshold = (draw(st.sampled_from([0.25, 0.5, 1.0])) if draw(st.booleans())
                     else rng.integers(4, 17, size=shape) / 16)
        neuron = NeuronSpec(kind, threshold=threshold, reset=draw(st.sampled_from(["subtract", "zero"])),
                            v_reset=draw(st.sampled_from([0.0, -0.2, 0.25])),
                            beta=draw(st.sampled_from([0.5, 0.8, 0.9])) if kind == "lif" else 1.0,
                            v_init_fraction=draw(st.sampled_from([0.0, 0.5, 1.0])))
        bias = dyadic(rng, shape, lo=-3, hi=3, denom=32) if draw(st.booleans()) else None
        pops.append(Population(name, shape, neuron, bias=bias))
        projs.append(Projection(f"w{k}", prev, name, op, delay=draw(st.integers(0, 2))))
        shapes[name] = shape
        prev = name
    if draw(st.booleans()):  # a residual add into a later population, or a recurrent delayed edge
        names = [p.name for p in pops]
        src = draw(st.sampled_from([INPUT, *names]))
        dst = draw(st.sampled_from(names))
        order = {INPUT: -1, **{n: i for i, n in enumerate(names)}}
        delay = draw(st.integers(1 if order[src] >= order[dst] else 0, 2))
        op = sparse_op(rng, math.prod(shapes[dst]), math.prod(shapes[src]), density=0.4, lo=-4, hi=6)
        projs.append(Projection("extra", src, dst, op, delay=delay))
    model = SpikingModel(
        input=InputSpec(shapes[INPUT], encoding=encoding, scale=draw(st.sampled_from([0.5, 1.0, 2.0]))),
        populations=pops, projections=projs,
        # a membrane readout only with a spiking population before it: every model has spikes to compare
        readout=draw(st.sampled_from(["count", "membrane"])) if len(pops) > 1 else "count",
    )
    x = inputs(rng, draw(st.integers(2, 3)), shapes[INPUT])
    return model, x, draw(st.integers(3, 12)), draw(st.integers(0, 5))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_cases())
def test_random_models_match_reference(case):
    model, x, steps, seed = case
    res, ref = run_both(model, x, steps, seed=seed, batch_size=2)
    assume_lively(ref["spike_counts"], ref["output"], model)  # judged on the independent reference
    assert_matches(res, ref, model)
