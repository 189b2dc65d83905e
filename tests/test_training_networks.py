"""Seed 003's architectures as IR models: plain c3 networks and pre-/post-activation residual networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import evsnn
from evsnn.io.datasets import mnist_split
from evsnn.model import INPUT
from evsnn.training import SpikingNetwork, train_classifier
from evsnn.training.networks import IDENTITY_PREFIX, plain_cnn, residual_cnn

SRM = evsnn.NeuronSpec("srm", tau_syn=2e-3, tau_refr=2e-3, refractory_amplitude=2.0)


def test_plain_cnn_is_torch_default_initialised_c3_layers():
    model = plain_cnn((4, 8, 8), SRM, strides=(2, 1, 2), scale=10.0)
    shapes = [p.shape for p in model.populations]
    assert shapes == [(4, 14, 14), (8, 14, 14), (8, 7, 7), (10,)]
    for pr in model.projections[:-1]:
        w = pr.op.weight
        bound = 10.0 / np.sqrt(w.shape[1] * 9)
        assert w.shape[2:] == (3, 3) and pr.op.padding == (1, 1)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound  # U(-b, b), b = scale / sqrt(fan_in)
    assert plain_cnn((4, 8, 8), SRM, strides=(2, 1, 2), scale=10.0) == model  # seeded
    assert plain_cnn((4, 8, 8), SRM, strides=(2, 1, 2), scale=10.0, seed=1) != model
    with pytest.raises(ValueError, match="2 strides for 3 conv layers"):
        plain_cnn((4, 8, 8), SRM, strides=(1, 2))


def potentials_into(model, name):
    return sorted((pr.source, pr.name) for pr in model.projections if pr.target == name)


def test_residual_blocks_are_eqs_8_and_9_as_projections():
    pre, post = residual_cnn("pre", 3, 4, SRM), residual_cnn("post", 3, 4, SRM)
    # pre-activation: a4 spikes on h_3 = stem + G_1 + G_2 + G_3 (each G's second conv)
    assert potentials_into(pre, "a4") == [("b1", "conv2_b1_a4"), ("b2", "conv2_b2_a4"), ("b3", "conv2_b3_a4"),
                                          (INPUT, "stem_a4")]
    ops = {pr.name: pr.op for pr in pre.projections}
    assert ops["conv2_b1_a2"] is ops["conv2_b1_a4"] and ops["stem_a1"] is ops["stem_a4"]
    # post-activation: a4 spikes on F(h_3 + G_3): the identity from a3 and block 3's second conv
    assert potentials_into(post, "a4") == [("a3", f"{IDENTITY_PREFIX}_a3_a4"), ("b3", "conv2_b3_a4")]
    identity = {pr.name: pr.op for pr in post.projections}[f"{IDENTITY_PREFIX}_a3_a4"]
    x = np.random.default_rng(0).random((2, 4 * 14 * 14))
    np.testing.assert_array_equal(identity.forward(x), x)
    with pytest.raises(ValueError, match="kind must be 'pre' or 'post'"):
        residual_cnn("mid", 3, 4, SRM)


@pytest.mark.parametrize("kind", ["pre", "post"])
def test_residual_training_shares_tied_weights_keeps_identities_and_exports(kind):
    model = residual_cnn(kind, 2, 4, SRM)
    fixed = [pr.name for pr in model.projections if pr.name.startswith(IDENTITY_PREFIX)]
    net = SpikingNetwork(model, steps=6, spike_fn="arctan", norm="psp-bn", fixed=fixed)
    assert len(net.weights) == 1 + 2 * 2 + 1  # stem, two convs per block, classifier
    data = mnist_split(n_train=64)
    train_classifier(net, data.x_train, data.y_train, epochs=1, batch_size=32, lr=1e-2, progress=False)
    assert sum(net.rates.values()) > 0
    trained = net.to_model()
    before = {pr.name: pr.op for pr in model.projections}
    after = {pr.name: pr.op for pr in trained.projections}
    assert not np.array_equal(after["conv1_b1"].weight, before["conv1_b1"].weight)
    if kind == "pre":  # one trained weight, folded with the same PSP divisor of b1: equal arrays
        np.testing.assert_array_equal(after["conv2_b1_a2"].weight, after["conv2_b1_a3"].weight)
    else:  # the fixed identity, scaled only by a2's PSP divisor (eq. 17), per channel
        w = after[f"{IDENTITY_PREFIX}_a2_a3"].weight[:, :, 0, 0]
        assert np.count_nonzero(w - np.diag(np.diag(w))) == 0 and np.all(np.diag(w) > 0)
    x = data.x_test[:3]
    report = evsnn.validate(trained, x, engines=("event", "torch"), steps=6, dtype="float64")
    assert report.identical, report.table()
