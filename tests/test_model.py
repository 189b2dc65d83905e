"""The IR: construction, normalisation, validation messages, equality, summary."""

import io as stdlib_io

import numpy as np
import pytest
import torch

import evsnn
from evsnn import (Conv2d, Dense, InputSpec, ModelError, NeuronSpec, Population, Projection, Sparse,
                   SpikingModel)


def test_import_io_is_still_the_standard_library():
    import io

    assert io is stdlib_io and hasattr(io, "BytesIO")
    assert evsnn.io.__name__ == "evsnn.io"


def test_arrays_are_read_only_copies():
    w = np.ones((3, 2), np.float32)
    op = Dense(w)
    w[0, 0] = 5
    assert op.weight[0, 0] == 1 and op.weight.dtype == np.float32
    with pytest.raises(ValueError):
        op.weight[0, 0] = 2


def test_integer_weights_become_float64_and_float16_is_refused():
    assert Dense(np.ones((2, 2), int)).weight.dtype == np.float64
    with pytest.raises(ModelError, match="float32 or float64, got float16"):
        Dense(np.ones((2, 2), np.float16))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(bad):
    w = np.ones((2, 3))
    w[1, 2] = bad
    with pytest.raises(ModelError, match="weight must be finite, got 1 NaN/inf"):
        Dense(w)


def test_everything_model_validates_and_compares_equal(everything):
    from factories import make_everything
    assert everything == make_everything()
    assert everything != make_everything(np.float32)  # same values, other dtype: not equal
    assert everything.output == "out" and everything.n_neurons == 48 + 16 + 5


def test_equality_is_bit_exact(mlp):
    w = mlp.projections[0].op.weight.copy()
    w[0, 0] = np.nextafter(w[0, 0], np.float32(np.inf))
    other = mlp.replace(projections=[mlp.projections[0].__class__("fc1", "input", "fc1", Dense(w)),
                                     mlp.projections[1]])
    assert other != mlp
    assert mlp.replace(provenance={**mlp.provenance, "seed": 1}) != mlp
    with pytest.raises(TypeError):
        hash(mlp)


def test_operators_compare_by_value():
    assert Dense(np.ones((2, 3))) == Dense(np.ones((2, 3)))
    assert Dense(np.ones((2, 3))) != Dense(np.ones((2, 3), np.float32))
    conv = Conv2d(np.ones((1, 1, 2, 2)), (1, 3, 3))
    assert conv == Conv2d(np.ones((1, 1, 2, 2)), (1, 3, 3)) and conv != Conv2d(np.ones((1, 1, 2, 2)), (1, 3, 3), 2)
    assert Sparse.from_matrix(np.eye(2)) == Sparse.from_matrix(np.eye(2))


def test_whole_model_errors_list_every_offender():
    with pytest.raises(ModelError) as err:
        SpikingModel(
            InputSpec((2,)),
            [Population("a", (3,)), Population("a", (3,)), Population("b", (4,))],
            [Projection("p", "nowhere", "a", Dense(np.ones((3, 2)))),
             Projection("p", "input", "b", Dense(np.ones((4, 5)))),
             Projection("back", "b", "a", Dense(np.ones((3, 4))))],
            output="zzz",
        )
    msg = str(err.value)
    assert "6 problem(s)" in msg
    assert "Projection 'p': name is used more than once" in msg
    assert "Population 'a': name is used more than once" in msg
    assert "Projection 'p': source 'nowhere' is not a population" in msg
    assert "dense input size must equal the size of 'input', 2, got 5" in msg
    assert "Projection 'back': delay-0 projection from 'b' to 'a' goes against the population order" in msg
    assert "output 'zzz' is not a population" in msg


def test_cycles_are_allowed_through_delayed_edges():
    pops = [Population("a", (3,)), Population("b", (3,))]
    projs = [Projection("ab", "a", "b", Dense(np.eye(3))), Projection("ba", "b", "a", Dense(np.eye(3)), delay=1),
             Projection("in", "input", "a", Dense(np.ones((3, 2))))]
    assert SpikingModel(InputSpec((2,)), pops, projs).output == "b"
    with pytest.raises(ModelError, match="goes against the population order"):
        SpikingModel(InputSpec((2,)), pops, [*projs[:1], Projection("ba", "b", "a", Dense(np.eye(3))), projs[2]])


def test_conv_shapes_must_match_populations():
    conv = Conv2d(np.ones((4, 1, 3, 3)), input_shape=(1, 8, 8))
    with pytest.raises(ModelError, match=r"conv2d output shape must equal the shape of 'c', \(4, 5, 5\), "
                                         r"got \(4, 6, 6\)"):
        SpikingModel(InputSpec((1, 8, 8)), [Population("c", (4, 5, 5))], [Projection("c", "input", "c", conv)])
    with pytest.raises(ModelError, match="input_shape must equal the shape of 'input'"):
        SpikingModel(InputSpec((64,)), [Population("c", (4, 6, 6))], [Projection("c", "input", "c", conv)])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "izhikevich"}, "kind must be one of 'if', 'lif', 'srm', 'cuba_lif', 'li', 'cuba_li', 'i', 'threshold', got 'izhikevich'"),
        ({"reset": "soft"}, "reset must be one of 'subtract', 'zero', got 'soft'"),
        ({"threshold": 0.0}, "threshold must be > 0, got 0.0"),
        ({"threshold": np.array([1.0, -1.0])}, "threshold must be > 0"),
        ({"kind": "if", "beta": 0.9}, "beta must be 1.0 for kind 'if'"),
        ({"kind": "lif", "beta": 1.5}, "beta must be > 0 and <= 1"),
        ({"kind": "srm"}, "tau_syn \\(seconds\\) is required for kind 'srm'"),
        ({"kind": "lif", "tau_syn": 1e-3}, "tau_syn applies only to kinds 'srm', 'cuba_lif' and 'cuba_li'"),
        ({"v_reset": float("nan")}, "v_reset must be finite"),
    ],
)
def test_neuron_spec_errors(kwargs, match):
    with pytest.raises(ModelError, match=match):
        NeuronSpec(**kwargs)


def test_population_errors_name_the_layer():
    with pytest.raises(ModelError, match=r"Population 'fc2': threshold must be a scalar or have shape \(128,\)"):
        Population("fc2", (128,), NeuronSpec(threshold=np.ones(64)))
    with pytest.raises(ModelError, match=r"Population 'fc2': bias must have shape \(128,\), got \(64,\)"):
        Population("fc2", (128,), bias=np.ones(64))
    with pytest.raises(ModelError, match="reserved for the model input"):
        Population("input", (3,))
    with pytest.raises(ModelError, match="name must be an identifier"):
        Population("fc/2", (3,))
    with pytest.raises(ModelError, match="shape must be a tuple of positive integers"):
        Population("a", (3, 0))


def test_projection_and_sparse_errors():
    with pytest.raises(ModelError, match="delay must be an integer number of steps >= 0, got -1"):
        Projection("p", "input", "a", Dense(np.ones((1, 1))), delay=-1)
    with pytest.raises(ModelError, match="indptr must start at 0 and never decrease"):
        Sparse(np.ones(2), np.array([0, 1]), np.array([0, 2, 1]), (2, 2))
    with pytest.raises(ModelError, match=r"indices must lie in \[0, 2\), got range \[0, 5\]"):
        Sparse(np.ones(2), np.array([0, 5]), np.array([0, 1, 2]), (2, 2))
    with pytest.raises(ModelError, match="indptr must have length n_out \\+ 1 = 3"):
        Sparse(np.ones(2), np.array([0, 1]), np.array([0, 2]), (2, 2))
    with pytest.raises(ModelError, match="kernel \\(5, 5\\) with padding \\(0, 0\\) does not fit"):
        Conv2d(np.ones((1, 1, 5, 5)), input_shape=(1, 3, 3))


def test_provenance_is_normalised_and_checked():
    m = SpikingModel(InputSpec((1,)), [Population("a", (1,))],
                     [Projection("p", "input", "a", Dense(np.ones((1, 1))))],
                     provenance={"t": (1, 2), "n": np.float32(0.5), "d": {"x": np.arange(2)}})
    assert m.provenance["t"] == [1, 2] and type(m.provenance["n"]) is float
    with pytest.raises(TypeError):
        m.provenance["t"] = 3  # read-only
    with pytest.raises(ModelError, match="provenance/obj must be str, int, float"):
        m.replace(provenance={"obj": object()})
    with pytest.raises(ModelError, match="reserved prefix 'encoding-'"):
        m.replace(provenance={"encoding-type": "x"})


def test_conv_operator_matches_torch_and_its_unrolled_matrix():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 2))
    conv = Conv2d(w, (3, 7, 6), stride=(2, 1), padding=(1, 2))
    x = rng.standard_normal((5, 3 * 7 * 6))
    ref = torch.nn.functional.conv2d(torch.tensor(x).reshape(5, 3, 7, 6), torch.tensor(w), stride=(2, 1),
                                     padding=(1, 2)).reshape(5, -1).numpy()
    np.testing.assert_allclose(conv.forward(x), ref, atol=1e-12)
    np.testing.assert_allclose((conv.to_csr() @ x.T).T, ref, atol=1e-12)
    np.testing.assert_allclose(Sparse.from_matrix(conv.to_csr()).forward(x), ref, atol=1e-12)


def test_synapse_counts_include_conv_borders_and_skip_zero_weights():
    w = np.ones((1, 1, 3, 3))
    w[0, 0, 0, 0] = 0.0  # one tap pruned
    conv = Conv2d(w, (1, 3, 3), padding=1)  # 3x3 output, taps outside the 3x3 input are not synapses
    # Each output pixel sees the 3x3 window clipped to the image: 4+6+4+6+9+6+4+6+4 = 49 connections.
    assert conv.n_connections() == 49
    # The pruned top-left tap reads pixel (y-1, x-1), inside the image for the 4 outputs with y, x >= 1.
    assert conv.n_synapses() == 49 - 4
    d = Dense(np.array([[0.0, 1.0], [2.0, 0.0]]))
    assert (d.n_synapses(), d.n_connections()) == (2, 4)


def test_ann_forward_is_the_rate_model(mlp):
    x = np.random.default_rng(0).random((3, 1, 28, 28)).astype(np.float32)
    acts = mlp.ann_forward(x)
    w1, w2 = (pr.op.weight for pr in mlp.projections)
    h = np.maximum(x.reshape(3, -1) @ w1.T, 0)
    np.testing.assert_allclose(acts["fc1"], h, rtol=1e-5)
    np.testing.assert_allclose(acts["fc2"], np.maximum(h @ w2.T, 0), rtol=1e-5)
    assert mlp.ann_forward(x, clip_rates=True)["fc1"].max() <= 1
    with pytest.raises(ModelError, match=r"x must have shape \(batch, 1, 28, 28\), got \(3, 784\)"):
        mlp.ann_forward(x.reshape(3, -1))


def test_repr_and_summary(everything):
    r = repr(everything)
    assert r.startswith("SpikingModel(input=(2, 7, 7) poisson") and "neurons=69" in r
    s = everything.summary()
    for text in ["3 populations", "69 neurons", "5 projections", "2,019 synapses",
                 "conv2d 2→3 3x3 stride=2 padding=1", "srm θ=0.75", "zero→-0.25", "percentile: 99.9"]:
        assert text in s, text
    assert "Population('fc1', shape=(16,)" in repr(everything.population("fc1"))
    with pytest.raises(KeyError, match="no population 'nope'"):
        everything.population("nope")


def test_with_neuron_replaces_every_population_and_keeps_the_rest():
    from factories import make_everything
    model = make_everything()
    lif = NeuronSpec(kind="lif", beta=0.9, threshold=0.5, reset="zero")
    new = model.with_neuron(lif)
    assert all(p.neuron == lif for p in new.populations)
    assert [(p.name, p.shape) for p in new.populations] == [(p.name, p.shape) for p in model.populations]
    assert new.replace(populations=model.populations) == model  # projections, input, provenance kept
    assert model == make_everything()  # the original is untouched
