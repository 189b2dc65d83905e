"""The ODE form of NIR's neurons on the event and torch engines: exact against scipy's solve_ivp and closed
forms."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from evsnn import Dense, InputSpec, NeuronSpec, Population, Projection, SpikingModel, encode_spikes
from evsnn import simulate

DT, STEPS = 1e-3, 50
T = np.arange(1, STEPS + 1) * DT


def readout(spec, n=1, weight=1.0):
    return SpikingModel(InputSpec((n,)), [Population("p", (n,), spec)],
                        [Projection("w", "input", "p", Dense(np.full((n, n), weight) * np.eye(n)))],
                        readout="membrane", dt=DT)


@pytest.fixture(params=["event", "torch"])
def engine(request):
    return request.param


def membrane(model, engine, x=None, spikes=None):
    if spikes is not None:
        return simulate(model, encode_spikes(model, spikes), dtype="float64", engine=engine).output[0, :, 0]
    return simulate(model, x, steps=STEPS, dtype="float64", encoding="current", engine=engine).output[0, :, 0]


def ode(rhs, y0):
    return solve_ivp(rhs, (0, T[-1]), y0, t_eval=T, rtol=1e-12, atol=1e-14, method="DOP853").y


def test_li_with_held_current_is_the_exact_solution(engine):
    tau, r, leak, a = 0.01, 2.0, 0.5, 1.3
    v = membrane(readout(NeuronSpec("li", tau_mem=tau, r=r, v_leak=leak)), engine, np.array([[a]]))
    expected = ode(lambda t, y: [(leak - y[0] + r * a) / tau], [0.0])[0]
    np.testing.assert_allclose(v, expected, rtol=0, atol=1e-10)
    assert v[-1] > 2.0  # it moved towards v_leak + R a = 3.1


def test_cuba_li_with_held_current_and_the_equal_time_constant_limit(engine):
    for tau_syn in (0.004, 0.01):
        tau, r, w_in, a = 0.01, 2.0, 1.5, 0.7
        spec = NeuronSpec("cuba_li", tau_mem=tau, tau_syn=tau_syn, r=r, w_in=w_in)
        v = membrane(readout(spec), engine, np.array([[a]]))
        expected = ode(lambda t, y: [(-y[0] + w_in * a) / tau_syn, (-y[1] + r * y[0]) / tau], [0.0, 0.0])[1]
        np.testing.assert_allclose(v, expected, rtol=0, atol=1e-10)


def test_i_integrates_r_times_the_current(engine):
    v = membrane(readout(NeuronSpec("i", r=3.0)), engine, np.array([[0.25]]))
    np.testing.assert_allclose(v, 3.0 * 0.25 * T, rtol=1e-12)


def test_a_spike_is_a_unit_impulse_at_the_end_of_its_step(engine):
    tau, r, w = 0.02, 2.0, 0.5
    spikes = np.zeros((1, STEPS, 1))
    spikes[0, 4, 0] = 1
    v = membrane(readout(NeuronSpec("li", tau_mem=tau, r=r), weight=w), engine, spikes=spikes)
    expected = np.where(np.arange(STEPS) >= 4, r * w / tau * np.exp(-(np.arange(STEPS) - 4) * DT / tau), 0.0)
    np.testing.assert_allclose(v, expected, rtol=1e-12, atol=1e-15)


def test_cuba_lif_spikes_where_the_ode_crosses_threshold_from_above(engine):
    """Strict threshold and reset to v_reset: the first spike is at the step after v first exceeds θ."""
    tau, tau_syn, r, w_in, a, th = 0.01, 0.005, 1.0, 1.0, 2.0, 1.2
    spec = NeuronSpec("cuba_lif", tau_mem=tau, tau_syn=tau_syn, r=r, w_in=w_in, threshold=th, reset="zero",
                      v_reset=0.0, strict_threshold=True)
    model = SpikingModel(InputSpec((1,)), [Population("p", (1,), spec)],
                         [Projection("w", "input", "p", Dense(np.ones((1, 1))))], dt=DT)
    counts = simulate(model, np.array([[a]]), steps=STEPS, dtype="float64", encoding="current",
                      engine=engine).spike_counts["p"][0]
    v = ode(lambda t, y: [(-y[0] + w_in * a) / tau_syn, (-y[1] + r * y[0]) / tau], [0.0, 0.0])[1]
    first = int(np.argmax(v > th))
    assert counts.sum() > 0 and int(np.argmax(counts > 0)) == first


A = 0.7  # the held input of the saved models below
SAVED = {
    "li": (NeuronSpec("li", tau_mem=0.01, r=2.0, v_leak=0.5), lambda t, y: [(0.5 - y[0] + 2.0 * A) / 0.01], [0.0]),
    "cuba_li": (NeuronSpec("cuba_li", tau_mem=0.01, tau_syn=np.array([0.004]), r=2.0, w_in=np.array([1.5], np.float32)),
                lambda t, y: [(-y[0] + 1.5 * A) / 0.004, (-y[1] + 2.0 * y[0]) / 0.01], [0.0, 0.0]),
    "i": (NeuronSpec("i", r=np.array([3.0])), lambda t, y: [3.0 * A], [0.0]),
}


@pytest.mark.parametrize("kind", SAVED)
def test_a_saved_and_loaded_ode_model_still_integrates_its_ode(tmp_path, kind, engine):
    """The file keeps every ODE field (arrays and numbers): the loaded model equals the original and its
    membrane is solve_ivp's solution."""
    from evsnn import load, save

    spec, rhs, y0 = SAVED[kind]
    save(readout(spec), tmp_path / "m.h5")
    back = load(tmp_path / "m.h5")
    assert back == readout(spec)
    np.testing.assert_allclose(membrane(back, engine, np.array([[A]])), ode(rhs, y0)[-1], rtol=0, atol=1e-10)


@pytest.mark.brian2
@pytest.mark.parametrize("kind", ["li", "cuba_li"])
def test_brian2_integrates_the_same_odes(kind):
    """Brian2's own integration of the held-current ODE (not the event engine's coefficients) meets solve_ivp too."""
    tau, tau_syn, r, w_in, leak, a = 0.01, 0.004, 2.0, 1.5, 0.5, 1.3
    extra = dict(tau_syn=tau_syn, w_in=w_in) if kind == "cuba_li" else {}
    model = readout(NeuronSpec(kind, tau_mem=tau, r=r, v_leak=leak, **extra))
    v = simulate(model, np.array([[a]]), steps=STEPS, engine="brian2", dtype="float64",
                 encoding="current").output[0, :, 0]
    if kind == "li":
        expected = ode(lambda t, y: [(leak - y[0] + r * a) / tau], [0.0])[0]
    else:
        expected = ode(lambda t, y: [(-y[0] + w_in * a) / tau_syn, (leak - y[1] + r * y[0]) / tau], [0.0, 0.0])[1]
    np.testing.assert_allclose(v, expected, rtol=0, atol=1e-10)
