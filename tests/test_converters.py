"""Torch import: structure, pooling/BN folds, residual graphs, exact ANN equivalence, copies and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import evsnn
from evsnn import Conv2d, ConversionError, Dense, NeuronSpec, Sparse
from evsnn.converters import convert, import_torch


def torch_activations(net: nn.Sequential, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The network output and the output of every ReLU, by module path."""
    relus, handles = {}, []
    for path, layer in net.named_modules():
        if type(layer) is nn.ReLU:
            handles.append(layer.register_forward_hook(
                lambda mod, inp, out, path=path: relus.__setitem__(path, out.detach().numpy().copy())))
    try:
        with torch.no_grad():
            out = net(x).numpy()
    finally:
        for h in handles:
            h.remove()
    return out, relus


def assert_matches_torch(net: nn.Sequential, input_shape: tuple[int, ...], *, batch: int = 3, **kwargs):
    """Import ``net`` in float64 and compare outputs (both readouts) and ReLU activations with torch."""
    torch.manual_seed(1)
    net = net.double().eval()
    x = torch.randn(batch, *input_shape, dtype=torch.float64)
    logits, relus = torch_activations(net, x)
    logits = logits.reshape(batch, -1)
    for readout, expected in (("membrane", logits), ("count", np.maximum(logits, 0))):
        model = import_torch(net, input_shape, readout=readout, **kwargs)
        acts = model.ann_forward(x.numpy())
        np.testing.assert_allclose(acts[model.output], expected, rtol=0, atol=1e-10)
    layers = model.provenance["source"]["layers"]
    checked = 0
    for pop in model.populations:
        relu_paths = [p for p in layers[pop.name].split(",") if p in relus]
        if relu_paths:
            np.testing.assert_allclose(acts[pop.name], relus[relu_paths[-1]].reshape(batch, -1), rtol=0, atol=1e-10)
            checked += 1
    assert checked == len(relus)
    return model


def ops(model):
    return [pr.op for pr in model.projections]


# --- equivalence with torch -------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_mlp_matches_torch(bias):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12, bias=bias), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(12, 8, bias=bias), nn.ReLU(), nn.Linear(8, 5, bias=bias))
    model = assert_matches_torch(net, (1, 4, 4))
    assert [p.name for p in model.populations] == ["fc1", "fc2", "fc3"]
    assert [(pr.name, pr.source, pr.target) for pr in model.projections] == [
        ("fc1", "input", "fc1"), ("fc2", "fc1", "fc2"), ("fc3", "fc2", "fc3")]
    assert all(isinstance(op, Dense) for op in ops(model))
    assert all((p.bias is not None) == bias for p in model.populations)
    assert model.output == "fc3" and model.readout == "count"
    assert dict(model.provenance["source"]["layers"]) == {"fc1": "0,1,2", "fc2": "3,4,5", "fc3": "6"}


def test_diehl_cnn_folds_pooling():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 8, 5), nn.ReLU(),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    model = assert_matches_torch(net, (1, 28, 28))
    conv1, conv2, fc = ops(model)
    assert isinstance(conv1, Conv2d) and conv1.weight.shape == (4, 1, 5, 5)
    assert isinstance(conv2, Conv2d) and conv2.weight.shape == (8, 4, 10, 10) and conv2.stride == (2, 2)
    assert isinstance(fc, Dense) and fc.weight.shape == (10, 8 * 8 * 8)
    assert [p.shape for p in model.populations] == [(4, 24, 24), (8, 8, 8), (10,)]
    bias = model.population("conv2").bias
    np.testing.assert_array_equal(bias, np.broadcast_to(net[3].bias.detach().numpy()[:, None, None], (8, 8, 8)))


def test_conv_then_pool_before_relu():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.AvgPool2d(3, stride=2), nn.ReLU(),
                        nn.Flatten(), nn.Linear(3 * 3 * 3, 4))
    model = assert_matches_torch(net, (2, 15, 15))
    conv = ops(model)[0]
    # kernel (k - 1) * s + K = 2 * 2 + 3, stride s * t, padding of the conv
    assert isinstance(conv, Conv2d) and conv.weight.shape[2:] == (7, 7)
    assert conv.stride == (4, 4) and conv.padding == (1, 1)
    np.testing.assert_allclose(model.population("conv1").bias[:, 0, 0], net[0].bias.detach().numpy(), rtol=1e-15)


def test_padded_conv_after_pool_becomes_sparse():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    model = assert_matches_torch(net, (1, 12, 12))
    assert isinstance(ops(model)[1], Sparse)
    assert model.population("conv2").shape == (4, 5, 5)


@pytest.mark.parametrize("kernel, stride", [(3, 2), (2, 1), (3, 3)])
def test_pool_kernel_other_than_stride(kernel, stride):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.AvgPool2d(kernel, stride), nn.Conv2d(3, 2, 2), nn.ReLU(),
                        nn.AvgPool2d(kernel, stride), nn.Flatten(), nn.LazyLinear(3))
    net(torch.zeros(1, 2, 20, 20))  # materialise the lazy layer
    model = assert_matches_torch(net, (2, 20, 20))
    assert isinstance(ops(model)[1], Conv2d)
    assert ops(model)[1].weight.shape[2:] == (stride * (2 - 1) + kernel,) * 2


def test_several_pools_in_one_piece():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2), nn.AvgPool2d(2), nn.Conv2d(2, 3, 2),
                        nn.AvgPool2d(2), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(3, 2))
    model = assert_matches_torch(net, (1, 26, 26))
    assert [type(op) for op in ops(model)] == [Conv2d, Conv2d, Dense]


def test_strides_padding_and_string_padding():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, (3, 5), stride=(2, 1), padding=(1, 2)), nn.ReLU(),
                        nn.Conv2d(3, 4, 3, padding="same"), nn.ReLU(),
                        nn.Conv2d(4, 2, (2, 3), padding="valid", stride=(1, 2)), nn.ReLU(),
                        nn.Conv2d(2, 3, 3, bias=False))
    model = assert_matches_torch(net, (2, 11, 9))
    assert [op.padding for op in ops(model)] == [(1, 2), (1, 1), (0, 0), (0, 0)]
    assert model.population("conv4").bias is None
    assert [p.name for p in model.populations] == ["conv1", "conv2", "conv3", "conv4"]


def test_nested_sequential_paths_and_provenance():
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("features", nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2)))
    net.add_module("classifier", nn.Sequential(nn.Flatten(), nn.Dropout(), nn.Linear(18, 6), nn.ReLU(),
                                               nn.Sequential(nn.Linear(6, 3))))
    model = assert_matches_torch(net, (1, 8, 8))
    prov = model.provenance
    assert dict(prov["source"]["layers"]) == {
        "conv1": "features.0,features.1",
        "fc1": "features.2,classifier.0,classifier.1,classifier.2,classifier.3",
        "fc2": "classifier.4.0",
    }
    assert prov["converter"] == "evsnn.converters.import_torch" and prov["normalization"] == "none"
    assert prov["source"]["class"] == "Sequential" and prov["source"]["repr"] == str(net)
    assert prov["torch_version"] == str(torch.__version__) and prov["evsnn_version"] == evsnn.__version__


def test_trailing_relu_and_flatten_join_the_output():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(), nn.Dropout())
    model = import_torch(net, (5,))
    assert model.output == "fc2" and dict(model.provenance["source"]["layers"])["fc2"] == "2,3,4"
    assert [p.name for p in model.populations] == ["fc1", "fc2"]
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten())
    assert import_torch(net, (1, 5, 5)).population("conv1").shape == (2, 3, 3)
    assert [p.name for p in import_torch(nn.Sequential(nn.Linear(3, 2)), (3,)).populations] == ["fc1"]


def test_options_reach_the_model():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    neuron = NeuronSpec(kind="lif", beta=0.9, threshold=0.5)
    model = import_torch(net, (4,), neuron=neuron, readout="membrane", input_encoding="poisson", dt=5e-4)
    assert all(p.neuron == neuron for p in model.populations)
    assert model.readout == "membrane" and model.input.encoding == "poisson" and model.dt == 5e-4
    assert model.input.shape == (4,)


# --- copies, dtypes, the user's module ---------------------------------------------------------
def test_weights_are_float32_copies_and_module_untouched():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Dropout(), nn.Linear(8, 3))
    net.train()
    model = import_torch(net, (1, 4, 4))
    assert net.training and all(m.training for m in net.modules())
    assert all(op.weight.dtype == np.float32 for op in ops(model))
    assert all(p.bias.dtype == np.float32 for p in model.populations)
    before = [op.weight.copy() for op in ops(model)], [p.bias.copy() for p in model.populations]
    with torch.no_grad():
        for param in net.parameters():
            param.add_(1.0)
    for op, w in zip(ops(model), before[0]):
        np.testing.assert_array_equal(op.weight, w)
    for pop, b in zip(model.populations, before[1]):
        np.testing.assert_array_equal(pop.bias, b)
    net.eval()
    import_torch(net, (1, 4, 4))
    assert not any(m.training for m in net.modules())
    assert all(p.requires_grad for p in net.parameters())


def test_float64_and_folded_float32_keep_dtype():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    assert all(op.dtype == np.float32 for op in ops(import_torch(net, (1, 6, 6))))
    assert all(op.dtype == np.float64 for op in ops(import_torch(net.double(), (1, 6, 6))))


def test_convert_passes_through_and_rejects_unknown_normalization():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    converted = convert(net, input_shape=(4,), readout="membrane")
    assert converted.replace(provenance={}) == import_torch(net, (4,), readout="membrane").replace(provenance={})
    with pytest.raises(ConversionError, match=r"norm must be one of 'none', 'model', 'data', 'percentile', got 'l4'"):
        convert(net, input_shape=(4,), norm="l4")


# --- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("net, shape, match", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.ReLU()), (1, 8, 8),
     r"Layer '1' \(MaxPool2d\) is not supported: max pooling has no exact spiking equivalent\. Use nn\.AvgPool2d"),
    (nn.Sequential(nn.Sequential(nn.Linear(3, 2), nn.Sigmoid())), (3,),
     r"Layer '0\.1' \(Sigmoid\) is not supported: only Linear, Conv2d, ReLU, AvgPool2d, .* map onto spiking rates"),
    (nn.Sequential(), (3,), r"module must contain a weighted layer \(Linear or Conv2d\), got none"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(72, 2)), (1, 8, 8),
     r"Layer '2' \(Linear\): input must be flat, got shape \(2, 6, 6\)\. Add nn\.Flatten\(\)"),
    (nn.Sequential(nn.Flatten(), nn.Linear(10, 2)), (1, 3, 3),
     r"Layer '1' \(Linear\): in_features must equal the incoming size 9, got 10"),
    (nn.Sequential(nn.Conv2d(2, 2, 3)), (1, 8, 8),
     r"Layer '0' \(Conv2d\): in_channels must equal the incoming channels 1 .* got 2"),
    (nn.Sequential(nn.Conv2d(1, 2, 9)), (1, 8, 8), r"Layer '0' \(Conv2d\): kernel \(9, 9\) .* must fit the input"),
    (nn.Sequential(nn.Flatten(), nn.Conv2d(1, 2, 3)), (1, 8, 8),
     r"Layer '1' \(Conv2d\): input must have shape \(C, H, W\), got \(64,\)"),
    (nn.Sequential(nn.Linear(4, 4), nn.AvgPool2d(2)), (4,),
     r"Layer '1' \(AvgPool2d\): input must have shape \(C, H, W\), got \(4,\)"),
    (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), (2, 8, 8), r"Layer '0' \(Conv2d\): groups must be 1, got 2"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2)), (1, 8, 8),
     r"Layer '0' \(Conv2d\): dilation must be \(1, 1\), got \(2, 2\)"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")), (1, 8, 8),
     r"Layer '0' \(Conv2d\): padding_mode must be 'zeros', got 'reflect'"),
    (nn.Sequential(nn.Conv2d(1, 2, 2, padding="same")), (1, 8, 8),
     r"Layer '0' \(Conv2d\): padding='same' needs an odd kernel, got \(2, 2\)"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, padding=1)), (1, 8, 8),
     r"Layer '1' \(AvgPool2d\): padding must be 0, got 1\. evsnn folds only plain pooling"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, padding=1, count_include_pad=False)), (1, 8, 8),
     r"padding must be 0, got 1 \(with count_include_pad=False"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, ceil_mode=True)), (1, 7, 7),
     r"Layer '1' \(AvgPool2d\): ceil_mode must be False, got True"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, divisor_override=3)), (1, 8, 8),
     r"Layer '1' \(AvgPool2d\): divisor_override must be None, got 3"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(0)), (1, 8, 8),
     r"Layer '1' \(Flatten\): \(start_dim, end_dim\) must be \(1, -1\), got \(0, -1\)"),
    (nn.Sequential(nn.Linear(3, 2).half()), (3,), r"Layer '0' \(Linear\): weight dtype must be float32 or float64"),
    (nn.Sequential(nn.Linear(3, 2)), (0,), r"input_shape must be a tuple of positive integers"),
])
def test_conversion_errors(net, shape, match):
    with pytest.raises(ConversionError, match=match):
        import_torch(net, shape)


# --- torch.fx graphs: residual adds, batch norm, functions ------------------------------------
def randomize_batchnorm(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so that folding is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return net.eval()


class ResidualNet(nn.Module):
    """conv-BN-relu, then a residual block relu(BN(conv(h)) + h), global average pooling and a classifier."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(2), nn.Linear(16, 3)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(h)) + h)
        z = self.pool(y)
        return self.fc(z.view(z.size(0), -1))


def assert_rate_model_matches(net: nn.Module, input_shape, *, batch: int = 4, atol: float = 1e-12):
    """The IR's rate model equals the network (float64); raw outputs unless the network ends with a ReLU."""
    net = net.double().eval()
    x = torch.rand(batch, *input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = net(x).numpy().reshape(batch, -1)
    ends_with_relu = isinstance(list(net.modules())[-1], nn.ReLU)
    model = import_torch(net, input_shape, readout="count" if ends_with_relu else "membrane")
    np.testing.assert_allclose(model.ann_forward(x.numpy())[model.output], expected, rtol=0, atol=atol)
    return model


def test_residual_block_converts_to_two_projections_and_runs():
    torch.manual_seed(0)
    net = randomize_batchnorm(ResidualNet())
    model = assert_rate_model_matches(net, (1, 6, 6))
    assert [p.name for p in model.populations] == ["conv1", "conv2", "fc1"]
    assert [(pr.name, pr.source, pr.target) for pr in model.projections] == [
        ("conv1", "input", "conv1"), ("conv2", "conv1", "conv2"), ("conv2_from_conv1", "conv1", "conv2"),
        ("fc1", "conv2", "fc1")]
    skip = model.projections[2].op
    assert isinstance(skip, Conv2d) and skip.weight.shape == (4, 4, 1, 1)
    np.testing.assert_array_equal(skip.weight[:, :, 0, 0], np.eye(4))
    assert dict(model.provenance["source"]["layers"]) == {"conv1": "conv1,bn1", "conv2": "conv2,bn2",
                                                          "fc1": "pool,fc"}
    # it runs, and with data normalization and many steps the spiking network agrees with the ANN
    x = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    snn = convert(net, input_shape=(1, 6, 6), norm="data", calibration=x.numpy())
    result = evsnn.simulate(snn, x.numpy(), steps=400, dtype="float64")
    with torch.no_grad():
        ann = net(x).numpy().argmax(axis=1)
    assert result.spike_counts["conv2"].sum() > 0
    assert (result.predictions == ann).mean() >= 0.75


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)),
     (2, 4, 4)),
    (lambda: nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3), nn.BatchNorm1d(3)), (5,)),
    # BN after the ReLU, before a padded conv: a per-channel map folded into the next kernel
    (lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 3, padding=1),
                           nn.ReLU(), nn.Flatten(), nn.Linear(32, 2)), (1, 6, 6)),
    (lambda: nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()), (1, 5, 5)),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2), nn.BatchNorm2d(2), nn.Flatten(),
                           nn.Linear(8, 2)), (1, 6, 6)),
])
def test_batchnorm_folds_exactly(make, shape):
    torch.manual_seed(0)
    model = assert_rate_model_matches(randomize_batchnorm(make()), shape)
    assert all("BatchNorm" not in type(op).__name__ for op in ops(model))


def test_batchnorm_after_relu_keeps_the_convolution():
    torch.manual_seed(0)
    net = randomize_batchnorm(nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.BatchNorm2d(3),
                                            nn.Conv2d(3, 2, 3, padding=1), nn.ReLU()))
    conv2 = ops(assert_rate_model_matches(net, (1, 6, 6)))[1]
    assert isinstance(conv2, Conv2d) and conv2.weight.shape == (2, 3, 3, 3) and conv2.padding == (1, 1)


def test_consecutive_linear_layers_and_functions_compose():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(6, 5), nn.Linear(5, 4), nn.Linear(4, 2)

        def forward(self, x):
            h = F.relu(self.b(self.a(torch.flatten(x, 1))) * 0.5 + 1.0)
            return self.c(h.relu()) / 4

    torch.manual_seed(0)
    model = assert_rate_model_matches(Net(), (2, 3))
    assert [p.name for p in model.populations] == ["fc2", "fc3"]  # a and b fold into one projection
    assert model.provenance["source"]["layers"]["fc2"] == "a,b"


def test_zero_bias_rule():
    net = nn.Sequential(nn.Linear(3, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    assert convert(net, input_shape=(3,), zero_bias=True).provenance["zero_bias"] is True
    with pytest.raises(ConversionError, match=r"zero_bias=True .* population\(s\) 'fc1' \(from 0,1\) have a "
                                              r"non-zero bias"):
        convert(nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2, bias=False)), input_shape=(3,),
                zero_bias=True)
    bn = randomize_batchnorm(nn.Sequential(nn.Linear(3, 2, bias=False), nn.BatchNorm1d(2), nn.ReLU()))
    with pytest.raises(ConversionError, match=r"'fc1' \(from 0,1,2\) have a non-zero bias \(batch normalization"):
        convert(bn, input_shape=(3,), zero_bias=True)


class TwoInputs(nn.Module):
    def forward(self, x, y):
        return x + y


class ControlFlow(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else x


class Functional(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fc, self.fn = nn.Linear(4, 4), fn

    def forward(self, x):
        return self.fn(self.fc(x))


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.s = nn.Linear(2, 2), nn.Parameter(torch.ones(2))

    def forward(self, x):
        return self.fc(x) * self.s


@pytest.mark.parametrize("net, shape, match", [
    (Functional(torch.sigmoid), (4,), r"Node 'sigmoid' \(sigmoid\) is not supported: only Linear, Conv2d, ReLU"),
    (Functional(lambda h: torch.cat([h, h], 1)), (4,), r"\(cat\) is not supported: concatenation of branches"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), Functional(lambda h: h)), (1, 6, 6), r"Layer '2\.fc' \(Linear\)"),
    (TwoInputs(), (2,), r"forward must take exactly one input tensor, got 2 \(x, y\)"),
    (ControlFlow(), (2,), r"torch\.fx could not trace ControlFlow: TraceError.*no control flow on tensor values"),
    (Scale(), (2,), r"Node 's' reads the tensor attribute 's' in forward"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(4)), (1, 8, 8),
     r"Layer '1' \(AdaptiveAvgPool2d\): output size \(4, 4\) must divide the input size \(6, 6\)"),
    (nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, track_running_stats=False)), (2,),
     r"Layer '1' \(BatchNorm1d\): batch normalization without running statistics"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(3)), (1, 5, 5),
     r"Layer '1' \(BatchNorm2d\): input must have 3 channels in a shape of 3 dimension\(s\), got \(2, 3, 3\)"),
])
def test_graph_conversion_errors(net, shape, match):
    with pytest.raises(ConversionError, match=match):
        import_torch(net, shape)
