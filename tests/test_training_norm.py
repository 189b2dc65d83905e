"""Seed 003's PSP normalization (PSP-BN, PSP-LN) and BN, tdBN and BNTT of the membrane input in training, and their
export.

The reference computes each normalization in numpy from its definition (the PSP as a direct
convolution of the spikes with the sampled kernel, eps((k+1) dt), as tests/test_srm.py
documents; the moments per channel over the axes seed 003 names), folds it into the weights of
a copy of the model, and runs that with test_srm's direct-sum SRM reference: the training
forward pass must give the same spikes, layer by layer. BNTT's per-step statistics fold into no
weights: its reference normalizes each population's summed input in the SRM reference itself.
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


def assert_forward_is_the_reference(net: SpikingNetwork, x: np.ndarray, spikes: dict) -> None:
    """The network's logits and hidden firing rates on ``x`` are the reference's ``spikes``, which must fire in a
    range where a wrong normalization shows (liveness, judged on the reference)."""
    for name, s in spikes.items():
        assert 0.02 < s.mean() < 0.6, f"test model badly scaled: {name} fires at {s.mean():.3f}"
    with torch.no_grad():
        logits = net(torch.as_tensor(x))
    np.testing.assert_array_equal(logits.numpy(), spikes["out"].sum(axis=1))
    for name in ("h1", "h2"):
        assert net.rates[name] == pytest.approx(spikes[name].mean(), abs=1e-12)


@pytest.mark.parametrize("norm", ["psp-bn", "bn"])
def test_training_forward_normalizes_as_defined(norm):
    model = conv_srm_model()
    x = np.random.default_rng(1).uniform(0, 1, (BATCH, 1, 6, 6))
    net = SpikingNetwork(model, steps=STEPS, norm=norm, norm_lambda=LAM, dtype="float64", seed=5)
    enc = evsnn.encode(model, x, steps=STEPS, seed=int(np.random.default_rng(5).integers(2 ** 62)))
    folded, spikes = fold_reference(model, enc, norm)
    net.train()
    assert_forward_is_the_reference(net, x, spikes)
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
    with pytest.raises(ValueError, match="norm must be None or one of 'psp-bn', 'psp-ln', 'bn', 'tdbn', 'bntt', "
                                         "got 'layer'"):
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


ALPHA, THETA = 0.75, 1.25  # tdBN's initial gamma, 0.9375, is exact in float32


def channels_of_shape(shape: tuple) -> int:
    return shape[0] if len(shape) == 3 else int(np.prod(shape))


def batch_norm_of(current: np.ndarray, shape: tuple, gamma: np.ndarray, beta, eps: float, *, per_step: bool,
                  stats: tuple | None = None) -> tuple[np.ndarray, tuple]:
    """``current`` (n, steps, size) normalized per channel with its mean and biased variance over (N, T, H*W), or
    over (N, H*W) at each step (``per_step``), or with the given ``stats``; then ``gamma``, ``beta`` ((C,), or
    (steps, C) per step; ``beta`` None: none). Returns it and the (mean, var) used, (C,) or (steps, C)."""
    c = channel_view(current, shape)
    axes = (0, 3) if per_step else (0, 1, 3)
    mean, var = stats if stats is not None else (c.mean(axis=axes), c.var(axis=axes))
    as_c = (lambda a: np.asarray(a)[None, :, :, None]) if per_step else (lambda a: np.asarray(a)[None, None, :, None])
    out = as_c(gamma) * (c - as_c(mean)) / np.sqrt(as_c(var) + eps)
    if beta is not None:
        out = out + as_c(beta)
    return out.reshape(current.shape), (mean, var)


def tdbn_model() -> SpikingModel:
    model = conv_srm_model()
    return model.with_neuron(dataclasses.replace(model.populations[0].neuron, threshold=THETA))


def test_tdbn_scales_the_normalized_input_by_alpha_theta():
    """tdBN: gamma starts at alpha * theta per channel; the forward pass is that gamma times the input normalized
    per channel over (N, T, H, W), plus beta."""
    model = tdbn_model()
    x = np.random.default_rng(1).uniform(0, 1, (BATCH, 1, 6, 6))
    net = SpikingNetwork(model, steps=STEPS, norm="tdbn", norm_alpha=ALPHA, dtype="float64", seed=5)
    betas = {"h1": np.array([0.05, -0.1, 0.2], dtype=np.float32), "h2": np.linspace(-0.2, 0.2, 8, dtype=np.float32)}
    for name, beta in betas.items():
        norm = net.input_norms[name]
        np.testing.assert_array_equal(norm.gamma.detach().numpy(), np.full(norm.channels, ALPHA * THETA))
        with torch.no_grad():
            norm.beta.copy_(torch.as_tensor(beta))
    enc = evsnn.encode(model, x, steps=STEPS, seed=int(np.random.default_rng(5).integers(2 ** 62)))

    def transform(pop, current):
        if pop.name not in betas:
            return current
        return batch_norm_of(current, pop.shape, np.full(channels_of_shape(pop.shape), ALPHA * THETA),
                             betas[pop.name].astype(float), 1e-5, per_step=False)[0]

    spikes = srm_reference(model, enc, BATCH, transform)["spikes"]
    assert_forward_is_the_reference(net, x, spikes)
    one = SpikingNetwork(model, steps=STEPS, norm="tdbn")  # alpha 1 by default: gamma = theta
    np.testing.assert_array_equal(one.input_norms["h2"].gamma.detach().numpy(), np.full(8, THETA))
    with pytest.raises(ValueError, match="tdBN's alpha must be positive, got 0"):
        SpikingNetwork(model, steps=STEPS, norm="tdbn", norm_alpha=0)
    mixed = model.replace(populations=[dataclasses.replace(model.populations[0], neuron=dataclasses.replace(
        model.populations[0].neuron, threshold=np.linspace(1, 2, 48).reshape(3, 4, 4)))] + list(model.populations[1:]))
    with pytest.raises(ValueError, match="population 'h1' has different thresholds within a channel"):
        SpikingNetwork(mixed, steps=STEPS, norm="tdbn")


@pytest.mark.parametrize("norm", ["bn", "tdbn"])
def test_bn_and_tdbn_fold_on_export_and_run_as_the_eval_forward(norm):
    """(td)BN's inference statistics fold into the incoming weights' rows (gamma / sigma) and the bias
    (beta - gamma mu / sigma): the exported model runs on the event engine to the network's eval-mode spikes."""
    model = tdbn_model()
    net = SpikingNetwork(model, steps=STEPS, norm=norm, norm_alpha=ALPHA, dtype="float64", seed=5)
    rng = np.random.default_rng(1)
    with torch.no_grad():
        for _ in range(3):  # running statistics from three batches
            net(torch.as_tensor(rng.uniform(0, 1, (BATCH, 1, 6, 6))))
        net.input_norms["h2"].beta.copy_(torch.linspace(-0.2, 0.2, 8))
    net.eval()
    exported = net.to_model()
    gamma = ALPHA * THETA if norm == "tdbn" else 1.0
    for name, pr in (("h1", "c1"), ("h2", "d2")):
        bn = net.input_norms[name]
        mean, var = bn.running_mean.numpy(), bn.running_var.numpy()
        assert not np.allclose(mean, 0) and not np.allclose(var, 1)
        gain = gamma / np.sqrt(var + 1e-5)
        weight = ops(model)[pr].weight * (gain[:, None, None, None] if name == "h1" else gain[:, None])
        np.testing.assert_allclose(ops(exported)[pr].weight, weight, rtol=1e-13)
        shift = bn.beta.detach().double().numpy() - gain * mean
        bias = np.repeat(shift, bn.positions) + (0 if model.population(name).bias is None
                                                 else model.population(name).bias.reshape(-1))
        np.testing.assert_allclose(exported.population(name).bias.reshape(-1), bias, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(ops(exported)["d3"].weight, ops(model)["d3"].weight)
    assert exported.provenance["training"]["norm"] == norm
    assert exported.provenance["training"].get("norm_alpha") == (ALPHA if norm == "tdbn" else None)
    x_eval = rng.uniform(0, 1, (BATCH, 1, 6, 6))
    with torch.no_grad():
        logits = net(torch.as_tensor(x_eval))
    seeds = np.random.default_rng(5)  # the network's input seeds: one per forward pass, the fifth for this one
    for _ in range(4):
        seed = int(seeds.integers(2 ** 62))
    enc = evsnn.encode(exported, x_eval, steps=STEPS, seed=seed)
    res = evsnn.simulate(exported, enc, engine="event", dtype="float64")
    assert logits.sum() > 0 and res.spike_counts["h2"].sum() > 0
    np.testing.assert_array_equal(logits.numpy(), res.output.sum(axis=1))


def test_bntt_normalizes_each_step_with_its_own_statistics_and_gain():
    """BNTT: at each step t, the input normalized per channel over (N, H, W) with that step's statistics, times
    that step's gamma, no beta; the running statistics are per step, and eval mode uses them."""
    model = conv_srm_model()
    x = np.random.default_rng(1).uniform(0, 1, (BATCH, 1, 6, 6))
    net = SpikingNetwork(model, steps=STEPS, norm="bntt", dtype="float64", seed=5)
    rng = np.random.default_rng(3)
    gammas = {name: rng.uniform(0.5, 1.5, (STEPS, channels_of_shape(model.population(name).shape)))
              .astype(np.float32) for name in ("h1", "h2")}
    for name, gamma in gammas.items():
        norm = net.input_norms[name]
        assert norm.beta is None and norm.eps == 1e-4 and norm.running_mean.shape == (STEPS, norm.channels)
        np.testing.assert_array_equal(norm.gamma.detach().numpy(), np.ones((STEPS, norm.channels)))
        with torch.no_grad():
            norm.gamma.copy_(torch.as_tensor(gamma))
    seeds = np.random.default_rng(5)
    batch_stats = {}

    def transform(pop, current, stats=None):
        if pop.name not in gammas:
            return current
        out, batch_stats[pop.name] = batch_norm_of(current, pop.shape, gammas[pop.name].astype(float), None, 1e-4,
                                                   per_step=True, stats=None if stats is None else stats[pop.name])
        return out

    enc = evsnn.encode(model, x, steps=STEPS, seed=int(seeds.integers(2 ** 62)))
    spikes = srm_reference(model, enc, BATCH, transform)["spikes"]
    assert_forward_is_the_reference(net, x, spikes)
    running = {}
    for name, (mean, var) in batch_stats.items():  # momentum 0.1 from (0, 1), one (steps, C) entry per step
        assert np.ptp(mean, axis=0).max() > 0.05, "the steps' statistics do not differ: the test cannot tell"
        running[name] = (0.1 * mean, 0.9 + 0.1 * var)
        np.testing.assert_allclose(net.input_norms[name].running_mean.numpy(), running[name][0], rtol=1e-12)
        np.testing.assert_allclose(net.input_norms[name].running_var.numpy(), running[name][1], rtol=1e-12)

    net.eval()
    x_eval = np.random.default_rng(2).uniform(0, 1, (BATCH, 1, 6, 6))
    with torch.no_grad():
        logits = net(torch.as_tensor(x_eval))
    enc = evsnn.encode(model, x_eval, steps=STEPS, seed=int(seeds.integers(2 ** 62)))
    spikes = srm_reference(model, enc, BATCH, lambda pop, current: transform(pop, current, running))["spikes"]
    assert spikes["h2"].sum() > 0 and spikes["out"].sum() > 0
    np.testing.assert_array_equal(logits.numpy(), spikes["out"].sum(axis=1))


def test_bntt_runs_only_for_its_steps_and_is_not_exported():
    model = conv_srm_model()
    x = torch.as_tensor(np.random.default_rng(1).uniform(0, 1, (BATCH, 1, 6, 6)))
    net = SpikingNetwork(model, steps=STEPS, norm="bntt", dtype="float64")
    with pytest.raises(ConversionError, match="BNTT .*each time step.*cannot be exported.*norm='bn', 'tdbn' or 'psp-bn'"):
        net.to_model()
    net.steps = STEPS + 2
    with pytest.raises(ValueError, match=f"BNTT has statistics and gains for each of its {STEPS} steps; this run has "
                                         f"{STEPS + 2} steps"):
        net(x)
    other = SpikingNetwork(model, steps=8, norm="bntt", dtype="float64")
    with pytest.raises(RuntimeError, match=f"the state is for {STEPS} steps, this network runs 8: build it with "
                                           f"steps={STEPS}"):
        other.load_state_dict(net.state_dict())
    with pytest.raises(ConversionError, match="train_snn: .*norm='bntt' network cannot be exported"):
        train_snn(model, x.numpy(), np.zeros(BATCH, dtype=int), steps=STEPS, norm="bntt")
