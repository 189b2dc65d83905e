"""The run settings and the sample check: one rule, the same names and messages in every public run function."""

import os

import numpy as np
import pytest

import evsnn
from evsnn import InputError
from evsnn.settings import RunSettings, check_samples, run_settings
from evsnn.sweep import sweep
from evsnn.validation import convergence, validate

from factories import make_mlp

X = np.random.default_rng(0).random((3, 1, 28, 28))


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": None}, "steps must be given"),
    ({"steps": 0}, r"steps must be a positive integer, got 0"),
    ({"steps": 2.0}, r"steps must be a positive integer, got 2\.0"),
    ({"steps": True}, "steps must be a positive integer"),
    ({"steps": 5, "encoding": "rate"}, "encoding must be one of 'current', 'poisson', 'regular', got 'rate'"),
    ({"steps": 5, "seed": -1}, "seed must be a non-negative integer, got -1"),
    ({"steps": 5, "max_rate": 0}, "max_rate must be a finite number > 0, got 0"),
    ({"steps": 5, "scale": float("nan")}, "scale must be a finite number, got nan"),
    ({"steps": 5, "dtype": "float16"}, "dtype must be 'float32' or 'float64', got 'float16'"),
    ({"steps": 5, "batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"steps": 5, "threads": 0}, "threads must be a positive integer, got 0"),
    ({"steps": 5, "threads": 1.5}, r"threads must be a positive integer, got 1\.5"),
    ({"steps": 5, "progress": "yes"}, "progress must be True or False"),
    ({"steps": 5, "options": [("event", {})]}, "options must be a mapping engine name -> dict"),
    ({"steps": 5, "options": {"brain2": {}}}, r"options must be keyed by engine names \('brian2', 'event', 'torch'\), got 'brain2'"),
    ({"steps": 5, "options": {"event": 1.0}}, r"options\['event'\] must be a dict of option name -> value"),
])
def test_bad_settings_name_the_function_and_the_parameter(kwargs, match):
    with pytest.raises(InputError, match=rf"^where: {match}"):
        RunSettings(**kwargs, where="where")


def test_settings_are_normalised_and_read_only():
    s = RunSettings(steps=np.int64(5), max_rate=100, options={"Event": {"dense_above": 1.0}})
    assert (s.steps, s.max_rate, s.seed, s.dtype, s.batch_size, s.progress) == (5, 100.0, 0, "float32", 64, False)
    assert type(s.steps) is int and s.engine_options("event") == {"dense_above": 1.0} and s.engine_options("brian2") == {}
    assert s.threads == len(os.sched_getaffinity(0))  # default: every core this process may use
    assert RunSettings(steps=1, threads=np.int64(3)).threads == 3
    with pytest.raises(TypeError):
        s.options["event"]["dense_above"] = 0.0


def test_an_unknown_setting_points_to_engine_options():
    with pytest.raises(InputError, match=r"simulate: 'dense_above' is not a run setting; the settings are steps, "
                                         r"encoding, .*options=\{'event': \{'dense_above': 1\.0\}\}"):
        run_settings("simulate", {"steps": 5, "dense_above": 1.0})


@pytest.mark.parametrize("x, match", [
    (np.zeros((1, 28, 28)), r"got \(1, 28, 28\), a single sample\. Add a batch axis"),
    (np.zeros((2, 784)), r"must have shape \(N, 1, 28, 28\) .*got \(2, 784\)"),
    (np.zeros((0, 1, 28, 28)), "must hold at least one sample"),
    (np.full((2, 1, 28, 28), np.nan), "must be finite, got 1568 NaN/inf"),
    (np.zeros((2, 1, 28, 28), dtype=complex), "must be a real numeric array, got dtype complex128"),
    ([[1], [2, 3]], "must be a numeric array, got list"),
])
def test_check_samples(x, match):
    with pytest.raises(InputError, match=rf"^here: samples .*{match}"):
        check_samples(x, make_mlp(), where="here", name="samples")


def test_check_samples_returns_a_float64_copy():
    x = np.ones((2, 1, 28, 28), dtype=np.uint8)
    out = check_samples(x, make_mlp(), where="here")
    out[0] = 5
    assert out.dtype == np.float64 and x[0].max() == 1


def test_every_run_function_requires_steps_and_takes_the_same_settings(tmp_path):
    """The same mistakes give the same message from each public run function, before anything runs."""
    model = make_mlp()
    y = np.zeros(3, dtype=int)
    calls = {
        "simulate": lambda **kw: evsnn.simulate(model, X, **kw),
        "validate": lambda **kw: validate(model, X, **kw),
        "convergence": lambda **kw: convergence(model, X, **kw),
        "sweep": lambda **kw: sweep(model, x_select=X, y_select=y, log=tmp_path / "log.jsonl", methods=("baseline",),
                                    **kw),
    }
    for where, call in calls.items():
        with pytest.raises(InputError, match=rf"^{where}: steps must be given"):
            call()
        with pytest.raises(InputError, match=rf"^{where}: batch_size must be a positive integer, got 0"):
            call(steps=5, batch_size=0)
        with pytest.raises(InputError, match=rf"^{where}: 'codegen' is not a run setting"):
            call(steps=5, codegen="numpy")
        with pytest.raises(InputError, match=rf"^{where}: options must be keyed by engine names"):
            call(steps=5, options={"nope": {}})
    assert not (tmp_path / "log.jsonl").exists()  # the sweep refused before writing its log


def test_results_record_the_settings_the_same_way():
    model = make_mlp()
    r = evsnn.simulate(model, X, steps=4, seed=2, batch_size=2)
    report = validate(model, X, engines=("event", "event"), steps=4, seed=2, batch_size=2)
    recorded = ("steps", "encoding", "seed", "max_rate", "scale", "batch_size")
    assert {k: r.settings[k] for k in recorded} == {k: report.comparisons[0].settings[k] for k in recorded}
    assert r.settings["encoding"] == model.input.encoding and r.settings["steps"] == 4
