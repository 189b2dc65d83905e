"""Direct training with surrogate gradients (evsnn.training.snn, evsnn.training.surrogate).

- each surrogate fires exactly where the engines' threshold rule fires, and its gradient is the documented
  pseudo-derivative (against the formula, for the potential and the threshold);
- the training network's forward pass is the torch engine's run, bit for bit (one implementation);
- exporting is exact (a folded pooling's kernel rebuilt), and a trained SRM network learns, exports, and runs
  identically on the event engine, the torch engine and Brian2 in float64; the same seed gives the same weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import evsnn
from evsnn.engines.neurons import NeuronParams
from evsnn.io.datasets import mnist_split
from evsnn.model import Population
from evsnn.training import SURROGATES, SpikingNetwork, surrogate, train_classifier, train_snn

FORMULAS = {  # the pseudo-derivatives as the module docstring writes them, at u = v - theta
    "slayer": lambda u: np.exp(-10 * np.abs(u)) / 10,
    "fast_sigmoid": lambda u: 1 / (1 + 25 * np.abs(u)) ** 2,
    "arctan": lambda u: 1 / (1 + (math.pi * u) ** 2),
}


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_surrogate_fires_where_the_engines_do_and_has_the_documented_gradient(name, strict):
    assert set(FORMULAS) == set(SURROGATES)
    theta = np.linspace(0.5, 1.5, 7)
    p = NeuronParams.from_population(Population("p", (7,), evsnn.NeuronSpec("if", threshold=theta,
                                                                              strict_threshold=strict)),
                                     np.dtype("float64"), engine="torch", dt=1e-3).to_torch()
    p = p.__class__(**{**p.__dict__, "threshold": p.threshold.clone().requires_grad_(True)})
    v = torch.tensor(np.concatenate([np.random.default_rng(0).uniform(0, 2, (3, 7)), theta[None]]),
                     requires_grad=True)
    spikes = surrogate(name)(v, p)
    want = (v > p.threshold) if strict else (v >= p.threshold)
    assert torch.equal(spikes, want.double()) and spikes[-1].sum() == (0 if strict else 7)  # v = theta exactly
    (spikes * torch.arange(1.0, 8.0, dtype=torch.float64)).sum().backward()
    u = (v - p.threshold).detach().numpy()
    expected = FORMULAS[name](u) * np.arange(1.0, 8.0)
    np.testing.assert_allclose(v.grad.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(p.threshold.grad.numpy(), -expected.sum(axis=0), rtol=1e-12)


def test_unknown_surrogate_is_named():
    with pytest.raises(ValueError, match="name must be one of 'slayer', 'fast_sigmoid', 'arctan', got 'relu'"):
        surrogate("relu")


def small_mlp(neuron: evsnn.NeuronSpec, hidden: int = 64, seed: int = 0, gain: float = 1.0) -> evsnn.SpikingModel:
    """A 784-hidden-10 network with torch's default initialisation (times ``gain``) and a hidden bias."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ann = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden, bias=True), nn.ReLU(), nn.Linear(hidden, 10, bias=False))
    with torch.no_grad():
        for layer in (ann[1], ann[3]):
            layer.weight.mul_(gain)
    return evsnn.convert(ann, input_shape=(1, 28, 28), norm="none").with_neuron(neuron)


@pytest.fixture(scope="module")
def data():
    return mnist_split(n_train=1000)


def test_training_forward_is_the_torch_engine_run(data):
    """With analog input both run the same step function: the logits are the engine's spike counts exactly."""
    model = small_mlp(evsnn.NeuronSpec("srm", tau_syn=1e-3, tau_refr=2e-3, refractory_amplitude=2.0), gain=4.0)
    x = data.x_test[:16]
    with torch.no_grad():
        logits = SpikingNetwork(model, steps=20, encoding="current")(torch.as_tensor(x))
    res = evsnn.simulate(model, x, steps=20, engine="torch", encoding="current", batch_size=16)
    assert logits.sum() > 0 and res.spike_counts["fc1"].sum() > 0
    np.testing.assert_array_equal(logits.numpy(), res.output.sum(axis=1))


def test_export_is_exact_for_a_folded_pooling():
    """The pooled product trains one tap per block; exporting rebuilds the folded kernel bit for bit."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        ann = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 5, 3), nn.ReLU(),
                            nn.Flatten(), nn.Linear(5 * 4 * 4, 3))
    model = evsnn.convert(ann, input_shape=(1, 14, 14), norm="none")
    net = SpikingNetwork(model, steps=3)
    assert net.network.products[model.projections[1].name].pooled
    assert net.to_model().replace(provenance=model.provenance) == model
    assert len(list(net.parameters())) == 3 + 3  # three weights, three biases (two conv, one linear)


@pytest.fixture(scope="module")
def trained(data):
    model = small_mlp(evsnn.NeuronSpec("srm", tau_syn=1e-3, tau_refr=1e-3, refractory_amplitude=2.0))
    return model, train_snn(model, data.x_train, data.y_train, steps=10, spike_fn="arctan", epochs=2, lr=5e-3,
                            seed=3)


def test_trained_srm_network_learns_and_runs_identically_on_every_engine(data, trained, tmp_path):
    model, (net, losses) = trained
    assert losses[-1] < losses[0]
    accuracy = evsnn.simulate(net, data.x_test[:300], steps=10, encoding="current").accuracy(data.y_test[:300])
    assert accuracy > 0.75, f"trained SRM MLP reaches only {accuracy:.3f}"
    before = evsnn.simulate(model, data.x_test[:300], steps=10, encoding="current").accuracy(data.y_test[:300])
    assert accuracy > before + 0.3
    assert net.provenance["training"]["surrogate"] == "arctan" and net.provenance["training"]["seed"] == 3
    evsnn.save(net, tmp_path / "trained.h5")
    net = evsnn.load(tmp_path / "trained.h5")
    for engines in (("event", "torch"), ("event", "brian2")):
        report = evsnn.validate(net, data.x_test[:4], engines=engines, steps=10, encoding="current")
        assert report.identical, report.table()


def test_the_same_seed_trains_the_same_weights(data, trained):
    model, (net, _) = trained
    again, _ = train_snn(model, data.x_train, data.y_train, steps=10, spike_fn="arctan", epochs=2, lr=5e-3, seed=3)
    assert again == net


class Interrupt(Exception):
    pass


def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_weights(data, tmp_path):
    """A run killed in its second epoch and started again with the same checkpoint ends with the weights of an
    uninterrupted run (Poisson input: the encoder's random state is part of the checkpoint)."""
    model = small_mlp(evsnn.NeuronSpec("lif", beta=0.9), hidden=32).replace(
        input=evsnn.InputSpec((1, 28, 28), encoding="poisson"))
    x, y = data.x_train[:192], data.y_train[:192]
    settings = dict(epochs=3, batch_size=64, lr=5e-3, seed=4)
    reference = SpikingNetwork(model, steps=6, spike_fn="arctan", seed=4)
    want = train_classifier(reference, x, y, progress=False, **settings)

    net = SpikingNetwork(model, steps=6, spike_fn="arctan", seed=4)
    calls = {"n": 0}
    forward = net.forward

    def dying(xb):
        calls["n"] += 1
        if calls["n"] == 5:  # the second batch of the second epoch
            raise Interrupt
        return forward(xb)

    net.forward = dying
    path = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        train_classifier(net, x, y, progress=False, checkpoint=path, **settings)
    assert path.exists() and [f.name for f in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left
    resumed = SpikingNetwork(model, steps=6, spike_fn="arctan", seed=4)
    losses = train_classifier(resumed, x, y, progress=False, checkpoint=path, **settings)
    assert losses == want and len(set(want)) == 3
    assert resumed.to_model() == reference.to_model()
    assert resumed.to_model() != model.replace(provenance=resumed.to_model().provenance)
    with pytest.raises(ValueError, match=r"run\.pt.*other settings"):
        train_classifier(SpikingNetwork(model, steps=6), x, y, progress=False, checkpoint=path, epochs=4,
                         batch_size=64, lr=5e-3, seed=4)
    other = small_mlp(evsnn.NeuronSpec("lif", beta=0.9), hidden=16)
    with pytest.raises(ValueError, match=r"run\.pt.*another network's parameters"):
        train_classifier(SpikingNetwork(other, steps=6), x, y, progress=False, checkpoint=path, **settings)
    with pytest.raises(evsnn.errors.InputError, match="checkpoint .*nowhere.*does not exist"):
        train_classifier(SpikingNetwork(model, steps=6), x, y, progress=False,
                         checkpoint=tmp_path / "nowhere" / "run.pt", **settings)
    (tmp_path / "torn.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"torn\.pt.*cannot be read"):
        train_classifier(SpikingNetwork(model, steps=6), x, y, progress=False, checkpoint=tmp_path / "torn.pt",
                         **settings)


def test_trained_thresholds_are_exported_and_run_as_trained(data):
    """Per-layer thresholds as parameters: they move in training, the exported NeuronSpecs carry them, and the
    exported model runs on the torch engine to the network's own logits bit for bit (event = torch in float64)."""
    model = small_mlp(evsnn.NeuronSpec("srm", tau_syn=1e-3, tau_refr=1e-3, refractory_amplitude=2.0,
                                       v_init_fraction=0.25), hidden=32)
    net = SpikingNetwork(model, steps=8, spike_fn="arctan", encoding="current", train_thresholds=True)
    assert sorted(net.thresholds) == ["fc1", "fc2"]
    train_classifier(net, data.x_train[:256], data.y_train[:256], epochs=2, batch_size=64, lr=1e-2, seed=1,
                     progress=False)
    theta = {name: float(p.detach()) for name, p in net.thresholds.items()}
    assert all(abs(t - 1.0) > 1e-3 for t in theta.values()), theta
    trained = net.to_model()
    for pop in trained.populations:
        assert pop.neuron.threshold == np.float32(theta[pop.name])
    x = data.x_test[:32]
    with torch.no_grad():
        logits = net(torch.as_tensor(x))
    res = evsnn.simulate(trained, x, steps=8, engine="torch", encoding="current", batch_size=32)
    assert logits.sum() > 0
    np.testing.assert_array_equal(logits.numpy(), res.output.sum(axis=1))
    report = evsnn.validate(trained, x[:4], engines=("event", "torch"), steps=8, encoding="current")
    assert report.identical, report.table()
    with pytest.raises(ValueError, match="train_thresholds needs discrete neurons"):
        SpikingNetwork(model.with_neuron(evsnn.NeuronSpec("cuba_lif", tau_mem=2e-2, tau_syn=5e-3, r=1.0)), steps=4,
                       train_thresholds=True)
