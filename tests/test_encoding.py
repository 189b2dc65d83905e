"""Input encoders: current / poisson / regular, determinism, batch independence, errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from evsnn import Dense, InputSpec, Population, Projection, SpikingModel
from evsnn.encoding import EncodedInput, encode
from evsnn.errors import AccuracyWarning, InputError

SHAPE = (2, 3, 3)
N_IN = 18


def tiny(encoding="poisson", max_rate=1000.0, scale=1.0, dt=1e-3) -> SpikingModel:
    return SpikingModel(
        input=InputSpec(SHAPE, encoding=encoding, max_rate=max_rate, scale=scale),
        populations=[Population("out", (3,))],
        projections=[Projection("w", "input", "out", Dense(np.ones((3, N_IN))))],
        dt=dt,
    )


def batch(n=5, seed=0, high=0.5) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, high, (n, *SHAPE))


def dense(enc: EncodedInput, start: int, stop: int) -> np.ndarray:
    """spikes() as a boolean (sample, step, neuron) array."""
    s = enc.spikes(start, stop)
    return s.toarray().reshape(enc.steps, stop - start, enc.n_inputs).transpose(1, 0, 2).astype(bool)


def with_p(p: np.ndarray | float, n=1) -> np.ndarray:
    """Input giving spike probability p per step with max_rate 1000 Hz and dt 1 ms."""
    return np.broadcast_to(np.asarray(p, dtype=float), (n, *SHAPE)).copy()


# --- current ---------------------------------------------------------------------------------
def test_current_is_scaled_input_and_fields():
    x = batch(4, high=1) - 0.5  # negative values are fine for a current
    enc = encode(tiny("current", scale=2.5), x, steps=7)
    assert (enc.encoding, enc.steps, enc.dt, enc.scale, enc.seed, enc.offset) == ("current", 7, 1e-3, 2.5, 0, 0)
    assert (enc.n_samples, enc.n_inputs, enc.input_shape, enc.is_spiking) == (4, N_IN, SHAPE, False)
    assert enc.x.dtype == np.float64 and not enc.x.flags.writeable
    np.testing.assert_array_equal(enc.current(1, 3), 2.5 * x.reshape(4, -1)[1:3])
    assert encode(tiny("poisson"), x.clip(0), steps=3, encoding="current", scale=3.0).current(0, 4)[0, 0] == \
        3.0 * x.clip(0).reshape(4, -1)[0, 0]


def test_input_is_copied_and_converted():
    x = (batch(2, high=1) > 0.5).astype(np.uint8)
    enc = encode(tiny(), x, steps=2)
    x[:] = 0
    assert enc.x.dtype == np.float64 and enc.x.sum() > 0


# --- poisson ---------------------------------------------------------------------------------
def test_poisson_rate_matches_p():
    p = np.linspace(0.0, 1.0, N_IN)
    steps = 20000
    enc = encode(tiny(), with_p(p.reshape(SHAPE)), steps=steps)
    rate = dense(enc, 0, 1)[0].mean(axis=0)
    sigma = np.sqrt(p * (1 - p) / steps)
    assert (np.abs(rate - p) <= 4 * sigma + 1e-12).all()
    assert rate[0] == 0.0 and rate[-1] == 1.0  # p = 0: never; p = 1: every step


def test_poisson_uses_max_rate_and_dt():
    enc = encode(tiny(max_rate=100.0, dt=2e-3), with_p(0.5), steps=4000)  # p = 0.5 * 100 * 2e-3 = 0.1
    assert dense(enc, 0, 1).mean() == pytest.approx(0.1, abs=4 * math.sqrt(0.09 / (4000 * N_IN)))
    assert encode(tiny(), with_p(0.5), steps=4000, max_rate=50.0).spikes(0, 1).nnz < 0.05 * 4000 * N_IN


def test_poisson_is_deterministic_in_the_seed():
    x = batch()
    a, b = encode(tiny(), x, steps=50, seed=3), encode(tiny(), x, steps=50, seed=3)
    assert (a.spikes(0, 5) != b.spikes(0, 5)).nnz == 0
    assert (a.spikes(0, 5) != a.spikes(0, 5)).nnz == 0  # repeated calls
    c = encode(tiny(), x, steps=50, seed=4)
    assert (a.spikes(0, 5) != c.spikes(0, 5)).nnz > 0


def test_poisson_batch_independence():
    x = batch(5)
    full = dense(encode(tiny(), x, steps=40, seed=7), 0, 5)
    enc = encode(tiny(), x, steps=40, seed=7)
    for cuts in ([0, 5], [0, 2, 5], [0, 1, 2, 3, 4, 5], [0, 3, 4, 5]):
        parts = [dense(enc, lo, hi) for lo, hi in zip(cuts, cuts[1:])]
        np.testing.assert_array_equal(np.concatenate(parts), full)
    for lo, hi in [(0, 5), (1, 4), (3, 5), (4, 5)]:
        view = enc.select(lo, hi)
        assert (view.n_samples, view.offset) == (hi - lo, lo)
        np.testing.assert_array_equal(dense(view, 0, hi - lo), full[lo:hi])
    np.testing.assert_array_equal(dense(enc.select(1, 5).select(2, 4), 0, 2), full[3:5])
    # sample 2 alone at global index 2 of a new batch: same train when its x and index agree
    x2 = batch(5, seed=9)
    x2[2] = x[2]
    np.testing.assert_array_equal(dense(encode(tiny(), x2, steps=40, seed=7), 2, 3)[0], full[2])


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_poisson_spikes_do_not_depend_on_threads(threads):
    """Samples drawn on several threads (each with its own generator) give the one-thread spikes, in the same rows;
    8 threads for 5 samples: more threads than samples."""
    enc = encode(tiny(), batch(5), steps=40, seed=7)
    one = enc.spikes(0, 5)
    assert one.nnz > 0
    assert (enc.spikes(0, 5, threads=threads) != one).nnz == 0
    assert (enc.spikes(1, 4, threads=threads) != enc.spikes(1, 4)).nnz == 0


@pytest.mark.parametrize("encoding", ["poisson", "regular"])
def test_shorter_run_is_a_prefix(encoding):
    x = batch(3)
    long, short = (encode(tiny(encoding), x, steps=s, seed=5) for s in (60, 25))
    np.testing.assert_array_equal(dense(short, 0, 3), dense(long, 0, 3)[:, :25])


# --- regular ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "p, times",
    [(0.5, [1, 3, 5, 7, 9]), (0.25, [3, 7]), (1.0, list(range(10))), (0.0, []), (0.3, [3, 6, 9])],
)
def test_regular_spike_times(p, times):
    enc = encode(tiny("regular"), with_p(p), steps=10)
    spikes = dense(enc, 0, 1)[0]
    for j in range(N_IN):
        assert np.flatnonzero(spikes[:, j]).tolist() == times


def test_regular_counts_and_determinism():
    x = batch(3, high=1.0)
    steps = 97
    enc = encode(tiny("regular"), x, steps=steps, seed=1)
    counts = dense(enc, 0, 3).sum(axis=1)
    p = x.reshape(3, -1) * 1000.0 * 1e-3  # x * max_rate * dt
    np.testing.assert_array_equal(counts, np.floor(steps * p))
    other = encode(tiny("regular"), x, steps=steps, seed=2)  # no randomness: the seed does not matter
    assert (enc.spikes(0, 3) != other.spikes(0, 3)).nnz == 0
    np.testing.assert_array_equal(dense(enc.select(1, 3), 0, 2), dense(enc, 1, 3))


# --- clipping --------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["poisson", "regular"])
def test_clipping_warns_and_clips(encoding):
    x = with_p(0.5, n=2)
    x[0, 0, 0, :] = [2.0, 1.5, 1.0]  # two values above p = 1
    x[1, 1, 2, 2] = 3.0
    with pytest.warns(AccuracyWarning, match=r"3 of 36 input values .* \(max 3\).*Lower max_rate"):
        enc = encode(tiny(encoding), x, steps=30)
    spikes = dense(enc, 0, 2)
    assert spikes[0, :, :3].all() and spikes[1, :, -1].all()
    assert spikes.sum(axis=1).max() == 30


def test_no_warning_within_range():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode(tiny(), with_p(1.0), steps=3)
        encode(tiny("current"), with_p(5.0), steps=3)


# --- spikes() layout and spike_events() --------------------------------------------------------
def test_spikes_layout_and_events():
    x = batch(4)
    enc = encode(tiny(), x, steps=25, seed=11)
    s = enc.spikes(1, 4)
    assert isinstance(s, sp.csr_array) and s.shape == (25 * 3, N_IN)
    assert s.has_sorted_indices and (s.data == 1).all()
    s.check_format(full_check=True)
    raster = dense(enc, 0, 4)
    for t in (0, 7, 24):  # rows [t*B, (t+1)*B) are the step-t matrix of samples start..stop-1
        np.testing.assert_array_equal(s[[t * 3 + b for b in range(3)]].toarray().astype(bool), raster[1:4, t])
    sample, step, neuron = enc.spike_events(1, 4)
    assert sample.dtype == step.dtype == neuron.dtype == np.int64
    assert sample.size == s.nnz and sample.min() >= 1 and sample.max() <= 3
    np.testing.assert_array_equal(np.lexsort((neuron, step, sample)), np.arange(sample.size))
    rebuilt = np.zeros_like(raster)
    rebuilt[sample, step, neuron] = True
    np.testing.assert_array_equal(rebuilt[1:4], raster[1:4])
    assert not rebuilt[0].any()


# --- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (np.zeros(SHAPE), {}, r"got \(2, 3, 3\), a single sample\. Add a batch axis, e\.g\. x\[None\]"),
        (np.zeros((2, 18)), {}, r"x must have shape \(N, 2, 3, 3\).*got \(2, 18\)"),
        (np.zeros((0, *SHAPE)), {}, r"at least one sample"),
        (np.where(np.eye(18)[:2].reshape(2, *SHAPE) > 0, np.nan, 0.0), {}, r"finite, got 2 NaN/inf"),
        (np.full((1, *SHAPE), np.inf), {}, r"finite, got 18 NaN/inf"),
        (-with_p(0.1), {}, r"x must be >= 0 for the 'poisson'.*18 negative.*[Ss]cale x to \[0, 1\]"),
        (-with_p(0.1), {"encoding": "regular"}, r">= 0 for the 'regular'"),
        (np.zeros((1, *SHAPE), dtype=complex), {}, r"real numeric array, got dtype complex128"),
        (np.array([["a"]]), {}, r"real numeric array"),
        (with_p(0.1), {"steps": 0}, r"steps must be a positive integer, got 0"),
        (with_p(0.1), {"steps": 2.0}, r"steps must be a positive integer, got 2\.0"),
        (with_p(0.1), {"steps": True}, r"steps must be a positive integer"),
        (with_p(0.1), {"encoding": "rate"}, r"encoding must be one of 'current', 'poisson', 'regular', got 'rate"),
        (with_p(0.1), {"max_rate": 0}, r"max_rate must be a finite number > 0, got 0"),
        (with_p(0.1), {"max_rate": -5.0}, r"max_rate must be a finite number > 0"),
        (with_p(0.1), {"max_rate": float("inf")}, r"max_rate must be a finite number > 0"),
        (with_p(0.1), {"scale": float("nan")}, r"scale must be a finite number"),
        (with_p(0.1), {"seed": 1.5}, r"seed must be a non-negative integer, got 1\.5"),
        (with_p(0.1), {"seed": -1}, r"seed must be a non-negative integer"),
        (with_p(0.1), {"seed": "0"}, r"seed must be a non-negative integer"),
    ],
)
def test_encode_errors(x, kwargs, match):
    with pytest.raises(InputError, match=match) as info:
        encode(tiny(), x, **{"steps": 5, **kwargs})
    assert str(info.value).startswith("encode: ")


def test_negative_input_is_fine_for_current():
    encode(tiny(), -with_p(0.1), steps=3, encoding="current")


@pytest.mark.parametrize("start, stop", [(-1, 2), (2, 2), (3, 2), (0, 6), (0.0, 2), (True, 2)])
@pytest.mark.parametrize("method", ["spikes", "spike_events", "select"])
def test_range_errors(method, start, stop):
    enc = encode(tiny(), batch(5), steps=3)
    with pytest.raises(InputError, match=rf"EncodedInput\.{method}: \(start, stop\) must be integers with "
                                         r"0 <= start < stop <= 5"):
        getattr(enc, method)(start, stop)


def test_wrong_kind_of_output():
    spiking = encode(tiny(), batch(2), steps=3)
    with pytest.raises(InputError, match=r"current: encoding must be 'current', got 'poisson'"):
        spiking.current(0, 2)
    analog = encode(tiny("current"), batch(2), steps=3)
    with pytest.raises(InputError, match=r"spikes: encoding must be 'poisson' or 'regular', got 'current'"):
        analog.spikes(0, 2)
    with pytest.raises(InputError, match=r"spike_events: encoding must be 'poisson' or 'regular'"):
        analog.spike_events(0, 2)
    with pytest.raises(InputError, match=r"current: .*0 <= start < stop <= 2"):
        analog.current(0, 3)
