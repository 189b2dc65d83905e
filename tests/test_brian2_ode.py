"""Brian2 as the arbiter of imported NIR graphs: its own ODEs against the event engine's exact steps.

Brian2 integrates NIR's neurons as differential equations (``method="exact"``), the event engine steps the
closed-form coefficients of :func:`evsnn.engines.neurons.ode_coefficients`: in float64 the two must give the
same spikes, and membrane read-outs equal to rounding. A finer Brian2 ``dt`` keeps the sub-threshold solution
(it is exact) and only sees threshold crossings inside a step earlier: those counts converge to the
continuous-time ones (closed form, scipy's ``solve_ivp`` with events).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import brian2  # noqa: F401  a hard dependency: a broken install must fail here, not skip

nir = pytest.importorskip("nir", reason="the nir package is evsnn's NIR dependency (extra 'nir')")

from evsnn import Dense, EngineError, InputSpec, NeuronSpec, Population, Projection, SpikingModel  # noqa: E402
from evsnn import encode_spikes, from_nir, simulate  # noqa: E402
from evsnn.encoding import encode  # noqa: E402
from evsnn.io.nir import hard_reset  # noqa: E402
from evsnn.validation import next_step_model  # noqa: E402
from test_event_engine import results_equal  # noqa: E402

pytestmark = pytest.mark.brian2

DT, STEPS, N_IN, N_H, N_O = 1e-3, 25, 6, 5, 3
SPIKING = ("IF", "LIF", "CubaLIF", "Threshold")
READOUTS = ("LI", "CubaLI", "I")


def chain(*nodes):
    """A NIR graph input -> nodes... -> output."""
    keys = ["input"] + [f"n{i}" for i in range(len(nodes))] + ["output"]
    first = np.array([nodes[0].weight.shape[1]])
    last = np.array([nodes[-1].output_type["output"]]).reshape(-1)
    all_nodes = {"input": nir.Input(input_type={"input": first}), **dict(zip(keys[1:-1], nodes)),
                 "output": nir.Output(output_type={"output": last})}
    return nir.NIRGraph(nodes=all_nodes, edges=list(zip(keys[:-1], keys[1:])))


def neuron(kind, n, rng):
    """A NIR neuron node with per-neuron parameters; impulses of size ~ the weight for every kind."""
    tau = rng.uniform(5e-3, 2e-2, n)
    th, leak = rng.uniform(0.8, 1.2, n), rng.uniform(-0.2, 0.2, n)
    reset = {"v_reset": rng.uniform(-0.2, 0.1, n)} if hard_reset() else {}
    return {"IF": lambda: nir.IF(r=rng.uniform(0.5, 1.5, n), v_threshold=th, **reset),
            "LIF": lambda: nir.LIF(tau=tau, r=tau * rng.uniform(0.5, 1.5, n), v_leak=leak, v_threshold=th, **reset),
            "CubaLIF": lambda: nir.CubaLIF(tau_syn=tau / 3, tau_mem=tau, r=rng.uniform(0.5, 1.5, n), v_leak=leak,
                                           v_threshold=th * 0.3, w_in=tau / 3 * rng.uniform(2, 5, n), **reset),
            "LI": lambda: nir.LI(tau=tau, r=tau, v_leak=leak),
            "CubaLI": lambda: nir.CubaLI(tau_syn=tau / 2, tau_mem=tau, r=rng.uniform(0.5, 1.5, n), v_leak=leak,
                                         w_in=tau / 2 * 10),
            "I": lambda: nir.I(r=rng.uniform(0.5, 1.5, n)),
            "Threshold": lambda: nir.Threshold(threshold=th)}[kind]()


def imported(hidden, out, seed=0):
    """input -> Affine -> hidden kind -> Linear -> out kind, imported with from_nir (per-neuron parameters)."""
    rng = np.random.default_rng(seed)
    return from_nir(chain(nir.Affine(weight=rng.normal(0.4, 0.6, (N_H, N_IN)), bias=rng.normal(0, 0.1, N_H)),
                          neuron(hidden, N_H, rng),
                          nir.Linear(weight=rng.normal(0.5, 0.6, (N_O, N_H))),
                          neuron(out, N_O, rng)), dt=DT)


def inputs(model, kind, seed=1, samples=3):
    """Seeded random 0/1 trains, or analog input held over the run: a current in 1/s, where a spike is a unit
    impulse, so a few hundred per second drive about what one spike in three steps does."""
    rng = np.random.default_rng(seed)
    if kind == "spikes":
        return encode_spikes(model, (rng.random((samples, STEPS, N_IN)) < 0.3).astype(np.uint8))
    return encode(model, rng.uniform(0, 1, (samples, N_IN)), steps=STEPS, encoding="current", scale=300.0)


def run(model, enc, engine="event", k=1, **kw):
    options = {"brian2": {"dt": model.dt / k, **kw}} if engine == "brian2" else {"event": {"dense_above": 1.0}}
    return simulate(model, enc, engine=engine, dtype="float64", record="all", options=options)


def spike_total(result):
    return sum(int(c.sum()) for c in result.spike_counts.values())


@pytest.mark.parametrize("kind", SPIKING)
@pytest.mark.parametrize("drive", ["spikes", "analog"])
def test_imported_spiking_kinds_equal_the_event_engine(kind, drive):
    model = imported(kind, kind)
    enc = inputs(model, drive)
    a, b = run(model, enc), run(model, enc, "brian2")
    assert min(int(c.sum()) for c in a.spike_counts.values()) > 0, "every layer must spike"
    results_equal(a, b)


@pytest.mark.parametrize("kind", READOUTS)
@pytest.mark.parametrize("drive", ["spikes", "analog"])
def test_imported_readouts_equal_the_event_engine(kind, drive):
    model = imported("CubaLIF", kind)
    assert model.readout == "membrane"
    enc = inputs(model, drive)
    a, b = run(model, enc), run(model, enc, "brian2")
    assert spike_total(a) > 0 and np.abs(a.output).max() > 0.1
    results_equal(a, b, atol=1e-9)


def test_next_step_propagation_equals_the_event_engine_one_step_later_per_layer():
    model = imported("CubaLIF", "LIF", seed=2)
    for drive in ("spikes", "analog"):
        enc = inputs(model, drive, seed=3)
        a = run(next_step_model(model, spiking_input=enc.is_spiking), enc)
        b = run(model, enc, "brian2", propagation="next_step")
        assert min(int(c.sum()) for c in a.spike_counts.values()) > 0
        results_equal(a, b)


@pytest.mark.parametrize("strict", [False, True])
def test_strict_threshold_decides_a_potential_exactly_at_threshold(strict):
    """IF with R = 1 and weights 1/2 (sums exact): every second input spike lands v exactly on θ = 1."""
    spec = NeuronSpec("if", r=1.0, threshold=1.0, strict_threshold=strict, reset="zero")
    model = SpikingModel(InputSpec((2,)), [Population("p", (2,), spec)],
                         [Projection("w", "input", "p", Dense(np.eye(2) * 0.5))], dt=DT)
    enc = encode_spikes(model, np.ones((1, 8, 2), dtype=np.uint8))
    a, b = run(model, enc), run(model, enc, "brian2")
    assert int(b.spike_counts["p"].sum()) == (4 if strict else 8)  # v = 1 spikes every 2nd step; strict: every 3rd
    results_equal(a, b)


def test_discrete_form_with_v_leak_and_per_neuron_beta_and_reset_is_bit_exact():
    """What the converters' form gained for NIR, in float64 bit for bit (the same sums in the same order)."""
    rng = np.random.default_rng(4)
    spec = NeuronSpec("lif", beta=rng.uniform(0.7, 0.95, N_H), v_leak=rng.uniform(-0.3, 0.6, N_H), reset="zero",
                      v_reset=rng.uniform(-0.3, 0.1, N_H), threshold=rng.uniform(0.8, 1.2, N_H), strict_threshold=True)
    model = SpikingModel(InputSpec((N_IN,)), [Population("h", (N_H,), spec, bias=rng.normal(0, 0.05, N_H)),
                                              Population("o", (N_O,), NeuronSpec("if", threshold=0.7, reset="zero"))],
                         [Projection("w1", "input", "h", Dense(rng.normal(0.3, 0.5, (N_H, N_IN)))),
                          Projection("w2", "h", "o", Dense(rng.normal(0.4, 0.5, (N_O, N_H))), delay=1)], dt=DT)
    for drive in ("spikes", "analog"):
        enc = inputs(model, drive) if drive == "spikes" else encode(model, rng.random((3, N_IN)), steps=STEPS)
        a = run(model, enc)
        assert min(int(c.sum()) for c in a.spike_counts.values()) > 0
        results_equal(a, run(model, enc, "brian2"))
    # at dt / 10, without bias a spike-fed LIF crosses its threshold only where an input spike lands: at the end
    # of a step, as at dt; its leak is exact over the step (to rounding); a reset to below θ (a subtracting one
    # could leave v >= θ and spike again one Brian2 step later, inside the same model step)
    model = model.replace(populations=[dataclasses.replace(model.populations[0], bias=None), model.populations[1]])
    a = run(model, enc := inputs(model, "spikes"))
    assert a.spike_counts["o"].sum() > 0
    results_equal(a, run(model, enc, "brian2", k=10), atol=1e-12)


def test_current_based_neurons_with_equal_time_constants():
    """Brian2's general solution divides by tau_mem - tau_syn: the equal case has its own equations; a population
    that mixes both is refused by name, as is a time constant whose exp(dt / tau) would overflow."""
    def model(tau_syn, tau_mem=0.01):
        spec = NeuronSpec("cuba_lif", tau_mem=tau_mem, tau_syn=tau_syn, r=1.0, w_in=0.05, threshold=0.5,
                          strict_threshold=True, reset="zero")
        return SpikingModel(InputSpec((N_IN,)), [Population("p", (4,), spec)],
                            [Projection("w", "input", "p", Dense(np.random.default_rng(5).uniform(0, 1, (4, N_IN))))],
                            dt=DT)
    equal = model(0.01)
    enc = inputs(equal, "spikes")
    a, b = run(equal, enc), run(equal, enc, "brian2")
    assert spike_total(a) > 0
    results_equal(a, b)
    with pytest.raises(EngineError, match=r"Population 'p': .*tau_syn == tau_mem .* 2 of 4 are equal"):
        run(model(np.array([0.01, 0.005, 0.01, 0.002])), enc, "brian2")
    with pytest.raises(EngineError, match=r"Population 'p': .*1e-06 s is below dt / 700"):
        run(model(1e-6), enc, "brian2")
    run(model(1e-6), enc, "brian2", k=10)  # at dt / 10 it is fine


# --------------------------------------------------------------------------------------------------------------------
# A finer Brian2 dt
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", READOUTS)
def test_finer_dt_keeps_the_exact_subthreshold_solution(kind):
    """Read-outs fed by spikes and by held currents: the exact solution over dt/10 and dt/100, compounded, is the
    one over dt (to rounding)."""
    rng = np.random.default_rng(6)
    model = from_nir(chain(nir.Affine(weight=rng.normal(0.3, 0.5, (N_O, N_IN)), bias=rng.normal(0, 0.2, N_O)),
                           neuron(kind, N_O, rng)), dt=DT)
    for drive in ("spikes", "analog"):
        enc = inputs(model, drive, samples=1)
        a = run(model, enc)
        assert np.abs(a.output).max() > 0.1
        for k in (10, 100):
            np.testing.assert_allclose(run(model, enc, "brian2", k=k).output, a.output, rtol=0, atol=1e-9,
                                       err_msg=f"{drive}, dt / {k}")


@pytest.mark.parametrize("kind", ["IF", "LIF", "Threshold"])
def test_finer_dt_equals_the_event_engine_where_spikes_only_come_at_step_ends(kind):
    """Spike input, no bias, a reset below threshold and v_leak < θ: every threshold crossing is at an impulse,
    i.e. at the end of a step, at any dt; so Brian2 at dt/10 and dt/100 gives the event engine's spikes."""
    if not hard_reset() and kind != "Threshold":
        pytest.skip(f"nir {nir.version} subtracts θ on a spike: v may stay >= θ and spike again inside the step")
    rng = np.random.default_rng(7)
    model = from_nir(chain(nir.Linear(weight=rng.normal(0.4, 0.6, (N_H, N_IN))), neuron(kind, N_H, rng),
                           nir.Linear(weight=rng.normal(0.5, 0.6, (N_O, N_H))), neuron(kind, N_O, rng)), dt=DT)
    enc = inputs(model, "spikes", samples=2)
    a = run(model, enc)
    assert min(int(c.sum()) for c in a.spike_counts.values()) > 0
    for k in (10, 100):
        results_equal(a, run(model, enc, "brian2", k=k))


def held_current_model(spec, currents):
    n = len(currents)
    return SpikingModel(InputSpec((n,)), [Population("p", (n,), spec)],
                        [Projection("w", "input", "p", Dense(np.eye(n)))], dt=DT), np.asarray(currents)[None]


def lif_counts_closed_form(spec, currents, duration):
    """LIF under a constant current: v(t) = v_inf + (v0 - v_inf) e^{-t/tau}, v_inf = v_leak + R a; the first
    crossing from v0 = 0, then one every tau ln((v_inf - v_reset) / (v_inf - θ))."""
    v_inf = spec.v_leak + spec.r * currents
    first = spec.tau_mem * np.log(v_inf / (v_inf - spec.threshold))
    period = spec.tau_mem * np.log((v_inf - spec.v_reset) / (v_inf - spec.threshold))
    return 1 + np.floor((duration - first) / period)


def cuba_lif_counts_solve_ivp(spec, currents, duration):
    """CubaLIF under a constant current, integrated by scipy with event location (reset to v_reset at v = θ)."""
    counts = []
    for a in currents:
        def rhs(t, y):
            return [(spec.w_in * a - y[0]) / spec.tau_syn, (spec.v_leak - y[1] + spec.r * y[0]) / spec.tau_mem]

        def crossing(t, y):
            return y[1] - spec.threshold
        crossing.terminal, crossing.direction = True, 1
        t, y, n = 0.0, [0.0, 0.0], 0
        while True:
            sol = solve_ivp(rhs, (t, duration), y, events=crossing, rtol=1e-11, atol=1e-13, method="DOP853")
            if not sol.t_events[0].size:
                break
            n += 1
            t, y = sol.t_events[0][0], [sol.y_events[0][0][0], spec.v_reset]
        counts.append(n)
    return np.array(counts)


@pytest.mark.parametrize("kind", ["lif", "cuba_lif"])
def test_finer_dt_converges_to_the_continuous_time_spike_counts(kind):
    """Held currents: a crossing inside a step is seen at the end of the step at dt, at the end of a Brian2 step
    at dt/k; the spike counts approach the continuous-time ones (closed form; solve_ivp), and at dt they are the
    event engine's."""
    steps, currents = 60, np.linspace(200.0, 900.0, 6)  # LIF: v_inf = 2.1 ... 9.1, θ = 1
    if kind == "lif":
        spec = NeuronSpec("lif", tau_mem=0.01, r=0.01, v_leak=0.1, threshold=1.0, reset="zero", v_reset=-0.1,
                          strict_threshold=True)
        exact = lif_counts_closed_form(spec, currents, steps * DT)
    else:
        spec = NeuronSpec("cuba_lif", tau_mem=0.01, tau_syn=0.004, r=1.0, w_in=0.01, v_leak=0.1, threshold=1.0,
                          reset="zero", v_reset=-0.1, strict_threshold=True)
        exact = cuba_lif_counts_solve_ivp(spec, currents, steps * DT)
    model, x = held_current_model(spec, currents)
    enc = encode(model, x, steps=steps)
    errors = {}
    for k in (1, 10, 100):
        result = run(model, enc, "brian2", k=k)
        if k == 1:
            results_equal(run(model, enc), result)
        errors[k] = int(np.abs(result.output[0].sum(axis=0) - exact).sum())
    print(f"{kind}: continuous-time counts {exact.astype(int).tolist()}, summed |count error| at dt/k: {errors}")
    assert exact.min() >= 5 and errors[1] > 5 * errors[10] and errors[10] >= errors[100] and errors[100] <= 1


def test_finer_dt_threshold_neurons_compare_each_model_steps_whole_input():
    """The stateless kind under held currents and a bias: at dt/10 it still compares the input of the whole model
    step (not a tenth of it, nor once per Brian2 step)."""
    model = imported("Threshold", "Threshold", seed=8)
    enc = inputs(model, "analog", samples=2)
    a = run(model, enc)
    assert min(int(c.sum()) for c in a.spike_counts.values()) > 0
    results_equal(a, run(model, enc, "brian2", k=10), atol=1e-12)
