"""Weight normalization: hand-computed factors (Diehl 2015, Rueckauer 2017), chaining, IR rates, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from evsnn import Conv2d, ConversionError, Dense, InputError, InputSpec, Population, Projection, SpikingModel, Sparse
from evsnn.converters import NORMS, convert, import_torch
from evsnn.converters.normalize import activations, data_based, model_based, percentile_based, scale_op

W1 = np.array([[2.0, -1.0], [0.5, 1.0]])
B1 = np.array([0.0, 0.5])
W2 = np.array([[1.0, 1.0], [-1.0, 0.5]])
B2 = np.array([0.0, 1.0])
X = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
# Hidden activations: [2, 1], [0, 2.5], [1, 2]; output logits: [3, -0.5], [2.5, 2.25], [3, 1].


def two_layer_net(dtype=torch.float64) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)).to(dtype)
    with torch.no_grad():
        for layer, w, b in ((net[0], W1, B1), (net[2], W2, B2)):
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
    return net


def two_layers() -> SpikingModel:
    return import_torch(two_layer_net(), (2,))


def one_layer(op, bias=None) -> SpikingModel:
    """A model of one population ``fc1`` fed by ``op`` from an input of ``op.n_in`` values."""
    shape = op.out_shape if isinstance(op, Conv2d) else (op.n_out,)
    in_shape = op.input_shape if isinstance(op, Conv2d) else (op.n_in,)
    return SpikingModel(input=InputSpec(in_shape), populations=[Population("fc1", shape, bias=bias)],
                        projections=[Projection("fc1", "input", "fc1", op)])


def assert_layers(model, expected):
    for pr, pop, (ew, eb) in zip(model.projections, model.populations, expected):
        np.testing.assert_allclose(pr.op.weights, ew, rtol=1e-15)
        np.testing.assert_allclose(pop.bias, eb, rtol=1e-15)


# --- activations ------------------------------------------------------------------------------
def test_activations_hand_computed():
    acts = activations(two_layers(), X)
    np.testing.assert_array_equal(acts["fc1"], [[2, 1], [0, 2.5], [1, 2]])
    np.testing.assert_array_equal(acts["fc2"], [[3, 0], [2.5, 2.25], [3, 1]])  # logits, rectified by the output


def test_activations_chunks_match_torch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12, 4)).double()
    x = torch.randn(600, 1, 6, 6, dtype=torch.float64)  # three chunks of 256
    acts = activations(import_torch(net, (1, 6, 6)), x.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(acts["conv1"], net[:2](x).reshape(600, -1).numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(acts["fc1"], np.maximum(net(x).numpy(), 0), rtol=0, atol=1e-12)


# --- model-based (Diehl et al. 2015, Algorithm 1) -----------------------------------------------
def test_model_based_dense_hand_computed():
    model = two_layers()
    new, factors = model_based(model)
    assert factors == {"fc1": 2.0, "fc2": 2.0}  # rows of max(W, 0): [2, 1.5] and [2, 0.5]
    assert_layers(new, [(W1 / 2, B1 / 2), (W2 / 2, B2 / 2)])  # no chain: each layer by its own factor
    assert_layers(model, [(W1, B1), (W2, B2)])  # the input model is untouched


KERNEL = np.arange(-4.0, 5.0).reshape(3, 3)  # positive part sums to 1 + 2 + 3 + 4 = 10


@pytest.mark.parametrize("input_shape, expected", [
    ((1, 5, 5), 10.0),  # interior outputs see the whole kernel
    ((1, 2, 2), 8.0),   # every output is at a border: the best sees taps [[0, 1], [3, 4]]
])
def test_model_based_conv_counts_border_taps(input_shape, expected):
    weight = np.stack([KERNEL, np.full((3, 3), 0.5)])[:, None]  # second channel: 9 * 0.5 = 4.5 at most
    new, factors = model_based(one_layer(Conv2d(weight, input_shape, padding=1)))
    assert factors == {"fc1": expected}
    op = new.projections[0].op
    assert isinstance(op, Conv2d) and op.padding == (1, 1)
    np.testing.assert_allclose(op.weight, weight / expected, rtol=1e-15)


def test_model_based_sums_every_projection_into_a_population():
    # a residual population: fc1 -> fc2 directly and through a skip; the positive inputs add up per neuron
    model = SpikingModel(input=InputSpec((2,)),
                         populations=[Population("fc1", (2,)), Population("fc2", (2,))],
                         projections=[Projection("fc1", "input", "fc1", Dense(np.eye(2))),
                                      Projection("fc2", "fc1", "fc2", Dense(np.array([[1.0, 2.0], [0.5, -3.0]]))),
                                      Projection("skip", "fc1", "fc2", Sparse.from_matrix(np.eye(2)))])
    new, factors = model_based(model)
    assert factors == {"fc1": 1.0, "fc2": 4.0}  # neuron 0: 1 + 2 + 1
    np.testing.assert_array_equal(new.projections[2].op.to_csr().toarray(), np.eye(2) / 4)


def test_model_based_sparse_and_no_positive_weight():
    sparse = Sparse.from_matrix(np.array([[1.0, -2.0, 3.0], [0.0, 4.0, 0.0]]))
    negative = Dense(np.array([[-1.0, -2.0]]))
    model = SpikingModel(input=InputSpec((3,)),
                         populations=[Population("fc1", (2,), bias=np.array([2.0, 0.0])), Population("fc2", (1,))],
                         projections=[Projection("fc1", "input", "fc1", sparse),
                                      Projection("fc2", "fc1", "fc2", negative)])
    new, factors = model_based(model)
    assert factors == {"fc1": 4.0, "fc2": 1.0}  # a layer without positive weight is left as it is
    op = new.projections[0].op
    assert isinstance(op, Sparse)
    np.testing.assert_array_equal(op.to_csr().toarray(), [[0.25, -0.5, 0.75], [0, 1, 0]])
    np.testing.assert_array_equal(new.populations[0].bias, [0.5, 0])
    np.testing.assert_array_equal(new.projections[1].op.weight, negative.weight)


# --- data-based (Diehl et al. 2015, Algorithm 2) ------------------------------------------------
def test_data_based_hand_computed_chain():
    new, factors = data_based(two_layers(), X)
    assert factors == {"fc1": 2.5, "fc2": 3.0}  # max activation 2.5 > max weight 2; max logit 3 > max weight 1
    # Layer 2 is multiplied by lambda1 / lambda2; biases are divided by their own lambda.
    assert_layers(new, [(W1 / 2.5, B1 / 2.5), (W2 * 2.5 / 3, B2 / 3)])


def test_data_based_max_weight_wins():
    new, factors = data_based(one_layer(Dense(np.array([[5.0, -10.0]]))), np.array([[1.0, 1.0]]))  # activation 0
    assert factors == {"fc1": 5.0}
    np.testing.assert_array_equal(new.projections[0].op.weight, [[1.0, -2.0]])


def test_data_based_output_uses_clipped_logits():
    model = one_layer(Dense(np.array([[-0.5]]))).replace(readout="membrane")
    assert data_based(model, np.array([[4.0]]))[1] == {"fc1": 1.0}  # logit -2 clips to 0, no positive weight


def test_data_based_rates_peak_at_one_and_decisions_kept():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(36, 16),
                        nn.ReLU(), nn.Linear(16, 5)).double().eval()
    x = torch.rand(50, 1, 8, 8, dtype=torch.float64) * 4
    model = convert(net, input_shape=(1, 8, 8), norm="data", calibration=x.numpy(), readout="membrane")
    acts = model.ann_forward(x.numpy())
    for name in ("conv1", "fc1"):
        assert acts[name].max() == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        expected = net(x).numpy().argmax(axis=1)
    np.testing.assert_array_equal(acts[model.output].argmax(axis=1), expected)
    factors = model.provenance["normalization_factors"]
    np.testing.assert_allclose(acts[model.output] * factors["fc2"], net(x).detach().numpy(), atol=1e-12)


# --- percentile (Rueckauer et al. 2017) --------------------------------------------------------
def test_percentile_ignores_zeros_and_chains():
    new, factors = percentile_based(two_layers(), X, p=50)
    # Non-zero hidden activations [1, 1, 2, 2, 2.5] -> 2 (with the zero it would be 1.5);
    # clipped non-zero logits [1, 2.25, 2.5, 3, 3] -> 2.5.
    assert factors == {"fc1": 2.0, "fc2": 2.5}
    assert_layers(new, [(W1 / 2, B1 / 2), (W2 * 2 / 2.5, B2 / 2.5)])


def test_percentile_100_is_max_activation_and_silent_layer_keeps_one():
    assert percentile_based(two_layers(), X, p=100)[1] == {"fc1": 2.5, "fc2": 3.0}
    assert percentile_based(one_layer(Dense(np.array([[-1.0]]))), np.array([[1.0]]))[1] == {"fc1": 1.0}


# --- convert: provenance, dtype -----------------------------------------------------------------
def test_convert_records_provenance():
    net = two_layer_net()
    prov = convert(net, input_shape=(2,), norm="percentile", calibration=X, percentile=50).provenance
    assert prov["normalization"] == "percentile" and prov["percentile"] == 50.0
    assert prov["calibration_size"] == 3 and prov["normalization_factors"] == {"fc1": 2.0, "fc2": 2.5}
    assert prov["source"]["layers"] == {"fc1": "0,1", "fc2": "2"} and prov["zero_bias"] is False
    prov = convert(net, input_shape=(2,), norm="data", calibration=X).provenance
    assert prov["normalization_factors"] == {"fc1": 2.5, "fc2": 3.0} and prov["calibration_size"] == 3
    assert "percentile" not in prov
    prov = convert(net, input_shape=(2,), norm="model", calibration=X).provenance  # calibration ignored
    assert prov["normalization_factors"] == {"fc1": 2.0, "fc2": 2.0} and "calibration_size" not in prov
    prov = convert(net, input_shape=(2,)).provenance
    assert prov["normalization"] == "none" and "normalization_factors" not in prov


@pytest.mark.parametrize("norm", NORMS)
def test_convert_keeps_float32(norm):
    net = two_layer_net(torch.float32)
    model = convert(net, input_shape=(2,), norm=norm, calibration=X.astype(np.float32))
    assert all(pr.op.dtype == np.float32 for pr in model.projections)
    assert all(p.bias.dtype == np.float32 for p in model.populations)


def test_scale_op_keeps_kind_and_dtype():
    op = Dense(np.array([[1.0, -2.0]], dtype=np.float32))
    scaled = scale_op(op, 0.5)
    assert isinstance(scaled, Dense) and scaled.weight.dtype == np.float32 and scaled is not op
    np.testing.assert_array_equal(scaled.weight, [[0.5, -1.0]])
    np.testing.assert_array_equal(op.weight, [[1.0, -2.0]])


# --- errors ------------------------------------------------------------------------------------
def test_convert_errors():
    net = two_layer_net()
    with pytest.raises(ConversionError, match=r"norm must be one of 'none', 'model', 'data', 'percentile', got 'l4'"):
        convert(net, input_shape=(2,), norm="l4")
    for norm in ("data", "percentile"):
        with pytest.raises(ConversionError, match=rf"norm='{norm}' needs calibration samples, got calibration=None"):
            convert(net, input_shape=(2,), norm=norm)
    with pytest.raises(InputError, match=r"convert: calibration samples must have shape \(N, 2\) .*got \(3, 1, 2\)"):
        convert(net, input_shape=(2,), norm="data", calibration=X[:, None])
    with pytest.raises(ConversionError, match=r"p must be a number in \(0, 100\], got 0"):
        convert(net, input_shape=(2,), norm="percentile", calibration=X, percentile=0)


@pytest.mark.parametrize("p", [0, -1, 100.5, float("nan"), True, "99"])
def test_bad_percentile(p):
    with pytest.raises(ConversionError, match=r"p must be a number in \(0, 100\]"):
        percentile_based(two_layers(), X, p=p)


@pytest.mark.parametrize("x, match", [
    (np.zeros((0, 2)), r"calibration samples must hold at least one sample, got shape \(0, 2\)"),
    (np.zeros((3, 3)), r"must have shape \(N, 2\) .*got \(3, 3\)"),
    (np.zeros(2), r"got \(2,\), a single sample"),
    (np.array([[1.0, np.nan], [np.inf, 0.0]]), r"must be finite, got 2 NaN/inf value\(s\)"),
    (np.array([["a", "b"]]), r"must be a real numeric array, got dtype <U1"),
])
def test_bad_calibration(x, match):
    with pytest.raises(InputError, match=rf"data_based: .*{match}"):
        data_based(two_layers(), x)
