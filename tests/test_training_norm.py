"""Seed 003's PSP normalization (PSP-BN, PSP-LN) and BN of the membrane input in training, and their export.

The reference computes each normalization in numpy from its definition (the PSP as a direct
convolution of the spikes with the sampled kernel, eps((k+1) dt), as tests/test_srm.py
documents; the moments per channel over the axes seed 003 names), folds it into the weights of
a copy of the model, and runs that with test_srm's direct-sum SRM reference: the training
forward pass must give the same spikes, layer by layer.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import evsnn
from evsnn import Conv2d, Dense, InputSpec, NeuronSpec, Population, Projection, SpikingModel
from evsnn.errors import ConversionError
from evsnn.io.datasets import mnist_split
from evsnn.model import INPUT
from evsnn.training import SpikingNetwork, train_snn
from test_srm import srm_reference

STEPS, BATCH, LAM = 12, 6, 1e-3


def conv_srm_model(seed: int = 0) -> SpikingModel:
    """Poisson input (1, 6, 6) -> conv 3x3 (3, 4, 4) -> dense 8 -> dense 4, SRM neurons throughout."""
    rng = np.random.default_rng(seed)
    spec = NeuronSpec("srm", threshold=1.0, tau_syn=2e-3, tau_refr=2e-3, refractory_amplitude=2.0)
    return SpikingModel(
        input=InputSpec((1, 6, 6), encoding="poisson"),
        populations=[Population("h1", (3, 4, 4), spec), Population("h2", (8,), spec, bias=rng.normal(0, 0.1, 8)),
                     Population("out", (4,), spec)],
        projections=[Projection("c1", INPUT, "h1", Conv2d(rng.normal(0.15, 0.3, (3, 1, 3, 3)), input_shape=(1, 6, 6))),
                     Projection("d2", "h1", "h2", Dense(rng.normal(0.05, 0.25, (8, 48)))),
                     Projection("d3", "h2", "out", Dense(rng.normal(0.2, 0.5, (4, 8))))],
    )


def ops(model: SpikingModel) -> dict:
    return {pr.name: pr.op for pr in model.projections}


def psp_of(spikes: np.ndarray, spec: NeuronSpec, dt: float) -> np.ndarray:
    """a[t] = sum_k eps((k+1) dt) s[t-k] of spikes (n, steps, size), by direct convolution."""
    steps = spikes.shape[1]
    s = (np.arange(steps) + 1) * dt
    kernel = (s / spec.tau_syn) * np.exp(1 - s / spec.tau_syn)
    return np.stack([np.einsum("k,bkn->bn", kernel[:t + 1], spikes[:, t::-1].astype(float)) for t in range(steps)],
                    axis=1)


def channel_view(x: np.ndarray, shape: tuple) -> np.ndarray:
    """(n, steps, size) -> (n, steps, channels, positions)."""
    channels = shape[0] if len(shape) == 3 else int(np.prod(shape))
    return x.reshape(*x.shape[:2], channels, -1)


def fold_reference(model: SpikingModel, enc, norm: str) -> tuple[SpikingModel, dict]:
    """The model with each normalization of the training forward pass folded in, computed from its definition
    layer by layer (batch statistics); the reference spikes of every population."""
    n = enc.n_samples
    inp = enc.spikes(0, n).toarray().reshape(STEPS, n, -1).transpose(1, 0, 2)
    for pop in model.populations[:-1]:  # the output is not normalized
        spikes = srm_reference(model, enc, n)["spikes"]
        projections = []
        for pr in model.projections:
            if pr.target != pop.name:
                projections.append(pr)
                continue
            src = inp if pr.source == INPUT else spikes[pr.source]
            shape = model.input.shape if pr.source == INPUT else model.population(pr.source).shape
            weight = pr.op.weight.astype(float)
            if norm == "psp-bn":  # eq. 19-20 over (W, H, N, T) per input channel, a factor per column
                moment = (channel_view(psp_of(src, pop.neuron, model.dt), shape) ** 2).mean(axis=(0, 1, 3))
                factor = 1 / np.sqrt(moment + LAM)
                weight = weight * (factor[None, :, None, None] if weight.ndim == 4
                                   else np.repeat(factor, channel_view(src, shape).shape[-1])[None, :])
            if norm == "psp-ln":  # over (W, H, C, T) per sample: ``enc`` holds one sample
                assert n == 1
                weight = weight / np.sqrt((psp_of(src, pop.neuron, model.dt) ** 2).mean() + LAM)
            projections.append(dataclasses.replace(pr, op=dataclasses.replace(pr.op, weight=weight)))
        if norm == "bn":  # the summed synaptic input, mean and variance per output channel over (W, H, N, T)
            current = sum(pr.op.forward(
                (inp if pr.source == INPUT else spikes[pr.source]).reshape(n * STEPS, -1).astype(float)
            ).reshape(n, STEPS, -1) for pr in model.projections if pr.target == pop.name)
            c = channel_view(current, pop.shape)
            mean, var = c.mean(axis=(0, 1, 3)), c.var(axis=(0, 1, 3))
            gain = 1 / np.sqrt(var + 1e-5)
            positions = c.shape[-1]
            projections = [dataclasses.replace(pr, op=dataclasses.replace(pr.op, weight=pr.op.weight * (
                gain[:, None, None, None] if pr.op.weight.ndim == 4 else np.repeat(gain, positions)[:, None])))
                if pr.target == pop.name else pr for pr in projections]
            bias = np.repeat(-gain * mean, positions) + (0 if pop.bias is None else pop.bias.reshape(-1))
            model = model.replace(populations=[dataclasses.replace(p, bias=bias.reshape(p.shape))
                                               if p.name == pop.name else p for p in model.populations])
        model = model.replace(projections=projections)
    return model, srm_reference(model, enc, n)["spikes"]


@pytest.mark.parametrize("norm", ["psp-bn", "bn"])
def test_training_forward_normalizes_as_defined(norm):
    model = conv_srm_model()
    x = np.random.default_rng(1).uniform(0, 1, (BATCH, 1, 6, 6))
    net = SpikingNetwork(model, steps=STEPS, norm=norm, norm_lambda=LAM, dtype="float64", seed=5)
    enc = evsnn.encode(model, x, steps=STEPS, seed=int(np.random.default_rng(5).integers(2 ** 62)))
    folded, spikes = fold_reference(model, enc, norm)
    for name, s in spikes.items():  # liveness, judged on the reference
        assert 0.02 < s.mean() < 0.6, f"test model badly scaled: {name} fires at {s.mean():.3f}"
    net.train()
    with torch.no_grad():
        logits = net(torch.as_tensor(x))
    np.testing.assert_array_equal(logits.numpy(), spikes["out"].sum(axis=1))
    for name in ("h1", "h2"):
        assert net.rates[name] == pytest.approx(spikes[name].mean(), abs=1e-12)
    assert sorted(net.normalized) == ["h1", "h2"]


def test_psp_ln_normalizes_each_sample_over_its_whole_run():
    """PSP-LN: each sample's divisor from its own PSP over all channels and steps (regular input: the same spikes
    for a sample alone as in the batch)."""
    model = conv_srm_model()
    model = model.replace(input=dataclasses.replace(model.input, encoding="regular"))
    x = np.random.default_rng(1).uniform(0, 1, (BATCH, 1, 6, 6))
    net = SpikingNetwork(model, steps=STEPS, norm="psp-ln", norm_lambda=LAM, dtype="float64")
    enc = evsnn.encode(model, x, steps=STEPS)
    want = []
    for b in range(BATCH):
        _, spikes = fold_reference(model, enc.select(b, b + 1), "psp-ln")
        assert spikes["h2"].sum() > 0
        want.append(spikes["out"][0].sum(axis=0))
    for mode in (net.train, net.eval):  # no running statistics: the same in both modes
        mode()
        with torch.no_grad():
            logits = net(torch.as_tensor(x))
        np.testing.assert_array_equal(logits.numpy(), np.array(want))
    assert np.array(want).sum() > 0
    with pytest.raises(ConversionError, match="PSP-LN.*future steps"):
        net.to_model()


def test_normalization_refuses_what_it_cannot_normalize():
    rng = np.random.default_rng(0)
    spec = NeuronSpec("lif", beta=0.9)
    recurrent = SpikingModel(
        input=InputSpec((4,), encoding="poisson"),
        populations=[Population("h", (5,), spec), Population("out", (2,), spec)],
        projections=[Projection("a", INPUT, "h", Dense(rng.normal(size=(5, 4)))),
                     Projection("rec", "h", "h", Dense(rng.normal(size=(5, 5))), delay=1),
                     Projection("b", "h", "out", Dense(rng.normal(size=(2, 5))))])
    with pytest.raises(ValueError, match="feed-forward"):
        SpikingNetwork(recurrent, steps=4, norm="psp-bn")
    SpikingNetwork(recurrent, steps=4)  # trains without normalization, step by step
    with pytest.raises(ValueError, match="norm must be None or one of 'psp-bn', 'psp-ln', 'bn', got 'layer'"):
        SpikingNetwork(conv_srm_model(), steps=4, norm="layer")
    ode = conv_srm_model().with_neuron(NeuronSpec("cuba_lif", tau_mem=2e-2, tau_syn=5e-3, r=1.0))
    with pytest.raises(ValueError, match="population 'h1' has the ODE-form neuron 'cuba_lif'"):
        SpikingNetwork(ode, steps=4, norm="bn")


def test_running_statistics_are_what_eval_and_export_use():
    """Training updates PSP-BN's running moment (momentum 0.1 from 1); in eval mode the network divides by it,
    and the exported model (the divisor folded into the weights, eq. 17) runs to the same spikes on the event,
    torch and Brian2 engines."""
    model = conv_srm_model()
    x = np.random.default_rng(1).uniform(0, 1, (BATCH, 1, 6, 6))
    net = SpikingNetwork(model, steps=STEPS, norm="psp-bn", norm_lambda=LAM, dtype="float64", seed=5)
    enc = evsnn.encode(model, x, steps=STEPS, seed=int(np.random.default_rng(5).integers(2 ** 62)))
    inp = enc.spikes(0, BATCH).toarray().reshape(STEPS, BATCH, -1).transpose(1, 0, 2)
    with torch.no_grad():
        net(torch.as_tensor(x))
    moment = (psp_of(inp, model.population("h1").neuron, model.dt) ** 2).mean()
    assert net.psp_norms[net.psp_key["c1"]].running_moment.item() == pytest.approx(0.9 + 0.1 * moment, rel=1e-12)
    assert moment > 0.05

    net.eval()
    exported = net.to_model()
    factor = 1 / np.sqrt(net.psp_norms[net.psp_key["c1"]].running_moment.item() + LAM)
    np.testing.assert_allclose(ops(exported)["c1"].weight, ops(model)["c1"].weight * factor,
                               rtol=1e-14)
    np.testing.assert_array_equal(ops(exported)["d3"].weight, ops(model)["d3"].weight)
    assert exported.provenance["training"]["norm"] == "psp-bn"
    x_eval = np.random.default_rng(2).uniform(0, 1, (BATCH, 1, 6, 6))
    with torch.no_grad():
        logits = net(torch.as_tensor(x_eval))
    seeds = np.random.default_rng(5)  # the network's input seeds: one per forward pass
    seeds.integers(2 ** 62)
    enc = evsnn.encode(exported, x_eval, steps=STEPS, seed=int(seeds.integers(2 ** 62)))
    res = evsnn.simulate(exported, enc, engine="torch", dtype="float64")
    assert logits.sum() > 0 and res.spike_counts["h2"].sum() > 0
    np.testing.assert_array_equal(logits.numpy(), res.output.sum(axis=1))
    report = evsnn.validate(exported, enc, engines=("event", "torch"), dtype="float64")
    assert report.identical, report.table()
    report = evsnn.validate(exported, enc, engines=("event", "brian2"), dtype="float64")
    assert report.identical, report.table()


def test_trained_psp_bn_network_exports_and_runs_identically_on_every_engine(tmp_path):
    """Seed 003's target: an SRM network trained with PSP-BN, its statistics folded into the weights, runs to
    the same spikes on the event, torch and Brian2 engines in float64, and classifies as the network did."""
    data = mnist_split(n_train=1000)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ann = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(),
                                  torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    model = evsnn.convert(ann, input_shape=(1, 28, 28), norm="none").with_neuron(
        NeuronSpec("srm", tau_syn=1e-3, tau_refr=1e-3, refractory_amplitude=2.0))
    trained, losses = train_snn(model, data.x_train, data.y_train, steps=8, spike_fn="arctan", norm="psp-bn",
                                encoding="current", epochs=2, lr=5e-3, seed=1)
    assert losses[-1] < losses[0]
    assert trained.provenance["training"]["norm"] == "psp-bn"
    assert not np.array_equal(ops(trained)["fc2"].weight, ops(model)["fc2"].weight)
    x, y = data.x_test[:300], data.y_test[:300]
    accuracy = evsnn.simulate(trained, x, steps=8, encoding="current").accuracy(y)
    assert accuracy > 0.7, f"the PSP-BN SRM MLP reaches only {accuracy:.3f}"
    evsnn.save(trained, tmp_path / "psp_bn.h5")
    loaded = evsnn.load(tmp_path / "psp_bn.h5")
    for engines in (("event", "torch"), ("event", "brian2")):
        report = evsnn.validate(loaded, x[:4], engines=engines, steps=8, encoding="current")
        assert report.identical, report.table()
