"""The Brian2 engine against the event engine (IF/LIF) and a numpy reference (SRM).

IF/LIF: Brian2 follows the event engine's update and summation order, so in
float64 the two must agree spike for spike, SOP for SOP and output for output,
on dyadic weights (every sum exact) and on Gaussian weights (the same sums in
the same order), under both delay conventions. SRM, which the event engine
does not simulate, is checked against a direct evaluation of the discrete-time
kernels documented in :mod:`evsnn.engines.brian2`.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import brian2  # noqa: E402,F401  a hard dependency: a broken install must fail here, not skip

from evsnn import Dense, InputSpec, NeuronSpec, Population, Projection, SpikingModel  # noqa: E402
from evsnn.encoding import encode  # noqa: E402
from evsnn.engines import available_engines, get_engine  # noqa: E402
from evsnn.errors import ModelError, EngineError  # noqa: E402
from evsnn.model import INPUT  # noqa: E402
from evsnn.simulation import simulate  # noqa: E402
from evsnn.validation import next_step_model  # noqa: E402
from test_event_engine import CASES, assume_lively, gaussian_model, random_cases, results_equal  # noqa: E402

pytestmark = pytest.mark.brian2


def event_and_brian2(model, x, steps, *, propagation="same_step", seed=0, **kw):
    """float64 event engine (on the equivalent model for next_step) and Brian2, on the same encoded input."""
    enc = encode(model, x, steps=steps, seed=seed)
    event_model = model if propagation == "same_step" else next_step_model(model, spiking_input=enc.is_spiking)
    a = simulate(event_model, enc, dtype="float64", record="all", options={"event": {"dense_above": 1.0}}, **kw)
    b = simulate(model, enc, engine="brian2", dtype="float64", record="all",
                 options={"brian2": {"propagation": propagation}}, **kw)
    return a, b


# ============================================================================================
# IF / LIF: spike for spike with the event engine
# ============================================================================================
@pytest.mark.parametrize("propagation", ["same_step", "next_step"])
@pytest.mark.parametrize("case", ["if_soft", "if_hard", "lif_soft", "lif_hard", "delays_bias", "conv",
                                  "residual", "recurrent", "sparse", "membrane"])
def test_dyadic_cases_match_event_engine(case, propagation):
    encoding = {"conv": "current", "residual": "poisson"}.get(case, "regular")
    model, x = CASES[case](encoding)
    a, b = event_and_brian2(model, x, 20, propagation=propagation, seed=3)
    assert sum(int(c.sum()) for c in b.spike_counts.values()) > 0
    assert b.engine == "brian2" and b.settings["propagation"] == propagation
    results_equal(a, b)


@pytest.mark.parametrize("propagation", ["same_step", "next_step"])
@pytest.mark.parametrize("encoding,readout", [("poisson", "count"), ("current", "membrane")])
def test_gaussian_weights_match_bit_for_bit(encoding, readout, propagation):
    """Non-dyadic weights, conv (stride 2, padding 1) + sparse residual + recurrent edge: the same sums in the
    same order, so float64 potentials agree exactly (not just to rounding)."""
    model, x = gaussian_model(encoding, readout)
    a, b = event_and_brian2(model, x[:4], 25, propagation=propagation)
    assert a.spike_counts["fc"].sum() > 0
    results_equal(a, b)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_cases())
def test_random_models_match_event_engine_in_both_conventions(case):
    """Random dense/sparse/conv models, IF/LIF, both resets, delays 0..2, bias, residual or recurrent edges."""
    model, x, steps, seed = case
    lively = simulate(model, encode(model, x, steps=steps, seed=seed), dtype="float64")
    assume_lively(lively.spike_counts, lively.output, model)  # a silent model would agree trivially
    for propagation in ("same_step", "next_step"):
        a, b = event_and_brian2(model, x, steps, propagation=propagation, seed=seed)
        results_equal(a, b)


def test_projection_without_nonzero_weights():
    """All-zero weights (found by hypothesis): no Synapses object, zero SOPs, the nominal SOPs still counted."""
    model, x = CASES["residual"]("poisson")
    zero = [pr if pr.name != "skip" else Projection("skip", pr.source, pr.target, Dense(np.zeros((15, 20))))
            for pr in model.projections]
    model = model.replace(projections=zero)
    a, b = event_and_brian2(model, x, 10)
    assert b.sops["skip"].sum() == 0 and b.sops_nominal["skip"].sum() > 0
    results_equal(a, b)


def test_next_step_is_one_step_later_per_layer():
    """A chain input -> a -> b -> c of relays (weight = threshold): the spike of step 0 reaches c at step 0
    with same_step and at step 3 with next_step (one step per layer, the input projection included)."""
    relay = NeuronSpec(reset="zero")
    model = SpikingModel(
        input=InputSpec((1,), encoding="regular"),
        populations=[Population(n, (1,), relay) for n in "abc"],
        projections=[Projection("ia", INPUT, "a", Dense(np.ones((1, 1)))),
                     Projection("ab", "a", "b", Dense(np.ones((1, 1)))),
                     Projection("bc", "b", "c", Dense(np.ones((1, 1))), delay=2)],
    )
    enc = encode(model, np.array([[1.0]]), steps=12, max_rate=250.0)  # input spikes at steps 3, 7, 11
    first = {}
    for propagation in ("same_step", "next_step"):
        r = simulate(model, enc, engine="brian2", dtype="float64", record="all",
                     options={"brian2": {"propagation": propagation}})
        first[propagation] = [int(r.rasters[n].step.min()) for n in "abc"]
    assert first["same_step"] == [3, 3, 5]
    assert first["next_step"] == [4, 5, 8]


# ============================================================================================
# Finer dt: the continuous-time reference
# ============================================================================================
def test_finer_dt_converges_to_the_analytic_lif_rate():
    """LIF with a constant current c per step: tau dv/dt = -v + c tau/dt spikes every
    T* = tau ln(c'/(c' - theta)) (c' = c tau / dt) in continuous time. Brian2 at dt/k approaches
    floor(T / T*) spikes as k grows; at k = 1 it is the timestep model."""
    beta, dt, steps = 0.9, 1e-3, 200
    currents = np.array([0.12, 0.15, 0.2, 0.3, 0.6, 1.2])  # up to 1.15 spikes per step in continuous time
    model = SpikingModel(input=InputSpec((6,)), populations=[Population("n", (6,), NeuronSpec("lif", beta=beta))],
                         projections=[Projection("w", INPUT, "n", Dense(np.eye(6)))])
    tau = -dt / math.log(beta)
    drive = currents * tau / dt
    period = tau * np.log(drive / (drive - 1.0))
    exact = np.floor(steps * dt / period)
    errors = []
    for k in (1, 10, 100):
        r = simulate(model, currents[None], steps=steps, engine="brian2", dtype="float64",
                     options={"brian2": {"dt": dt / k}})
        assert r.settings["substeps"] == k and r.settings["brian2_dt"] == pytest.approx(dt / k)
        errors.append(np.abs(r.spike_counts["n"].sum() - exact.sum()))
        if k == 100:
            np.testing.assert_allclose(r.output.sum(axis=1)[0], exact, atol=1)
    assert errors[2] < errors[0]


def test_finer_dt_keeps_input_spike_times_and_delays():
    """Relays: an input spike at step t reaches a (delay 0) at step t and b (delay 2) at t + 2, at any dt."""
    relay = NeuronSpec(reset="zero")
    model = SpikingModel(
        input=InputSpec((3,), encoding="regular"),
        populations=[Population("a", (3,), relay), Population("b", (3,), relay)],
        projections=[Projection("ia", INPUT, "a", Dense(np.eye(3))), Projection("ab", "a", "b", Dense(np.eye(3)),
                                                                                delay=2)],
    )
    enc = encode(model, np.array([[1.0, 0.5, 0.25]]), steps=10)
    want = simulate(model, enc, dtype="float64", record="all")
    for k in (1, 10):
        got = simulate(model, enc, engine="brian2", dtype="float64", record="all",
                       options={"brian2": {"dt": model.dt / k}})
        for name in "ab":
            np.testing.assert_array_equal(got.rasters[name].step, want.rasters[name].step, err_msg=f"{name}, k={k}")
            np.testing.assert_array_equal(got.rasters[name].neuron, want.rasters[name].neuron)
        results_equal(want, got)


# ============================================================================================
# Built once, reused; options; errors; registry
# ============================================================================================
def test_network_is_built_once_for_many_samples(monkeypatch):
    built, restored = [], []
    original_init, original_restore = brian2.Network.__init__, brian2.Network.restore

    def counting_init(self, *args, **kwargs):
        built.append(1)
        original_init(self, *args, **kwargs)

    def counting_restore(self, *args, **kwargs):
        restored.append(1)
        return original_restore(self, *args, **kwargs)

    monkeypatch.setattr(brian2.Network, "__init__", counting_init)
    monkeypatch.setattr(brian2.Network, "restore", counting_restore)
    model, x = CASES["if_soft"]("poisson")
    x = np.concatenate([x, x[::-1], x[:1]])  # 9 samples, in batches of 4, 4, 1
    res = simulate(model, x, steps=10, engine="brian2", batch_size=4, dtype="float64", record="all")
    assert len(built) == 1 and len(restored) == 9
    again = simulate(model, x, steps=10, dtype="float64", record="all")  # and every sample is right
    results_equal(again, res)


def test_engine_reuses_its_network_across_batches_and_input_kinds():
    model, x = CASES["lif_soft"]("current")
    engine = get_engine("brian2")(model, dtype="float64")
    spikes = encode(model, x, steps=8, encoding="poisson")
    current = encode(model, x, steps=8)
    first = engine.network(True)
    for enc in (spikes, current, spikes):
        engine.prepare(enc)
        engine.run_batch(enc, 0, 2, frozenset())
    assert engine.network(True) is first and len(engine._built) == 2
    assert engine.timing["samples"] == 6 and engine.timing["sample_s"] >= engine.timing["run_s"] > 0


def test_float32_runs_and_is_recorded():
    model, x = gaussian_model("poisson", "count")
    enc = encode(model, x[:3], steps=20)
    b32 = simulate(model, enc, engine="brian2", dtype="float32", record="all")
    e32 = simulate(model, enc, dtype="float32", record="all", options={"event": {"dense_above": 1.0}})
    assert b32.settings["dtype"] == "float32" and e32.rasters.keys() == b32.rasters.keys()

    def events(result):
        return {(n, *e) for n, r in result.rasters.items()
                for e in zip(r.sample.tolist(), r.step.tolist(), r.neuron.tolist())}

    event, brian = events(e32), events(b32)  # spikes missing on either side count against the agreement
    assert all(len(r) for r in e32.rasters.values()) and len(event & brian) / len(event | brian) > 0.99


def test_settings_are_recorded():
    model, x = CASES["if_soft"]("poisson")
    r = simulate(model, x[:1], steps=3, engine="brian2",
                 options={"brian2": {"propagation": "next_step", "dt": model.dt / 2}})
    assert r.settings["propagation"] == "next_step" and r.settings["codegen"] == "numpy"
    assert r.settings["substeps"] == 2 and r.settings["brian2_dt"] == model.dt / 2 and r.settings["dt"] == model.dt


@pytest.mark.parametrize("options,match", [
    ({"propagation": "sideways"}, "propagation must be one of 'same_step', 'next_step'"),
    ({"codegen": "cuda"}, "codegen must be one of 'numpy', 'cython'"),
    ({"dt": 3e-4}, r"dt must be the model's dt \(0.001 s\) divided by a positive integer"),
    ({"dt": -1.0}, "dt must be"),
    ({"dt": "fine"}, "dt must be"),
])
def test_bad_options_are_engine_errors(options, match):
    model, x = CASES["if_soft"]("poisson")
    with pytest.raises(EngineError, match=match):
        simulate(model, x, steps=3, engine="brian2", options={"brian2": options})


def test_srm_with_a_leak_is_refused_where_it_is_built():
    with pytest.raises(ModelError, match="beta must be 1.0 for kind 'srm'"):
        NeuronSpec("srm", beta=0.9, tau_syn=1e-3, tau_refr=1e-3)


def test_registered_lazily_without_importing_brian2():
    code = ("import sys, evsnn; from evsnn.engines import available_engines; "
            "assert 'brian2' in available_engines(); assert 'brian2' not in sys.modules; "
            "from evsnn.engines import get_engine; get_engine('BRIAN2'); assert 'brian2' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert "brian2" in available_engines() and get_engine("brian2").name == "brian2"


@pytest.mark.slow
def test_cython_target_matches_event_engine():
    """Brian2's cython target, spike for spike against the event engine (comparing it with Brian2's numpy
    target would prove nothing about either). Compiles on first use (cached in ~/.cython afterwards); a
    one-layer model keeps the compile short."""
    from evsnn.engines.brian2 import _codeobj_class

    try:
        _codeobj_class("cython")
    except EngineError as err:
        pytest.skip(str(err))
    model, x = CASES["sparse"]("poisson")
    model = model.replace(populations=model.populations[:1], projections=model.projections[:1], output="h")
    enc = encode(model, x, steps=15)
    a = simulate(model, enc, dtype="float64", record="all", options={"event": {"dense_above": 1.0}})
    b = simulate(model, enc, engine="brian2", dtype="float64", record="all", options={"brian2": {"codegen": "cython"}})
    assert b.settings["codegen"] == "cython" and a.spike_counts["h"].sum() > 0
    results_equal(a, b)
