"""L4-norm adjustment (Allred & Roy): the issue's formulas on hand-computed cases, the guard, conv, provenance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import evsnn
from evsnn import Conv2d, ConversionError, Dense, InputSpec, NeuronSpec, Population, Projection, SpikingModel
from evsnn.converters import convert, l4_adjust

W = np.array([[3.0, 0.0], [0.0, 1.0]])  # l4 norms 3 and 1, layer mean 2
X = np.array([[0.25, 0.5]])  # pre-activations (mu) 0.75 and 0.5


def layer(weight=W, *, threshold=1.0, bias=None) -> SpikingModel:
    return SpikingModel(input=InputSpec((weight.shape[1],)),
                        populations=[Population("fc1", (weight.shape[0],), NeuronSpec(threshold=threshold), bias)],
                        projections=[Projection("fc1", "input", "fc1", Dense(weight))])


def test_hand_computed_without_smoothing():
    # alpha = 0: theta' = mu + (theta - mu) * l / mean(l) = [0.75 + 0.25 * 1.5, 0.5 + 0.5 * 0.5] = [1.125, 0.75]
    new, info = l4_adjust(layer(), X, alpha=0, rescale=False)
    p = info["populations"]["fc1"]
    np.testing.assert_allclose(p["l4_norm"], [3, 1], rtol=1e-15)
    np.testing.assert_allclose(p["mean_preactivation"], [0.75, 0.5], rtol=1e-15)
    np.testing.assert_allclose(p["scale"], [1 / 1.125, 1 / 0.75], rtol=1e-15)
    np.testing.assert_allclose(new.projections[0].op.weight, W * np.array([[1 / 1.125], [1 / 0.75]]), rtol=1e-15)
    assert p["skipped"] == 0 and p["rescale_factor"] == 1.0
    assert new.populations[0].neuron.threshold == 1.0  # one threshold per layer, unchanged


def test_hand_computed_with_smoothing_and_rescale():
    # alpha = 1: l~ = [2.5, 1.5]; theta' = [0.75 + 0.25 * 1.25, 0.5 + 0.5 * 0.75] = [1.0625, 0.875]
    # s = [16/17, 8/7]; s~ = (s + 1) / 2 = [33/34, 15/14]
    s = np.array([33 / 34, 15 / 14])
    new, info = l4_adjust(layer(), X, alpha=1.0, rescale=False)
    np.testing.assert_allclose(info["populations"]["fc1"]["scale"], s, rtol=1e-15)
    # rescale: the layer's mean |w| goes back to (3 + 1) / 4 = 1
    new, info = l4_adjust(layer(), X, alpha=1.0)
    factor = 4 / (3 * s[0] + s[1])
    assert info["populations"]["fc1"]["rescale_factor"] == pytest.approx(factor, rel=1e-15)
    np.testing.assert_allclose(new.projections[0].op.weight, W * (s * factor)[:, None], rtol=1e-15)
    assert np.abs(new.projections[0].op.weight).mean() == pytest.approx(1.0, rel=1e-15)


def test_threshold_enters_and_bias_scales_with_the_weights():
    # theta = 2, alpha = 0: theta' = [0.75 + 1.25 * 1.5, 0.5 + 1.5 * 0.5] = [2.625, 1.25]; mu includes the bias
    bias = np.array([0.0, 0.0])
    new, info = l4_adjust(layer(threshold=2.0, bias=bias), X, alpha=0, rescale=False)
    np.testing.assert_allclose(info["populations"]["fc1"]["scale"], [2 / 2.625, 2 / 1.25], rtol=1e-15)
    new, info = l4_adjust(layer(bias=np.array([0.25, -0.25])), X, alpha=0, rescale=False)
    mu = np.array([1.0, 0.25])
    np.testing.assert_allclose(info["populations"]["fc1"]["mean_preactivation"], mu, rtol=1e-15)
    s = 1 / (mu + (1 - mu) * np.array([1.5, 0.5]))
    np.testing.assert_allclose(new.populations[0].bias, np.array([0.25, -0.25]) * s, rtol=1e-15)


def test_guard_leaves_neurons_with_non_positive_threshold_unscaled():
    # mu0 = 3 * 1 = 3, theta' = 3 + (1 - 3) * 1.5 = 0 -> left unscaled and counted
    new, info = l4_adjust(layer(), np.array([[1.0, 0.5]]), alpha=0, rescale=False)
    p = info["populations"]["fc1"]
    assert p["skipped"] == 1
    np.testing.assert_allclose(p["scale"], [1.0, 1 / (0.5 + 0.5 * 0.5)], rtol=1e-15)
    # all-zero weights: nothing to adjust
    with pytest.raises(ConversionError, match=r"population 'fc1': its weights are all zero"):
        l4_adjust(layer(np.zeros((2, 2))), X)


def test_conv_uses_channels_and_position_averaged_means():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(3, 2, 3, 3))
    op = Conv2d(weight, (2, 5, 5), padding=1)
    model = SpikingModel(input=InputSpec((2, 5, 5)), populations=[Population("conv1", op.out_shape)],
                         projections=[Projection("conv1", "input", "conv1", op)])
    x = rng.random((4, 2, 5, 5))
    alpha = 0.5
    new, info = l4_adjust(model, x, alpha=alpha, rescale=False)
    p = info["populations"]["conv1"]
    l4 = (weight ** 4).sum(axis=(1, 2, 3)) ** 0.25
    pre = op.forward(x.reshape(4, -1)).reshape(4, 3, 25)
    mu = pre.mean(axis=(0, 2))
    smooth = (l4 + alpha * l4.mean()) / (1 + alpha)
    s = 1 / (mu + (1 - mu) * smooth / l4.mean())
    np.testing.assert_allclose(p["l4_norm"], l4, rtol=1e-12)
    np.testing.assert_allclose(p["mean_preactivation"], mu, rtol=1e-12)
    np.testing.assert_allclose(p["scale"], (s + alpha) / (1 + alpha), rtol=1e-12)
    assert isinstance(new.projections[0].op, Conv2d) and new.projections[0].op.padding == (1, 1)
    np.testing.assert_allclose(new.projections[0].op.weight, weight * p["scale"][:, None, None, None], rtol=1e-12)


def test_all_layers_and_their_errors():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 3, bias=False)).double()
    x = np.random.default_rng(1).random((32, 4))
    model = convert(net, input_shape=(4,), norm="data", calibration=x)
    first, info1 = l4_adjust(model, x, alpha=1.0)
    everything, info = l4_adjust(model, x, alpha=1.0, layers="all")
    assert list(info1["populations"]) == ["fc1"] and list(info["populations"]) == ["fc1", "fc2"]
    assert first.projections[1] == model.projections[1] and everything.projections[1] != model.projections[1]
    # fc2's means are measured on the adjusted fc1
    rates = first.ann_forward(x)["fc1"]
    np.testing.assert_allclose(info["populations"]["fc2"]["mean_preactivation"],
                               (rates @ model.projections[1].op.weight.T).mean(axis=0), rtol=1e-12)
    with pytest.raises(ConversionError, match=r"alpha must be a finite number >= 0, got -1"):
        l4_adjust(model, x, alpha=-1)
    with pytest.raises(ConversionError, match=r"layers must be one of 'first', 'all', got 'last'"):
        l4_adjust(model, x, layers="last")
    per_neuron = model.replace(populations=[
        dataclasses.replace(model.populations[0], neuron=NeuronSpec(threshold=np.ones(6))), model.populations[1]])
    with pytest.raises(ConversionError, match=r"population 'fc1': threshold must be one number per layer"):
        l4_adjust(per_neuron, x)


def test_residual_population_is_refused_for_all_layers():
    model = SpikingModel(input=InputSpec((2,)), populations=[Population("a", (2,)), Population("b", (2,))],
                         projections=[Projection("a", "input", "a", Dense(np.eye(2))),
                                      Projection("b", "a", "b", Dense(np.eye(2))),
                                      Projection("skip", "a", "b", Dense(np.eye(2)))])
    assert l4_adjust(model, X)[1]["populations"]["a"]["skipped"] == 0
    with pytest.raises(ConversionError, match=r"population 'b': must have exactly one input projection, got 2 "
                                              r"\(b, skip\)"):
        l4_adjust(model, X, layers="all")


def test_convert_records_l4_in_provenance_and_it_survives_hdf5(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3, bias=False))
    x = np.random.default_rng(2).random((20, 1, 6, 6)).astype(np.float32)
    model = convert(net, input_shape=(1, 6, 6), norm="data", calibration=x, l4_alpha=0.5, l4_batch=8,
                    neuron=NeuronSpec(threshold=0.8))
    l4 = model.provenance["l4"]
    assert l4["alpha"] == 0.5 and l4["calibration_size"] == 8 and l4["layers"] == "first"
    assert l4["populations"]["conv1"]["scale"].shape == (4,)
    assert model.projections[0].op.dtype == np.float32
    evsnn.save(model, tmp_path / "m.h5")
    loaded = evsnn.load(tmp_path / "m.h5")
    assert loaded == model
    np.testing.assert_array_equal(loaded.provenance["l4"]["populations"]["conv1"]["l4_norm"],
                                  l4["populations"]["conv1"]["l4_norm"])
    with pytest.raises(ConversionError, match=r"the L4 adjustment needs calibration samples"):
        convert(net, input_shape=(1, 6, 6), l4_alpha=1.0)
