"""evsnn.simulate: argument checks and the settings a Result records."""

import numpy as np
import pytest

import evsnn
from evsnn import AccuracyWarning, InputError
from factories import make_mlp


@pytest.fixture
def x():
    return np.random.default_rng(0).random((3, 1, 28, 28))


def test_settings_are_recorded(x):
    r = evsnn.simulate(make_mlp(), x, steps=7, encoding="poisson", seed=3, max_rate=200.0, batch_size=2)
    assert r.settings == {"steps": 7, "dt": 1e-3, "encoding": "poisson", "seed": 3, "max_rate": 200.0,
                          "scale": 1.0, "batch_size": 2, "readout": "count", "dtype": "float32",
                          "dense_above": None, "rows_apart": True}
    assert r.engine == "event" and r.output.shape == (3, 7, 10) and r.wall_time > 0


def test_shared_encoded_input_gives_identical_runs(x):
    model = make_mlp()
    enc = evsnn.encode(model, x, steps=9, encoding="poisson", seed=1)
    a, b = evsnn.simulate(model, enc), evsnn.simulate(model, enc, batch_size=1)
    assert np.array_equal(a.output, b.output) and np.array_equal(a.sops["fc2"], b.sops["fc2"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps must be a positive integer"),
        ({}, "steps must be given"),
        ({"steps": 5, "batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"steps": 5, "record": ["nope"]}, r"record must name populations of the model \['fc1', 'fc2'\]"),
    ],
)
def test_bad_arguments(x, kwargs, match):
    with pytest.raises(InputError, match=match):
        evsnn.simulate(make_mlp(), x, **kwargs)


def test_bad_input_is_refused_before_anything_runs(x):
    model = make_mlp()
    with pytest.raises(InputError, match=r"shape"):
        evsnn.simulate(model, x[:, :, :27], steps=5)
    bad = x.copy()
    bad[1, 0, 3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        evsnn.simulate(model, bad, steps=5)
    enc = evsnn.encode(model, x, steps=5)
    with pytest.raises(InputError, match="steps must match the encoded input's 5, got 6"):
        evsnn.simulate(model, enc, steps=6)
    other = model.replace(dt=2e-3)
    with pytest.raises(InputError, match="the encoded input must be made for this model"):
        evsnn.simulate(other, enc)


def test_rates_above_one_spike_per_step_warn_and_clip(x):
    with pytest.warns(AccuracyWarning, match="clipped"):
        r = evsnn.simulate(make_mlp(), x, steps=5, encoding="poisson", max_rate=5000.0)
    assert r.settings["max_rate"] == 5000.0


def test_unknown_engine_lists_the_registered_ones(x):
    with pytest.raises(evsnn.EngineError, match="Engine 'brain2' is not registered; available: 'brian2', 'event'"):
        evsnn.simulate(make_mlp(), x, steps=5, engine="brain2")
    with pytest.raises(InputError, match="simulate: dtype must be .float32. or .float64."):
        evsnn.simulate(make_mlp(), x, steps=5, dtype="float16")
