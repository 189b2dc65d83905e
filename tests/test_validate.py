"""The cross-validation harness: evsnn.validate, convergence, the callable interface, evsnn validate."""

from __future__ import annotations

import json

import numpy as np
import pytest

import brian2  # noqa: E402,F401  a hard dependency: a broken install must fail here, not skip

import evsnn  # noqa: E402
from evsnn.cli import main  # noqa: E402
from evsnn.encoding import encode  # noqa: E402
from evsnn.errors import EngineError, InputError  # noqa: E402
from evsnn.model import INPUT  # noqa: E402
from evsnn.validation import Comparison, compare, convergence, next_step_model, validate  # noqa: E402
from test_event_engine import CASES, gaussian_model  # noqa: E402

pytestmark = pytest.mark.brian2


def dense_spikes(result, model, n, steps):
    return {p.name: result.rasters[p.name].to_dense(n, steps).reshape(n, steps, *p.shape) for p in model.populations}


def event_simulator(model, encoded):
    """A user's simulator, as the harness sees it: model and encoded input in, rasters per population out."""
    r = evsnn.simulate(model, encoded, dtype="float64", record="all", options={"event": {"dense_above": 1.0}})
    return dense_spikes(r, model, encoded.n_samples, encoded.steps)


def test_event_and_brian2_agree_in_both_conventions():
    model, x = gaussian_model("poisson", "count")
    report = validate(model, x[:4], steps=25, propagation=("same_step", "next_step"))
    assert report.identical and [c.propagation for c in report.comparisons] == ["same_step", "next_step"]
    for c in report.comparisons:
        assert (c.a, c.b, c.samples, c.steps) == ("event", "brian2", 4, 25)
        assert c.spike_agreement == 1.0 and c.first_divergence is None and c.prediction_agreement == 1.0
        assert all(p.spikes_a == p.spikes_b == p.identical > 0 for p in c.populations)
        assert all(s.sops_a == s.sops_b and s.equal_fraction == 1.0 for s in c.sops)
        assert c.settings["settings_a"]["dense_above"] == 1.0  # the event loop only: one summation order
        assert c.settings["settings_b"]["propagation"] == c.propagation
    assert report["next_step"].populations[1].spikes_a != report["same_step"].populations[1].spikes_a
    text = report.table()
    assert "IDENTICAL" in text and "propagation next_step" in text and "100.000%" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["identical"] and data["comparisons"][0]["populations"][0]["name"] == "conv"


def test_deliberately_wrong_simulator_is_caught():
    """One spike flipped at step 7 of sample 1: agreement < 100%, divergence at step 7, downstream SOPs differ."""
    model, x = CASES["if_soft"]("poisson")

    def off_by_one_spike(model, encoded):
        spikes = event_simulator(model, encoded)
        spikes["h1"][1, 7, 3] = ~spikes["h1"][1, 7, 3]
        return spikes

    report = validate(model, x, engines=(off_by_one_spike, "brian2"), steps=20)
    c = report.comparisons[0]
    assert not report.identical and c.a == "off_by_one_spike"
    h1 = c.populations[0]
    assert h1.agreement < 1.0 and abs(h1.spikes_a - h1.spikes_b) == 1
    assert (h1.first_divergence, h1.first_divergence_sample) == (7, 1) and c.first_divergence == 7
    assert [s.equal_fraction < 1 for s in c.sops] == [False, True, False]  # w2 carries h1's spikes
    assert "DIFFERENT" in c.table() and "7 (sample 1)" in c.table()


def test_a_simulator_with_the_wrong_convention_is_caught():
    """A timestep simulator that delays every layer by one step (Brian2's default) fails a same_step check
    from the first step at which a spike crosses a layer, and passes the next_step check."""
    model, x = CASES["lif_soft"]("regular")

    def one_step_per_layer(model, encoded):
        return event_simulator(next_step_model(model, spiking_input=encoded.is_spiking), encoded)

    same = validate(model, x, engines=(one_step_per_layer, "event"), steps=20)
    assert not same.identical and same.comparisons[0].first_divergence is not None
    assert same.comparisons[0].populations[0].agreement < 1.0

    def self_consistent(model, encoded):  # handed the equivalent model under next_step, it runs it as given
        return event_simulator(model, encoded)

    nxt = validate(model, x, engines=(self_consistent, "brian2"), steps=20, propagation="next_step")
    assert nxt.identical


def test_callable_may_return_a_result_and_predictions_are_compared():
    model, x = CASES["membrane"]("current")  # a membrane readout: predictions need a Result

    def with_result(model, encoded):
        return evsnn.simulate(model, encoded, dtype="float64", record="all")

    def rasters_only(model, encoded):
        return event_simulator(model, encoded)

    full = validate(model, x, engines=(with_result, "brian2"), steps=15).comparisons[0]
    assert full.identical and full.prediction_agreement == 1.0
    partial = validate(model, x, engines=(rasters_only, "brian2"), steps=15).comparisons[0]
    assert partial.prediction_agreement is None and partial.identical
    assert "predictions: not compared" in partial.table()


def test_callable_sops_are_counted_from_its_spikes():
    model, x = CASES["conv"]("poisson")
    report = validate(model, x, engines=(event_simulator, "event"), steps=15)
    assert report.identical and {s.name for s in report.comparisons[0].sops} == {"c1", "c2", "fc"}


@pytest.mark.parametrize("bad,match", [
    (lambda m, e: [1, 2], "must return a mapping population -> spikes or a Result, got list"),
    (lambda m, e: {"h1": np.zeros((4, 5, 30))}, r"spikes for exactly the populations \['h1', 'h2', 'out'\]"),
    (lambda m, e: {p.name: np.zeros((4, 9, p.size)) for p in m.populations},
     r"spikes of 'h1' must have shape \(4, 10, 30\)"),
    (lambda m, e: {p.name: np.full((4, 10, p.size), 2) for p in m.populations}, "must be booleans or 0/1"),
])
def test_callable_returning_the_wrong_thing_is_an_input_error(bad, match):
    model, x = CASES["if_soft"]("poisson")
    with pytest.raises(InputError, match=match):
        validate(model, x, engines=(bad, "event"), steps=10)


def test_callable_that_raises_is_named():
    model, x = CASES["if_soft"]("poisson")

    def broken(model, encoded):
        raise ZeroDivisionError("oops")

    with pytest.raises(EngineError, match="simulator 'broken' raised ZeroDivisionError: oops"):
        validate(model, x, engines=(broken, "event"), steps=5)


def test_float32_event_against_float64_brian2_reports_honestly():
    model, x = gaussian_model("current", "count", seed=21)
    enc = encode(model, x, steps=40)
    report = validate(model, enc, dtype=("float32", "float64"))
    c = report.comparisons[0]
    assert (c.settings["dtype_a"], c.settings["dtype_b"]) == ("float32", "float64")
    for p in c.populations:  # the counts add up, whatever the agreement
        assert p.identical <= min(p.spikes_a, p.spikes_b)
        assert (p.first_divergence is None) == (p.agreement == 1.0) == (p.spikes_a == p.spikes_b == p.identical)
    assert c.identical == (c.spike_agreement == 1.0 and c.prediction_agreement == 1.0
                           and all(s.equal_fraction == 1.0 for s in c.sops))
    assert c.spike_agreement > 0.9


def test_float32_rounding_flips_a_spike_at_a_near_tie():
    """0.1 added ten times is 0.9999999999999999 in float64 but 1.0000001 in float32 (0.1 rounds up there):
    with threshold 1 the float32 engine spikes at step 9, float64 at step 10. The harness says so."""
    model = evsnn.SpikingModel(input=evsnn.InputSpec((1,)), populations=[evsnn.Population("n", (1,))],
                               projections=[evsnn.Projection("w", INPUT, "n", evsnn.Dense(np.ones((1, 1))))])
    x = np.array([[0.1]])
    c = validate(model, x, steps=15, dtype=("float32", "float64")).comparisons[0]
    assert (c.populations[0].spikes_a, c.populations[0].spikes_b, c.populations[0].identical) == (1, 1, 0)
    assert c.first_divergence == 9 and not c.identical
    assert validate(model, x, steps=15, dtype="float64").identical


def test_compare_reuses_one_reference_run():
    model, x = CASES["lif_hard"]("poisson")
    enc = encode(model, x, steps=12)
    ref = evsnn.simulate(model, enc, engine="brian2", dtype="float64", record="all")
    for dtype in ("float64", "float32"):
        cand = evsnn.simulate(model, enc, dtype=dtype, record="all")
        c = compare(cand, ref, model)
        assert isinstance(c, Comparison) and (c.a, c.b) == ("event", "brian2") and c.settings["dtype_a"] == dtype
    with pytest.raises(InputError, match="same samples and steps"):
        compare(evsnn.simulate(model, enc.select(0, 2), record="all"), ref, model)
    with pytest.raises(InputError, match=r"must record every population's spikes \(record='all'\); missing: \['h1'\]"):
        compare(evsnn.simulate(model, enc, record=["h2", "out"]), ref, model)


def test_srm_validates_against_brian2_and_converges():
    model = evsnn.SpikingModel(
        input=evsnn.InputSpec((4,), encoding="poisson"),
        populations=[evsnn.Population("srm_out", (3,), evsnn.NeuronSpec("srm", tau_syn=2e-3, tau_refr=3e-3,
                                                                         refractory_amplitude=2.0))],
        projections=[evsnn.Projection("w", INPUT, "srm_out", evsnn.Dense(np.full((3, 4), 0.6)))],
    )
    x = np.full((2, 4), 0.5)
    for engines in (("event", "brian2"), ("torch", "brian2")):
        report = validate(model, x, engines=engines, steps=40)
        assert report.identical and report.comparisons[0].populations[0].spikes_a > 0, report.table()
    report = convergence(model, x, steps=40, factors=(1, 10))
    assert [r["k"] for r in report.rows] == [1, 10] and report.rows[0]["rate_error"] == 0.0
    assert report.rows[0]["rate_engine"] > 0


def test_convergence_report():
    model, x = CASES["lif_soft"]("current")
    report = convergence(model, x, steps=30, factors=(1, 10))
    assert report.engine == "event" and report.settings["factors"] == [1, 10]
    first = [r for r in report.rows if r["k"] == 1]
    assert [r["population"] for r in first] == ["h1", "h2", "out"]
    assert all(r["rate_error"] == 0.0 and r["rate_engine"] == r["rate_brian2"] > 0 for r in first)
    assert report.predictions[0]["prediction_agreement"] == 1.0
    fine = [r for r in report.rows if r["k"] == 10]
    assert all(0 <= r["rate_error"] < 0.2 and r["brian2_dt"] == pytest.approx(1e-4) for r in fine)
    assert "dt convergence" in report.table() and json.dumps(report.to_dict())


@pytest.mark.parametrize("kwargs,match", [
    ({"engines": ("event",)}, "engines must be two simulators"),
    ({"propagation": "both"}, "propagation must be 'same_step', 'next_step'"),
    ({"dtype": ("float32",)}, "dtype must be a string or one per engine"),
    ({"engines": ("event", 42)}, "a simulator must be an engine name or a callable"),
])
def test_bad_arguments(kwargs, match):
    model, x = CASES["if_soft"]("poisson")
    with pytest.raises(InputError, match=match):
        validate(model, x, steps=5, **kwargs)


def test_cli_validate_text_json_and_strict(tmp_path, capsys):
    rng = np.random.default_rng(0)
    model = evsnn.SpikingModel(
        input=evsnn.InputSpec((1, 28, 28)),
        populations=[evsnn.Population("fc1", (20,)), evsnn.Population("fc2", (10,), evsnn.NeuronSpec("lif", beta=0.9))],
        projections=[evsnn.Projection("fc1", INPUT, "fc1", evsnn.Dense(rng.normal(0.004, 0.02, (20, 784)))),
                     evsnn.Projection("fc2", "fc1", "fc2", evsnn.Dense(rng.normal(0.1, 0.4, (10, 20))))],
    )
    path = tmp_path / "m.h5"
    evsnn.save(model, path)
    assert main(["validate", str(path), "--samples", "3", "--steps", "20", "--quiet", "--strict"]) == 0
    text = capsys.readouterr().out
    assert "event vs brian2: 3 samples x 20 steps" in text and "IDENTICAL" in text
    assert main(["validate", str(path), "--samples", "2", "--steps", "15", "--json", "--propagation", "both",
                 "--convergence", "10", "--encoding", "poisson"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["propagation"] for c in data["comparisons"]] == ["same_step", "next_step"]
    assert data["convergence"]["settings"]["factors"] == [1, 10]
    assert main(["validate", str(path), "--steps", "5", "--convergence", "ten"]) == 2  # 2: a bad argument
    assert "--convergence must be comma-separated positive integers" in capsys.readouterr().err
    assert main(["validate", str(path), "--steps", "5", "--samples", "2001"]) == 2
