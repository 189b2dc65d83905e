"""Memory estimates: runs and models that cannot fit are refused before anything large is allocated."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import evsnn
from evsnn import Conv2d, Dense, InputSpec, Population, Projection, SpikingModel
from evsnn.cli import main
from evsnn.encoding import encode
from evsnn.engines import get_engine
from evsnn.engines.memory import MEMORY_LIMIT_ENV, available_memory
from evsnn.errors import EngineError, InputError
from evsnn.io.hdf5 import save
from evsnn.model import INPUT
from test_energy import diehl
from test_event_engine import gaussian_model


def _never(*args, **kwargs):
    raise AssertionError("the run started: it should have been refused before")


@pytest.mark.parametrize("engine", ["event", pytest.param("brian2", marks=pytest.mark.brian2)])
def test_a_run_over_the_limit_is_refused_before_it_starts(engine, monkeypatch):
    model, x = gaussian_model()
    enc = encode(model, np.repeat(x, 50, axis=0), steps=400)
    cls = get_engine(engine)
    monkeypatch.setattr(cls, "run_batch", _never)
    monkeypatch.setattr(cls, "prepare", _never)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "4M")
    with pytest.raises(EngineError, match=r"needs about .* MiB of memory .*more than the 4\.0 MiB the limit set by "
                                          r"EVSNN_MEMORY_LIMIT\. Reduce the number of samples \(500\), steps \(400\) "
                                          r"or batch_size \(64\)"):
        evsnn.simulate(model, enc, engine=engine)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "64G")  # the same run under a generous limit gets past the check
    with pytest.raises(AssertionError, match="the run started"):
        evsnn.simulate(model, enc, engine=engine)


def huge_conv_model() -> SpikingModel:
    """Small weights (4.6 KiB), but an event table of 256 x 256 pixels x 9 taps (about 30 MiB)."""
    return SpikingModel(InputSpec((8, 256, 256)), [Population("c", (8, 256, 256))],
                        [Projection("conv", INPUT, "c", Conv2d(np.ones((8, 8, 3, 3)), (8, 256, 256), padding=1))])


def test_a_model_whose_tables_do_not_fit_is_refused_before_building_them(monkeypatch):
    model = huge_conv_model()
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "8M")
    monkeypatch.setattr("evsnn.engines.event._ConvDelivery.__init__", _never)
    with pytest.raises(EngineError, match="Engine 'event': .*connectivity tables .* MiB.*too large"):
        get_engine("event")(model)


def test_the_cli_refuses_with_one_line(tmp_path, monkeypatch, capsys):
    _, model = diehl("mlp", "poisson")
    path = tmp_path / "m.h5"
    save(model, path)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1M")
    assert main(["run", str(path), "--samples", "8", "--steps", "50", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "more than the 1.0 MiB" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["", "lots", "-1G", "0", "1X"])
def test_a_bad_limit_is_an_input_error(text, monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, text)
    with pytest.raises(InputError, match=MEMORY_LIMIT_ENV):
        available_memory()


def test_limit_units(monkeypatch):
    for text, value in (("1536", 1536), ("2K", 2048), ("1.5M", 3 * 2**19), ("2GiB", 2**31), ("1 gb", 2**30)):
        monkeypatch.setenv(MEMORY_LIMIT_ENV, text)
        assert available_memory()[0] == value, text
    monkeypatch.delenv(MEMORY_LIMIT_ENV)
    assert available_memory()[0] > 0


def measured_peak(model, enc, **kw) -> tuple[int, int]:
    """(estimated bytes, tracemalloc peak of the run), after a warm-up run (imports, caches, compiled code)."""
    evsnn.simulate(model, enc.select(0, 1), **kw)
    tracemalloc.start()
    try:
        res = evsnn.simulate(model, enc, **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    engine = get_engine(kw.get("engine", "event"))(model, **kw.get("options", {}))
    estimate = engine.memory_estimate(enc, kw.get("batch_size", 64), frozenset(res.rasters))
    return sum(estimate.values()), peak


@pytest.mark.parametrize("kind,encoding,record", [("mlp", "poisson", ()), ("mlp", "current", "all"),
                                                  ("cnn", "poisson", "all")])
def test_the_estimate_bounds_the_measured_peak_of_a_normal_run(kind, encoding, record):
    """The Diehl networks (the demo's), 64 samples: estimate >= peak of traced allocations, and not wildly above."""
    _, model = diehl(kind, encoding)
    x = np.random.default_rng(0).random((64, 1, 28, 28)) * (np.random.default_rng(1).random((64, 1, 28, 28)) < 0.2)
    estimate, peak = measured_peak(model, encode(model, x, steps=20), record=record, batch_size=32)
    assert peak > 1_000_000  # the run allocated something worth estimating
    assert peak <= estimate <= 6 * peak, (estimate, peak)


@pytest.mark.brian2
def test_the_brian2_estimate_bounds_the_measured_peak():
    _, model = diehl("mlp", "poisson")
    x = np.random.default_rng(0).random((2, 1, 28, 28)) * (np.random.default_rng(1).random((2, 1, 28, 28)) < 0.2)
    estimate, peak = measured_peak(model, encode(model, x, steps=20), engine="brian2", record="all")
    assert peak > 10_000_000
    assert peak <= estimate <= 6 * peak, (estimate, peak)


def test_small_runs_pass_the_check_untouched(monkeypatch):
    model = SpikingModel(InputSpec((2,)), [Population("o", (1,))],
                         [Projection("w", INPUT, "o", Dense(np.array([[0.5, 0.25]])))])
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1M")
    res = evsnn.simulate(model, np.ones((3, 2)), steps=8)
    assert res.spike_counts["o"].sum() > 0
