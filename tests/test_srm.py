"""SRM neurons (seed 003, eqs. 1-4) on every engine, against a direct convolution with the sampled kernels.

The reference (``srm_reference``) evaluates the documented discrete-time sums
directly, from the kernels sampled at the step ends, with no recursion:
``u[t] = sum_k eps((k+1) dt) I[t-k] + r[t]``, ``eps(s) = (s/tau_s) e^(1 - s/tau_s)``,
where ``r`` decays by ``exp(-dt/tau_r)`` per step and carries the reset (``A theta``
subtracted at a spike, ``A`` the refractory amplitude: 1, or seed 003's 2; or set so that
``u = v_reset``). The event engine and the torch engine run the kernels as exact recursive
filters and Brian2 as ODEs; in float64 all agree with the reference (spikes exactly,
potentials to rounding) and with each other spike for spike.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import brian2  # noqa: F401  a hard dependency: a broken install must fail here, not skip
from evsnn import Conv2d, Dense, InputSpec, NeuronSpec, Population, Projection, SpikingModel
from evsnn.encoding import encode
from evsnn.errors import ModelError
from evsnn.model import INPUT
from evsnn.simulation import simulate
from test_event_engine import results_equal

ENGINES = ("event", "torch", "brian2")


def srm_reference(model: SpikingModel, enc, n: int, transform=None) -> dict[str, dict[str, np.ndarray]]:
    """Spikes and potentials per population, (n, steps, size), from the module docstring's sums. ``transform(pop,
    current)``, if given, replaces each population's summed projection input (n, steps, size) before its bias is
    added (how training's normalizations of the membrane input act)."""
    steps, dt = enc.steps, model.dt
    if enc.is_spiking:
        inp = enc.spikes(0, n).toarray().reshape(steps, n, -1).transpose(1, 0, 2)
    spikes, potentials = {}, {}
    for pop in model.populations:
        current = np.zeros((n, steps, pop.size))
        for pr in model.projections_into(pop.name):
            if pr.source == INPUT and not enc.is_spiking:
                current[:, pr.delay:] += pr.op.forward(enc.current(0, n))[:, None, :]
                continue
            src = inp if pr.source == INPUT else spikes[pr.source]
            delivered = pr.op.forward(src.reshape(n * steps, -1).astype(float)).reshape(n, steps, -1)
            current[:, pr.delay:] += delivered[:, :steps - pr.delay]
        if transform is not None:
            current = transform(pop, current)
        if pop.bias is not None:
            current += pop.bias.reshape(-1)
        spec = pop.neuron
        theta = np.broadcast_to(np.asarray(spec.threshold, dtype=float).reshape(-1), (pop.size,))
        s = (np.arange(steps) + 1) * dt
        kernel = (s / spec.tau_syn) * np.exp(1 - s / spec.tau_syn)
        r = np.broadcast_to(spec.v_init_fraction * theta, (n, pop.size)).copy()
        out, u_all = np.zeros((n, steps, pop.size), dtype=bool), np.zeros((n, steps, pop.size))
        for t in range(steps):
            r = r * math.exp(-dt / spec.tau_refr)
            u = np.einsum("k,bkn->bn", kernel[:t + 1], current[:, t::-1]) + r
            u_all[:, t] = u
            if model.readout == "membrane" and pop.name == model.output:
                continue
            out[:, t] = u >= theta
            if spec.reset == "subtract":
                r = r - spec.refractory_amplitude * theta * out[:, t]
            else:
                r = np.where(out[:, t], spec.v_reset - (u - r), r)
        spikes[pop.name], potentials[pop.name] = out, u_all
    return {"spikes": spikes, "u": potentials}


def srm_model(encoding, reset, *, readout="count", amplitude=1.0, seed=0):
    rng = np.random.default_rng(seed)
    out_neuron = NeuronSpec("srm", threshold=0.8, tau_syn=3e-3, tau_refr=2e-3, reset=reset, v_reset=-0.1,
                            v_init_fraction=0.5, refractory_amplitude=amplitude if reset == "subtract" else 1.0)
    return SpikingModel(
        input=InputSpec((20,), encoding=encoding),
        populations=[Population("a", (15,), NeuronSpec("srm", threshold=rng.uniform(0.8, 1.2, 15), tau_syn=2e-3,
                                                       tau_refr=4e-3, reset=reset, v_reset=-0.2),
                                bias=rng.normal(0, 0.05, 15)),
                     Population("b", (6,), out_neuron)],
        projections=[Projection("w1", INPUT, "a", Dense(rng.normal(0.1, 0.3, (15, 20)))),
                     Projection("w2", "a", "b", Dense(rng.normal(0.2, 0.4, (6, 15))), delay=1)],
        readout=readout,
    ), rng.uniform(0, 1, (3, 20)) * (0.3 if encoding == "poisson" else 0.5)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("reset,amplitude", [("subtract", 1.0), ("subtract", 2.0), ("zero", 1.0)])
@pytest.mark.parametrize("encoding", ["poisson", "current"])
def test_srm_matches_the_sampled_kernels(engine, encoding, reset, amplitude):
    model, x = srm_model(encoding, reset, amplitude=amplitude)
    enc = encode(model, x, steps=40, seed=1)
    ref = srm_reference(model, enc, len(x))
    res = simulate(model, enc, engine=engine, dtype="float64", record="all")
    for p in model.populations:
        assert ref["spikes"][p.name].sum() > 20, "test model fires too little"
        np.testing.assert_array_equal(res.rasters[p.name].to_dense(len(x), 40), ref["spikes"][p.name],
                                      err_msg=f"{engine}: {p.name}")


def test_seed_003_amplitude_changes_the_spikes():
    """Liveness of the amplitude: the doubled refractory kernel fires the output less often."""
    counts = {}
    for amplitude in (1.0, 2.0):
        model, x = srm_model("current", "subtract", amplitude=amplitude)
        counts[amplitude] = simulate(model, x, steps=40, engine="event", dtype="float64").spike_counts["b"].sum()
    assert 0 < counts[2.0] < counts[1.0]


@pytest.mark.parametrize("engine", ENGINES)
def test_srm_membrane_readout_matches_the_sampled_kernels(engine):
    model, x = srm_model("current", "subtract", readout="membrane", seed=2)
    enc = encode(model, x, steps=30)
    ref = srm_reference(model, enc, len(x))
    res = simulate(model, enc, engine=engine, dtype="float64", record="all")
    assert res.spike_counts["b"].sum() == 0 and res.spike_counts["a"].sum() > 0
    np.testing.assert_allclose(res.output, ref["u"]["b"], rtol=1e-10, atol=1e-12)


def srm_conv_model(encoding):
    """A conv SRM layer with seed 003's kernel feeding a dense SRM read-out, with a delayed recurrent edge."""
    rng = np.random.default_rng(7)
    conv = Conv2d(rng.normal(0.15, 0.3, (3, 2, 3, 3)), input_shape=(2, 6, 6), stride=1, padding=1)
    seed003 = NeuronSpec("srm", threshold=0.7, tau_syn=2e-3, tau_refr=3e-3, refractory_amplitude=2.0)
    return SpikingModel(
        input=InputSpec((2, 6, 6), encoding=encoding),
        populations=[Population("conv", (3, 6, 6), seed003),
                     Population("out", (5,), NeuronSpec("srm", threshold=1.0, tau_syn=4e-3, tau_refr=2e-3))],
        projections=[Projection("conv", INPUT, "conv", conv),
                     Projection("out", "conv", "out", Dense(rng.normal(0.05, 0.1, (5, 108)))),
                     Projection("rec", "out", "conv", Dense(rng.normal(0, 0.2, (108, 5))), delay=1)],
    ), rng.uniform(0, 1, (4, 2, 6, 6))


@pytest.mark.parametrize("encoding", ["poisson", "current"])
def test_engines_agree_spike_for_spike(encoding):
    model, x = srm_conv_model(encoding)
    enc = encode(model, x, steps=30, seed=4)
    runs = {engine: simulate(model, enc, engine=engine, dtype="float64", record="all",
                             options={"event": {"dense_above": 1.0}}) for engine in ENGINES}
    assert runs["event"].spike_counts["conv"].sum() > 50 and runs["event"].spike_counts["out"].sum() > 5
    results_equal(runs["event"], runs["torch"])
    results_equal(runs["event"], runs["brian2"])


def test_event_engine_work_follows_spikes_on_srm():
    """The event engine's SOPs on an SRM model are counted from its spikes by the one rule (fan-out per spike)."""
    model, x = srm_conv_model("poisson")
    res = simulate(model, x, steps=30, engine="event", dtype="float64", record="all")
    raster = res.rasters["conv"]
    synapses = model.projections[1].op.fan_out()[0]
    per_step = np.zeros((len(x), 30), dtype=np.int64)
    np.add.at(per_step, (raster.sample, raster.step), synapses[raster.neuron])
    assert per_step.sum() > 0
    np.testing.assert_array_equal(res.sops["out"], per_step)


@pytest.mark.parametrize("kwargs,match", [
    ({"kind": "if", "refractory_amplitude": 2.0}, "refractory_amplitude applies only to kind 'srm' with reset "
                                                  "'subtract', got 2 for kind 'if'"),
    ({"kind": "srm", "tau_syn": 1e-3, "tau_refr": 1e-3, "reset": "zero", "refractory_amplitude": 2.0},
     "with reset 'zero'"),
    ({"kind": "srm", "tau_syn": 1e-3, "tau_refr": 1e-3, "refractory_amplitude": 0.0}, "refractory_amplitude"),
    ({"kind": "srm", "tau_syn": 1e-3, "tau_refr": 1e-3, "refractory_amplitude": "2"}, "must be a real number"),
])
def test_refractory_amplitude_is_checked(kwargs, match):
    with pytest.raises(ModelError, match=match):
        NeuronSpec(**kwargs)
