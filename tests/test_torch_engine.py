"""The torch timestep engine against the naive reference, the event engine and Brian2.

- every dyadic case of ``test_event_engine`` and its random models against the reference simulator, exactly
  (spikes, potentials, SOPs, MACs), in float64;
- the neuron step on tensors against the same function on numpy arrays, bit for bit, every kind and form;
- non-dyadic models (a gaussian conv/residual/recurrent model, converted Diehl MLP and CNN on MNIST) spike for
  spike with the event engine in float64, and the same Results whatever the batch size and thread count;
- Brian2 agrees with it through ``evsnn.validate``;
- a CUDA device where one exists (skipped visibly without).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

import evsnn
from evsnn.engines import available_engines, get_engine
from evsnn.engines.neurons import NeuronParams, NeuronState, initial_state, neuron_step
from evsnn.engines.timestep import TimestepNetwork
from evsnn.errors import EngineError
from evsnn.io.datasets import mnist_split
from evsnn.model import Population
from evsnn.simulation import simulate
from evsnn.training import diehl_cnn, diehl_mlp
from test_event_engine import (CASES, ENCODINGS, assert_lively, assert_matches, assume_lively, gaussian_model,
                               random_cases, reference_run, results_equal)
from test_kernels import N, SPECS


# ============================================================================================
# Against the naive reference (exact: dyadic values)
# ============================================================================================
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_matches_reference(case, encoding):
    model, x = CASES[case](encoding)
    res = simulate(model, x, steps=25, seed=3, engine="torch", dtype="float64", record="all")
    ref = reference_run(model, x, 25, None, seed=3)
    assert_lively(ref, model)
    assert res.engine == "torch" and res.settings["device"] == "cpu" and res.settings["dtype"] == "float64"
    assert_matches(res, ref, model)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_cases())
def test_random_models_match_reference(case):
    model, x, steps, seed = case
    res = simulate(model, x, steps=steps, seed=seed, engine="torch", dtype="float64", record="all", batch_size=2)
    ref = reference_run(model, x, steps, None, seed=seed)
    assume_lively(ref["spike_counts"], ref["output"], model)  # judged on the independent reference
    assert_matches(res, ref, model)


# ============================================================================================
# The neuron step on tensors is the numpy step
# ============================================================================================
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,with_held", [(name, held) for name, spec in SPECS.items()
                                            for held in ((False, True) if spec.ode else (False,))])
def test_neuron_step_on_tensors_is_the_numpy_step_bit_for_bit(name, with_held, dtype):
    dtype = np.dtype(dtype)
    p = NeuronParams.from_population(Population("p", (N,), SPECS[name]), dtype, engine="torch", dt=1e-3)
    pt = p.to_torch()
    rng = np.random.default_rng([list(SPECS).index(name), with_held])
    batch = 5
    state = initial_state(p, batch, N, dtype)
    state_t = initial_state(pt, batch, N, dtype)
    np.testing.assert_array_equal(state_t.v.numpy(), state.v)
    held = rng.normal(0, 0.5, (batch, N)).astype(dtype) if with_held else None
    spikes = 0
    for _ in range(8):
        current = rng.normal(0.3, 0.6, (batch, N)).astype(dtype)
        spiked, state = neuron_step(state, current, p, held)
        spiked_t, state_t = neuron_step(state_t, torch.from_numpy(current), pt,
                                        None if held is None else torch.from_numpy(held))
        np.testing.assert_array_equal(spiked_t.numpy(), spiked)
        assert state_t.v.dtype == getattr(torch, dtype.name)
        assert np.array_equal(state_t.v.numpy().view(np.uint8), state.v.view(np.uint8)), name
        if state.i is not None:
            assert np.array_equal(state_t.i.numpy().view(np.uint8), state.i.view(np.uint8))
        spikes += int(spiked.sum())
    assert spikes > 0 or not p.spiking


def test_step_is_pure_and_takes_a_surrogate_spike_function():
    """The same state stepped twice gives the same result (nothing modified in place); with a spike function
    whose gradient is a surrogate, a loss on the output spikes has a gradient with respect to the input."""
    model, x = CASES["lif_soft"]("poisson")
    net = TimestepNetwork(model, dtype=np.dtype("float64"), device=torch.device("cpu"))
    state = net.initial_state(3)
    spikes_in = torch.as_tensor(np.random.default_rng(0).random((3, model.input.size)) < 0.5, dtype=torch.float64)
    state = net.step(state, 0, spikes_in)[0]
    a, b = net.step(state, 1, spikes_in), net.step(state, 1, spikes_in)
    for sa, sb in zip(a[1], b[1]):
        assert torch.equal(sa, sb)
    assert [n.v.data_ptr() for n in a[0].neurons] != [n.v.data_ptr() for n in state.neurons]

    class Fast(torch.autograd.Function):  # Heaviside forward, fast-sigmoid backward
        @staticmethod
        def forward(ctx, u):
            ctx.save_for_backward(u)
            return (u >= 0).to(u.dtype)

        @staticmethod
        def backward(ctx, grad):
            (u,) = ctx.saved_tensors
            return grad / (1 + 10 * u.abs()) ** 2

    drive = spikes_in.clone().requires_grad_(True)
    state = net.initial_state(3)
    total = 0
    for t in range(6):
        state, emitted = net.step(state, t, drive, spike_fn=lambda v, p: Fast.apply(v - p.threshold))
        total = total + emitted[-1].sum()
    total.backward()
    assert total.item() > 0 and drive.grad is not None and drive.grad.abs().sum() > 0


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_layerwise_run_is_the_step_by_step_run(case, encoding):
    """run_layerwise (each product over all steps at once, one population after another) gives the spikes and
    potentials of step(); a model with a recurrent edge is refused."""
    model, x = CASES[case](encoding)
    net = TimestepNetwork(model, dtype=np.dtype("float64"), device=torch.device("cpu"))
    steps, batch = 25, x.shape[0]
    enc = evsnn.encode(model, x, steps=steps, seed=3)
    raster = analog = None
    if enc.is_spiking:
        raster = torch.as_tensor(enc.raster(0, batch)).to(torch.float64)
    else:
        analog = net.analog_input(torch.as_tensor(enc.current(0, batch)).to(torch.float64))
    state, stepped = net.initial_state(batch), []
    for t in range(steps):
        state, emitted = net.step(state, t, None if raster is None else raster[t], analog)
        stepped.append(emitted)
    if case == "recurrent":
        with pytest.raises(EngineError, match="feed-forward.*'rec'"):
            net.run_layerwise(steps, batch, raster, analog)
        return
    layered = net.run_layerwise(steps, batch, raster, analog)
    assert list(layered) == [p.name for p in model.populations]
    for i, (name, out) in enumerate(layered.items()):
        expected = torch.stack([emitted[i] for emitted in stepped])
        np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)
        if net.spiking[i]:
            assert torch.equal(out, expected), name
    assert sum(float(out.sum()) for i, out in enumerate(layered.values()) if net.spiking[i]) > 0


# ============================================================================================
# Against the event engine (non-dyadic weights: the same spikes in float64)
# ============================================================================================
EXACT_EVENT = {"event": {"dense_above": 1.0}}


@pytest.mark.parametrize("encoding,readout", [("poisson", "count"), ("current", "membrane"), ("regular", "count")])
def test_gaussian_model_matches_event_engine(encoding, readout):
    model, x = gaussian_model(encoding, readout)
    enc = evsnn.encode(model, x, steps=30, seed=1)
    a = simulate(model, enc, dtype="float64", record="all", options=EXACT_EVENT)
    b = simulate(model, enc, engine="torch", dtype="float64", record="all")
    assert a.spike_counts["conv"].sum() > 0 and a.spike_counts["fc"].sum() > 0
    assert a.spike_counts["out"].sum() > 0 if readout == "count" else np.abs(a.output).max() > 0.1
    results_equal(a, b, atol=1e-12)


@pytest.fixture(scope="module")
def diehl_models():
    """The Diehl MLP and CNN (untrained weights from their seeds), converted with data-based normalization on
    MNIST images, in float64, and 6 test images."""
    data = mnist_split(n_train=200, dtype=np.float64)
    models = {name: evsnn.convert(build(seed=0), input_shape=(1, 28, 28), norm="data", calibration=data.x_train,
                                  input_encoding="poisson")
              for name, build in (("mlp", diehl_mlp), ("cnn", diehl_cnn))}
    return models, data.x_test[:6]


@pytest.mark.parametrize("encoding", ["poisson", "current"])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_diehl_models_match_event_engine(diehl_models, name, encoding):
    models, x = diehl_models
    model = models[name]
    enc = evsnn.encode(model, x, steps=40, encoding=encoding, seed=2)
    a = simulate(model, enc, dtype="float64", record="all", options=EXACT_EVENT)
    b = simulate(model, enc, engine="torch", dtype="float64", record="all", batch_size=4)
    for p in model.populations:
        assert a.spike_counts[p.name].sum() > 0, f"{p.name} silent: the comparison would be vacuous"
    results_equal(a, b)


def test_float32_agrees_with_event_engine_predictions(diehl_models):
    models, x = diehl_models
    a = simulate(models["cnn"], x, steps=40, seed=2)
    b = simulate(models["cnn"], x, steps=40, seed=2, engine="torch")
    assert b.settings["dtype"] == "float32"
    np.testing.assert_array_equal(a.predictions, b.predictions)
    total = sum(int(c.sum()) for c in a.spike_counts.values())
    differ = sum(int(np.abs(a.spike_counts[k] - b.spike_counts[k]).sum()) for k in a.spike_counts)
    assert differ <= 0.01 * total, f"{differ} of {total} spikes differ in float32"


@pytest.mark.parametrize("encoding,readout", [("current", "count"), ("poisson", "membrane")])
def test_results_do_not_depend_on_batch_size_or_threads(encoding, readout):
    model, x = gaussian_model(encoding, readout)
    runs = [simulate(model, x[:5], steps=20, engine="torch", record="all", batch_size=bs, threads=th)
            for bs, th in ((1, 1), (2, 2), (5, 1), (5, 2))]
    assert runs[0].spike_counts["fc"].sum() > 0
    for other in runs[1:]:
        results_equal(runs[0], other)


# ============================================================================================
# Brian2, through validate
# ============================================================================================
@pytest.mark.brian2
@pytest.mark.parametrize("case,encoding", [("delays_bias", "regular"), ("residual", "poisson"), ("conv", "current")])
def test_validate_against_brian2(case, encoding):
    model, x = CASES[case](encoding)
    report = evsnn.validate(model, x[:3], engines=("torch", "brian2"), steps=20, seed=3,
                            options={"brian2": {"codegen": "numpy"}})
    (comparison,) = report.comparisons
    assert report.identical, report.table()
    assert sum(p.spikes_a for p in comparison.populations) > 0


# ============================================================================================
# Devices, registry, errors
# ============================================================================================
@pytest.mark.parametrize("device,match", [("tpu", "device must be"), ("nonsense", "device must be"),
                                          (3.5, "device must be")])
def test_bad_device_is_an_engine_error(device, match):
    model, x = CASES["if_soft"]("poisson")
    with pytest.raises(EngineError, match=match):
        simulate(model, x, steps=5, engine="torch", options={"torch": {"device": device}})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_says_so():
    model, x = CASES["if_soft"]("poisson")
    with pytest.raises(EngineError, match="no CUDA device"):
        simulate(model, x, steps=5, engine="torch", options={"torch": {"device": "cuda"}})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("case", ["conv", "residual", "recurrent", "sparse", "membrane"])
def test_cuda_matches_reference(case):
    model, x = CASES[case]("poisson")
    res = simulate(model, x, steps=25, seed=3, engine="torch", dtype="float64", record="all",
                   options={"torch": {"device": "cuda"}})
    assert res.settings["device"].startswith("cuda")
    assert_matches(res, reference_run(model, x, 25, None, seed=3), model)


def test_registered_lazily_without_importing_torch():
    code = ("import sys, evsnn; from evsnn.engines import available_engines; "
            "assert 'torch' in available_engines(); assert 'torch' not in sys.modules; "
            "from evsnn.engines import get_engine; get_engine('TORCH'); assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert "torch" in available_engines() and get_engine("torch").name == "torch"


@pytest.mark.parametrize("shape,stride", [((3, 2, 9, 8), (2, 2)), ((2, 3, 7, 10), (3, 2)), ((2, 1, 6, 6), (1, 3))])
def test_sum_pool_is_torch_pooling_without_the_division(shape, stride):
    """The pooled form of a folded conv (both engines' dense products): block sums, the partial edge dropped."""
    import torch.nn.functional as F

    from evsnn.engines.torch_ops import sum_pool

    x = (torch.rand(shape, generator=torch.Generator().manual_seed(0)) < 0.4).double()
    pooled = sum_pool(x, stride)
    assert pooled.abs().sum() > 0
    assert torch.equal(pooled, F.avg_pool2d(x, stride, divisor_override=1))
