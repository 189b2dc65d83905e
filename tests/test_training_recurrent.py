"""Seed 004's spiking LSTM-style layer: its equations against a numpy reference, its surrogate gradient by hand,
its refusal on export, and its operation counts against seed 004's eq. 1."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import evsnn
from evsnn import ConversionError, Conv2d, InputSpec, Population, Projection, SpikingModel
from evsnn.energy.counting import ann_ops_ir
from evsnn.training import train_classifier
from evsnn.training.recurrent import SpikingLSTM, SpikingLSTMClassifier, lstm_accumulates, lstm_ops


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def reference(spikes: np.ndarray, wx: np.ndarray, wh: np.ndarray, b: np.ndarray, theta: float):
    """The layer's equations (docs/training.md) in numpy, step by step: output spikes and o*tanh(c) per step."""
    d_h = wh.shape[1]
    h, c, out, values = np.zeros(d_h), np.zeros(d_h), [], []
    for s in spikes:
        z = wx @ s + wh @ h + b
        i, f, g, o = sigmoid(z[:d_h]), sigmoid(z[d_h:2 * d_h]), np.tanh(z[2 * d_h:3 * d_h]), sigmoid(z[3 * d_h:])
        c = f * c + i * g
        v = o * np.tanh(c)
        h = (v >= theta).astype(np.float64)
        out.append(h)
        values.append(v)
    return np.array(out), np.array(values)


def test_forward_is_the_documented_equations():
    layer = SpikingLSTM(5, 4, threshold=0.3, seed=3).double()
    with torch.no_grad():  # weights large enough that the cell saturates and spikes
        for p in layer.parameters():
            p.mul_(6)
    rng = np.random.default_rng(0)
    spikes = (rng.random((8, 3, 5)) < 0.5).astype(np.float64)
    out = layer(torch.from_numpy(spikes)).detach().numpy()
    wx, wh, b = (p.detach().numpy() for p in (layer.weight_x, layer.weight_h, layer.bias))
    for n in range(3):
        want, values = reference(spikes[:, n], wx, wh, b, 0.3)
        assert np.abs(values - 0.3).min() > 1e-9  # no value within rounding of the threshold
        np.testing.assert_array_equal(out[:, n], want)
    assert 0 < out.mean() < 1  # the test sees spikes and silence


def test_surrogate_gradient_by_hand():
    """T = 1, one unit: c = σ(z_i) tanh(z_g) (c_0 = 0), v = σ(z_o) tanh(c), h = H(v - θ); the arctan's
    pseudo-derivative ρ(u) = 1 / (1 + (π u)²) (a = 2) stands in for H'. dh/db_o = ρ(v - θ) σ'(z_o) tanh(c)."""
    layer = SpikingLSTM(1, 1, threshold=0.5, spike_fn="arctan").double()
    z = {"i": 0.4, "f": -0.3, "g": 0.9, "o": 1.2}
    with torch.no_grad():
        layer.weight_x.zero_()
        layer.weight_h.zero_()
        layer.bias.copy_(torch.tensor([z["i"], z["f"], z["g"], z["o"]], dtype=torch.float64))
    layer(torch.zeros(1, 1, 1, dtype=torch.float64)).sum().backward()
    c = sigmoid(z["i"]) * math.tanh(z["g"])
    u = sigmoid(z["o"]) * math.tanh(c) - 0.5
    rho = 1 / (1 + (math.pi * u) ** 2)
    want = [rho * sigmoid(z["o"]) * (1 - (math.tanh(c)) ** 2) * sigmoid(z["i"]) * (1 - sigmoid(z["i"])) * math.tanh(z["g"]),
            0.0,  # f multiplies c_0 = 0
            rho * sigmoid(z["o"]) * (1 - (math.tanh(c)) ** 2) * sigmoid(z["i"]) * (1 - math.tanh(z["g"]) ** 2),
            rho * sigmoid(z["o"]) * (1 - sigmoid(z["o"])) * math.tanh(c)]
    np.testing.assert_allclose(layer.bias.grad.numpy(), want, rtol=1e-12)
    assert layer.weight_x.grad.abs().sum() == 0  # no input spike: no gradient to W_x


def test_initialisation_is_seeded():
    a, b, c = SpikingLSTM(6, 3, seed=1), SpikingLSTM(6, 3, seed=1), SpikingLSTM(6, 3, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.weight_x, c.weight_x)
    assert a.weight_x.abs().max() <= 1 / math.sqrt(3)  # nn.LSTMCell's bound, 1/sqrt(hidden)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    one, two = (SpikingLSTMClassifier((1, 28, 28), steps=2, encoder=8, hidden=4, seed=5) for _ in range(2))
    assert torch.equal(one(x), two(x))


@pytest.mark.parametrize("spikes, message", [
    (torch.full((2, 1, 3), 0.5), "every value 0 or 1"),
    (torch.zeros(2, 3), r"shape \(steps, batch, 3\)"),
    (torch.zeros(2, 1, 4), r"shape \(steps, batch, 3\)"),
])
def test_bad_input_is_refused(spikes, message):
    with pytest.raises(ValueError, match=message):
        SpikingLSTM(3, 2)(spikes)


@pytest.mark.parametrize("kwargs, message", [
    ({"in_features": 0, "hidden": 2}, "in_features must be a positive integer"),
    ({"in_features": 3, "hidden": 2.5}, "hidden must be a positive integer"),
    ({"in_features": 3, "hidden": 2, "threshold": 1.0}, r"threshold must be a number in \(0, 1\)"),
    ({"in_features": 3, "hidden": 2, "spike_fn": "relu"}, "Surrogate: name must be one of"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpikingLSTM(**kwargs)


def test_classifier_refuses_a_wrong_image_shape():
    with pytest.raises(ValueError, match="SpikingLSTMClassifier: input_shape"):
        SpikingLSTMClassifier((1, 0, 28), steps=2)
    with pytest.raises(ValueError, match="SpikingLSTMClassifier: steps must be a positive integer, got 0"):
        SpikingLSTMClassifier((1, 28, 28), steps=0)
    net = SpikingLSTMClassifier((1, 28, 28), steps=2, encoder=8, hidden=4)
    with pytest.raises(ValueError, match=r"input must have shape \(N, 1, 28, 28\), got \(2, 784\)"):
        net(torch.zeros(2, 784))


def test_classifier_trains(tmp_path):
    """A few hundred MNIST-like images of two separable classes: the loss falls and the layers spike."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 256)
    x = (rng.random((256, 1, 8, 8)) < 0.2).astype(np.float32)
    x[y == 1, :, :4] = 1  # class 1: the top half lit
    net = SpikingLSTMClassifier((1, 8, 8), steps=4, encoder=16, hidden=8, classes=2, seed=0)
    losses = train_classifier(net, x, y, epochs=4, batch_size=32, lr=1e-2, max_shift=0, seed=0, progress=False,
                              checkpoint=tmp_path / "run.pt")
    assert losses[-1] < 0.5 * losses[0]
    assert (net(torch.from_numpy(x)).argmax(1).numpy() == y).mean() > 0.9
    assert 0 < net.rates["lstm"] < 1 and 0 < net.rates["encoder"] < 1


# --- export --------------------------------------------------------------------------------------
def test_export_is_refused_with_the_layer_named():
    net = SpikingLSTMClassifier((1, 28, 28), steps=2, encoder=8, hidden=4)
    with pytest.raises(ConversionError, match=r"Layer 'lstm' \(SpikingLSTM\) cannot be converted: its gates "
                                              r"multiply .* Evaluate the network in torch"):
        evsnn.convert(net, input_shape=(1, 28, 28))
    nested = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Identity(), SpikingLSTM(784, 4)))
    with pytest.raises(ConversionError, match=r"Layer '1\.1' \(SpikingLSTM\)"):
        evsnn.convert(nested, input_shape=(1, 28, 28))
    with pytest.raises(ConversionError, match=r"The network \(SpikingLSTM\) cannot be converted"):
        evsnn.convert(SpikingLSTM(784, 4), input_shape=(784,))


# --- operation counts ----------------------------------------------------------------------------
def test_lstm_ops_by_hand():
    """d_x = 5, d_h = 3: four gates of 3 units, each reading 5 inputs and 3 recurrent spikes."""
    assert lstm_ops(5, 3) == {"mac": 4 * 3 * 5 + 4 * 3 * 3,  # 60 + 36 = 96
                              "bias_add": 12, "sigmoid": 9, "tanh": 6, "mul": 9, "add": 3, "compare": 3}
    assert SpikingLSTM(5, 3).ops() == lstm_ops(5, 3)
    with pytest.raises(ValueError, match="hidden must be a positive integer"):
        lstm_ops(5, 0)


def test_lstm_accumulates_by_hand():
    """d_h = 2, 3 steps, two samples. Sample 0: 1, 0, 2 input spikes and 1, 1, 2 output spikes: (3 + 1 + 1)
    columns of 4 d_h = 8 weights, 40 adds (the last step's output spikes feed no step). Sample 1: silent."""
    inputs = torch.tensor([[1, 0], [0, 0], [2, 0]])
    outputs = torch.tensor([[1, 0], [1, 0], [2, 0]])
    assert lstm_accumulates(2, inputs, outputs).tolist() == [40, 0]
    with pytest.raises(ValueError, match=r"must both have shape \(steps, batch\), got \(3, 2\) and \(2, 2\)"):
        lstm_accumulates(2, inputs, outputs[:2])


def test_classifier_records_its_spikes():
    net = SpikingLSTMClassifier((1, 4, 4), steps=3, encoder=6, hidden=5, classes=2, threshold=0.1, seed=0)
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    net(x)
    encoded, hidden = net.spikes["encoder"], net.spikes["lstm"]
    assert encoded.shape == hidden.shape == (3, 4) and encoded.sum() > 0 and hidden.sum() > 0
    assert float(encoded.sum()) == pytest.approx(net.rates["encoder"] * 3 * 4 * 6)
    assert float(hidden.sum()) == pytest.approx(net.rates["lstm"] * 3 * 4 * 5)
    assert bool((lstm_accumulates(5, encoded, hidden) <= 3 * lstm_ops(6, 5)["mac"]).all())


class _ElementCounter(TorchDispatchMode):
    """Output elements of each aten operation the forward pass runs."""

    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.counts[func.overloadpacket.__name__] += out.numel() if isinstance(out, torch.Tensor) else 0
        return out


def test_lstm_ops_are_what_the_forward_pass_computes():
    """Run the layer (T = 3, one sample) under torch's FLOP counter (2 per multiply-accumulate) and an
    element counter: its products are 4 d_h (d_x + d_h) MACs per step, its non-linearities and products of
    state what lstm_ops says; its adds are the bias, the two products' sum and the cell's sum."""
    d_x, d_h, steps = 5, 3, 3
    layer = SpikingLSTM(d_x, d_h)
    spikes = torch.ones(steps, 1, d_x)
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        layer(spikes)
    ops = lstm_ops(d_x, d_h)
    assert flops.get_total_flops() == 2 * ops["mac"] * steps
    with torch.no_grad(), _ElementCounter() as counter:
        layer(spikes)
    c = counter.counts
    assert (c["sigmoid"], c["tanh"], c["mul"], c["ge"]) == tuple(steps * ops[k] for k in ("sigmoid", "tanh", "mul",
                                                                                          "compare"))
    assert c["add"] == steps * (ops["bias_add"] + 4 * d_h + ops["add"])


def test_eq1_scnn_w_against_evsnn_conv_count():
    """Ω(SCNN-W) = d_x k_h k_w d_h 2: evsnn's dense MACs of a convolution (one operation each), per output
    position, times eq. 1's 2 operations per MAC."""
    d_x, d_h, k_h, k_w = 4, 6, 3, 5
    conv = Conv2d(np.ones((d_h, d_x, k_h, k_w), np.float32), (d_x, 9, 11), padding=1)  # output 6 x 9 x 9
    model = SpikingModel(InputSpec((d_x, 9, 11)), [Population("c", (d_h, 9, 9))],
                         [Projection("conv", "input", "c", conv)])
    (layer,) = ann_ops_ir(model)
    assert layer.dense_macs % 81 == 0
    assert 2 * layer.dense_macs // 81 == d_x * k_h * k_w * d_h * 2 == 720


@pytest.mark.parametrize("d_x, d_h", [(5, 3), (128, 128), (784, 64)])
def test_eq1_lsnn_w_against_lstm_ops(d_x, d_h):
    """Ω(LSNN-W) = 8 d_x d_h + d_h (8 d_h + 20). evsnn's count of the layer per step, without the bias (eq. 1 is
    "regardless of the bias"): 4 d_h (d_x + d_h) MACs, 2 operations each in eq. 1's convention, which are the
    formula's leading terms exactly; and 10 element-wise operations per unit (3 sigmoids, 2 tanh, 3 products,
    1 sum, 1 threshold comparison), where the formula has 20: the total is the formula minus 10 d_h."""
    ops = lstm_ops(d_x, d_h)
    omega = d_x * d_h * 8 + d_h * (d_h * 8 + 20)
    assert 2 * ops["mac"] == d_x * d_h * 8 + d_h * d_h * 8
    elementwise = sum(ops[k] for k in ("sigmoid", "tanh", "mul", "add", "compare"))
    assert elementwise == (3 + 2 + 3 + 1 + 1) * d_h
    assert 2 * ops["mac"] + elementwise == omega - 10 * d_h
