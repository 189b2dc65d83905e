"""NIR exchange: exact round trips of converted models, every primitive's import checked against torch or numpy,
refusals that name the node, and hostile files."""

import dataclasses
import json
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

nir = pytest.importorskip("nir", reason="the nir package is evsnn's NIR dependency (extra 'nir')")

import evsnn  # noqa: E402
from evsnn import ConversionError, Dense, FormatError, InputSpec, NeuronSpec, Population, Projection  # noqa: E402
from evsnn import SpikingModel, Sparse, convert  # noqa: E402
from evsnn.io.nir import NirWarning, from_nir, hard_reset, read_nir, to_nir, write_nir  # noqa: E402

from factories import make_everything  # noqa: E402

DT = 1e-3


def exported(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NirWarning)
        return to_nir(model)


class ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        y = F.relu(self.conv2(h) + h)
        return self.fc(self.pool(y).flatten(1))


def without_srm(model):
    """The factory's model in what NIR can say: its SRM population becomes a LIF, conv biases one per channel."""
    pops = []
    for p in model.populations:
        if p.neuron.kind == "srm":
            p = dataclasses.replace(p, neuron=NeuronSpec("lif", beta=0.8))
        if p.bias is not None and len(p.shape) == 3:
            p = dataclasses.replace(p, bias=np.broadcast_to(p.bias[:, :1, :1], p.shape).copy())
        pops.append(p)
    return model.replace(populations=pops)


def converted_models():
    torch.manual_seed(0)
    calib = np.random.default_rng(0).random((16, 1, 6, 6))
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(36, 12), nn.ReLU(), nn.Linear(12, 4))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 6, 2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(6, 3))
    out = {
        "mlp": convert(mlp, input_shape=(1, 6, 6), norm="data", calibration=calib),
        "mlp_lif_zero": convert(mlp, input_shape=(1, 6, 6), norm="data", calibration=calib,
                                neuron=NeuronSpec("lif", beta=0.9, reset="zero", v_reset=-0.25)),
        "cnn_folded_pooling": convert(cnn, input_shape=(1, 6, 6), norm="data", calibration=calib),
        "residual": convert(ResidualNet(), input_shape=(1, 6, 6), norm="data", calibration=calib),
        "recurrent_and_sparse": without_srm(make_everything()),
    }
    return out


MODELS = converted_models()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_round_trip_is_bit_exact(name, tmp_path):
    model = MODELS[name]
    assert from_nir(exported(model), dt=model.dt) == model
    path = tmp_path / "m.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NirWarning)
        write_nir(model, path)
    assert nir.read(str(path)) is not None  # nir's own reader (type checks included) accepts the file
    assert from_nir(path, dt=model.dt) == model


def test_the_cnn_keeps_its_folded_convolution_and_the_recurrent_model_its_delays():
    graph = exported(MODELS["cnn_folded_pooling"])
    convs = [n for n in graph.nodes.values() if isinstance(n, nir.Conv2d)]
    assert [c.weight.shape for c in convs] == [(4, 1, 3, 3), (6, 4, 4, 4)]  # pooling folded into conv2
    everything = MODELS["recurrent_and_sparse"]
    delays = sorted(int(round(n.delay.flat[0] / everything.dt)) for n in exported(everything).nodes.values()
                    if isinstance(n, nir.Delay))
    assert delays == sorted(pr.delay for pr in everything.projections if pr.delay)


def test_export_warns_what_other_tools_will_run_differently():
    with pytest.warns(NirWarning, match="spikes at v >= threshold"):
        to_nir(MODELS["mlp"])


def test_without_metadata_the_nir_semantics_give_the_same_spikes_on_spike_input():
    """A converted MLP read back from its NIR nodes alone (ODE form, strict threshold) runs like the original.

    The MLP is the one whose reset the installed nir can say: a hard reset (nir >= 1.0.5) or a subtracting one
    (nir <= 1.0.4); the other reset lives only in the metadata.
    """
    model = MODELS["mlp_lif_zero" if hard_reset() else "mlp"]
    graph = exported(model)
    graph.metadata = {}
    plain = from_nir(graph, dt=model.dt)
    assert plain != model and all(p.neuron.ode or p.neuron.kind == "threshold" for p in plain.populations)
    x = np.random.default_rng(1).random((6, 1, 6, 6)) * 0.5
    a = evsnn.simulate(model, x, steps=40, encoding="poisson", dtype="float64", seed=3)
    b = evsnn.simulate(plain, x, steps=40, encoding="poisson", dtype="float64", seed=3)
    assert a.spike_counts["fc1"].sum() > 0
    for name in a.spike_counts:
        np.testing.assert_array_equal(a.spike_counts[name], b.spike_counts[name])


# --- every primitive ------------------------------------------------------------------------------------------------
def graph(*nodes, shape, **options):
    chain = {"input": nir.Input(input_type={"input": np.array(shape)})}
    for i, node in enumerate(nodes):
        chain[f"n{i}"] = node
    last = nodes[-1]
    chain["output"] = nir.Output(output_type={"output": np.array(last.output_type["output"])})
    keys = list(chain)
    return nir.NIRGraph(nodes=chain, edges=list(zip(keys[:-1], keys[1:])), **options)


def lif(n, **kw):
    p = dict(tau=np.full(n, 0.01), r=np.full(n, 2.0), v_leak=np.full(n, 0.1), v_threshold=np.full(n, 1.5))
    return nir.LIF(**{**p, **kw})


NEURON_NODES = ["IF", "LIF", "CubaLIF", "LI", "CubaLI", "I", "Threshold"]


def neuron_node(kind, n):
    """A NIR neuron node with per-neuron parameters (seeded), and those parameters: tau, r, v_leak, threshold."""
    if not hasattr(nir, kind):
        pytest.skip(f"the installed nir {nir.version} has no {kind} node")
    rng = np.random.default_rng(0)
    tau, r, leak, th = rng.uniform(5e-3, 2e-2, n), rng.uniform(0.5, 2, n), rng.normal(size=n), rng.uniform(1, 2, n)
    reset = {"v_reset": rng.normal(size=n)} if hard_reset() else {}
    node = {"IF": lambda: nir.IF(r=r, v_threshold=th, **reset),
            "LIF": lambda: nir.LIF(tau=tau, r=r, v_leak=leak, v_threshold=th, **reset),
            "CubaLIF": lambda: nir.CubaLIF(tau_syn=tau / 2, tau_mem=tau, r=r, v_leak=leak, v_threshold=th,
                                           w_in=r * 3, **reset),
            "LI": lambda: nir.LI(tau=tau, r=r, v_leak=leak),
            "CubaLI": lambda: nir.CubaLI(tau_syn=tau / 2, tau_mem=tau, r=r, v_leak=leak, w_in=r * 3),
            "I": lambda: nir.I(r=r),
            "Threshold": lambda: nir.Threshold(threshold=th)}[kind]()
    return node, (tau, r, leak, th)


@pytest.mark.parametrize("kind", NEURON_NODES)
def test_neuron_nodes_import_with_their_parameters(kind):
    n = 3
    node, (tau, r, leak, th) = neuron_node(kind, n)
    model = from_nir(graph(nir.Linear(weight=np.eye(n)), node, shape=(n,)), dt=DT)
    spec = model.populations[0].neuron
    assert spec.kind == {"IF": "if", "LIF": "lif", "CubaLIF": "cuba_lif", "LI": "li", "CubaLI": "cuba_li", "I": "i",
                         "Threshold": "threshold"}[kind]
    assert model.readout == ("membrane" if kind in ("LI", "CubaLI", "I") else "count")
    if kind != "Threshold":
        np.testing.assert_array_equal(spec.r, r)
    if kind in ("LIF", "LI"):
        np.testing.assert_array_equal(spec.tau_mem, tau)
    if kind.startswith("Cuba"):
        np.testing.assert_array_equal(spec.tau_syn, tau / 2)
        np.testing.assert_array_equal(spec.w_in, r * 3)
    if spec.spiking:
        np.testing.assert_array_equal(spec.threshold, th)
        assert spec.strict_threshold
        if kind != "Threshold":
            assert spec.reset == ("zero" if hard_reset() else "subtract")


@pytest.mark.parametrize("kind", NEURON_NODES)
def test_imported_neurons_save_and_load_bit_for_bit(kind, tmp_path):
    """Every NIR neuron, with its per-neuron parameters, survives the evsnn file (population encoding 1.1.0)."""
    model = from_nir(graph(nir.Linear(weight=np.eye(3)), neuron_node(kind, 3)[0], shape=(3,)), dt=DT)
    evsnn.save(model, tmp_path / "m.h5")
    assert evsnn.load(tmp_path / "m.h5") == model
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f["populations/n1"].attrs["encoding-version"] == b"1.1.0"


def composed(g, n_in):
    model = from_nir(g, dt=DT)
    (pr,) = model.projections
    x = np.random.default_rng(5).normal(size=(2, n_in))
    return pr, pr.op.forward(x), x


def test_conv2d_with_stride_padding_dilation_and_groups_equals_torch():
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(6, 2, 3, 3)), rng.normal(size=6)  # square: nir 1.0.4 infers widths from kernel rows
    conv = nir.Conv2d(input_shape=(7, 8), weight=w, stride=np.array([2, 1]), padding=np.array([1, 2]),
                      dilation=np.array([2, 1]), groups=2, bias=b)
    out_shape = tuple(conv.output_type["output"])
    neuron = nir.LIF(tau=np.full(out_shape, 0.01), r=np.ones(out_shape), v_leak=np.zeros(out_shape),
                     v_threshold=np.ones(out_shape))
    # nir >= 1.0.5 types a Conv2d's input with weight.shape[1] channels, not groups * weight.shape[1]: its own
    # type check refuses every grouped convolution, so the graph is built without it (evsnn checks shapes itself)
    ignores_groups = conv.input_type["input"] is not None and conv.input_type["input"][0] != 4
    g = graph(conv, neuron, shape=(4, 7, 8), **({"type_check": False} if ignores_groups else {}))
    pr, y, x = composed(g, 4 * 7 * 8)
    ref = F.conv2d(torch.tensor(x.reshape(2, 4, 7, 8)), torch.tensor(w), None, stride=(2, 1), padding=(1, 2),
                   dilation=(2, 1), groups=2).numpy().reshape(2, -1)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)
    model = from_nir(g, dt=DT)
    np.testing.assert_array_equal(model.populations[0].bias, np.broadcast_to(b[:, None, None], out_shape))


@pytest.mark.parametrize("pool", ["SumPool2d", "AvgPool2d"])
def test_pooling_then_flatten_then_affine_compose_into_one_map(pool):
    rng = np.random.default_rng(2)
    node = getattr(nir, pool)(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    w, b = rng.normal(size=(5, 3 * 2 * 2)), rng.normal(size=5)
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3, 4, 4])}), "pool": node,
                            "flat": nir.Flatten(input_type={"input": np.array([3, 2, 2])}, start_dim=0, end_dim=-1),
                            "fc": nir.Affine(weight=w, bias=b), "lif": lif(5),
                            "output": nir.Output(output_type={"output": np.array([5])})},
                     edges=[("input", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")])
    pr, y, x = composed(g, 48)
    pooled = F.avg_pool2d(torch.tensor(x.reshape(2, 3, 4, 4)), 2).numpy() * (4 if pool == "SumPool2d" else 1)
    np.testing.assert_allclose(y, pooled.reshape(2, -1) @ w.T, rtol=0, atol=1e-12)
    model = from_nir(g, dt=DT)
    np.testing.assert_array_equal(model.populations[0].bias, b)


def test_scale_conv1d_and_delay():
    rng = np.random.default_rng(3)
    s, w = rng.normal(size=(2, 6)), rng.normal(size=(3, 2, 3))
    conv = nir.Conv1d(input_shape=6, weight=w, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(3))
    out = tuple(conv.output_type["output"])
    neuron = nir.IF(r=np.ones(out), v_threshold=np.ones(out))
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2, 6])}), "scale": nir.Scale(scale=s),
                            "conv": conv, "delay": nir.Delay(delay=np.full(out, 3e-3)), "if": neuron,
                            "output": nir.Output(output_type={"output": np.array(out)})},
                     edges=[("input", "scale"), ("scale", "conv"), ("conv", "delay"), ("delay", "if"), ("if", "output")])
    pr, y, x = composed(g, 12)
    ref = F.conv1d(torch.tensor((x.reshape(2, 2, 6) * s)), torch.tensor(w), padding=1).numpy().reshape(2, -1)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)
    assert pr.delay == 3


def test_a_nested_recurrent_subgraph_becomes_a_delayed_self_projection():
    """snnTorch writes a recurrent layer as a subgraph: input -> lif, lif -> w_rec -> lif, lif -> output."""
    n = 4
    w_rec = np.random.default_rng(4).normal(size=(n, n))
    inner = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([n])}), "lif": lif(n),
                                "w_rec": nir.Linear(weight=w_rec),
                                "output": nir.Output(output_type={"output": np.array([n])})},
                         edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    outer = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}),
                                "fc": nir.Linear(weight=np.ones((n, 3))), "rnn": inner,
                                "output": nir.Output(output_type={"output": np.array([n])})},
                         edges=[("input", "fc"), ("fc", "rnn"), ("rnn", "output")])
    model = from_nir(outer, dt=DT)
    assert [p.name for p in model.populations] == ["rnn_lif"]
    rec = [pr for pr in model.projections if pr.source == pr.target == "rnn_lif"]
    assert len(rec) == 1 and rec[0].delay == 1
    np.testing.assert_array_equal(rec[0].op.weight, w_rec)
    assert model.provenance["recurrent_edges_delayed_one_step"] == [rec[0].name]


# --- refusals ----------------------------------------------------------------------------------------------------------
def test_unsupported_nodes_and_shapes_are_refused_by_name():
    from dataclasses import dataclass

    @dataclass(eq=False)
    class Izhikevich(nir.NIRNode):
        a: np.ndarray

        def __post_init__(self):
            self.input_type = {"input": np.array(self.a.shape)}
            self.output_type = {"output": np.array(self.a.shape)}

    g = graph(nir.Linear(weight=np.eye(2)), Izhikevich(a=np.ones(2)), shape=(2,))
    with pytest.raises(ConversionError, match=r"NIR node 'n1' \(Izhikevich\): .*not supported"):
        from_nir(g, dt=DT)
    with pytest.raises(ConversionError, match=r"Output node 'output' must be fed by one neuron node.*Affine"):
        from_nir(graph(nir.Linear(weight=np.eye(2)), lif(2), nir.Affine(weight=np.eye(2), bias=np.zeros(2)),
                       shape=(2,)), dt=DT)
    g = graph(nir.Delay(delay=np.full(2, 1.5e-3)), lif(2), shape=(2,))
    with pytest.raises(ConversionError, match=r"NIR node 'n0' \(Delay\): delay 0.0015 s is not a whole number"):
        from_nir(g, dt=DT)
    with pytest.raises(evsnn.InputError, match="dt must be a positive number of seconds"):
        from_nir(g, dt=0)
    bad = graph(nir.Linear(weight=np.eye(2)), lif(2, tau=np.array([0.01, -1.0])), shape=(2,))
    with pytest.raises(ConversionError, match=r"NIR node 'n1' \(LIF\): .*tau_mem must be > 0"):
        from_nir(bad, dt=DT)


def test_srm_has_no_nir_primitive():
    model = SpikingModel(InputSpec((2,)), [Population("srm", (1,), NeuronSpec("srm", tau_syn=1e-3, tau_refr=1e-3))],
                         [Projection("w", "input", "srm", Dense(np.ones((1, 2))))])
    with pytest.raises(ConversionError, match="Population 'srm': kind 'srm' has no NIR primitive"):
        to_nir(model)


# --- hostile files -------------------------------------------------------------------------------------------------------
@pytest.fixture
def nir_file(tmp_path):
    path = tmp_path / "m.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NirWarning)
        write_nir(MODELS["mlp"], path)
    return path


def test_an_external_link_is_refused_before_nir_reads(nir_file, tmp_path):
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["weight"] = np.ones((12, 36))
    with h5py.File(nir_file, "r+") as f:
        del f["node/nodes/fc1_op/weight"]
        f["node/nodes/fc1_op/weight"] = h5py.ExternalLink(str(secret), "/weight")
    with pytest.raises(FormatError, match=r"m.nir:/node/nodes/fc1_op/weight: external link .* refused"):
        read_nir(nir_file)


def test_a_malformed_node_is_named(nir_file):
    with h5py.File(nir_file, "r+") as f:
        del f["node/nodes/fc1/v_threshold"]
        f["node/nodes/fc1/v_threshold"] = np.ones(5)  # 12 neurons
    with pytest.raises(FormatError, match=r"not a valid NIR graph: /node/nodes/fc1 \(IF\)"):
        read_nir(nir_file)


def test_not_hdf5_truncated_and_missing(tmp_path, nir_file):
    junk = tmp_path / "junk.nir"
    junk.write_bytes(b"not a graph")
    with pytest.raises(FormatError, match="does not start with the HDF5 signature"):
        read_nir(junk)
    short = tmp_path / "short.nir"
    short.write_bytes(nir_file.read_bytes()[:600])
    with pytest.raises(FormatError, match="short.nir"):
        read_nir(short)
    with pytest.raises(FileNotFoundError):
        read_nir(tmp_path / "none.nir")


def test_a_parameter_numpy_cannot_read_is_refused_by_node_and_field():
    n = 3
    node = nir.LI(tau=np.full(n, 0.01), r=np.ones(n), v_leak=np.zeros(n))
    node.tau = torch.nn.Parameter(torch.full((n,), 0.01))  # what Rockpool 3.1.0's to_nir leaves in an LI node
    g = graph(nir.Linear(weight=np.ones((n, 2))), node, shape=(2,), type_check=False)
    with pytest.raises(ConversionError, match=r"NIR node 'n1' \(LI\): tau must be a numeric array, got a "
                                              r"torch.*Parameter"):
        from_nir(g, dt=DT)


def test_cli_import_export_and_a_bad_file_without_traceback(tmp_path, nir_file):
    model_h5 = tmp_path / "m.h5"
    evsnn.save(MODELS["mlp"], model_h5)
    run = lambda *args: subprocess.run([sys.executable, "-m", "evsnn", *map(str, args)],  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    done = run("export", model_h5, tmp_path / "out.nir")
    assert done.returncode == 0, done.stderr
    assert "spikes at v >= threshold" in done.stderr
    done = run("import", tmp_path / "out.nir", tmp_path / "back.h5", "--dt", "1e-3")
    assert done.returncode == 0, done.stderr
    assert evsnn.load(tmp_path / "back.h5") == MODELS["mlp"]
    done = run("info", tmp_path / "out.nir")
    assert done.returncode == 2 and "--dt" in done.stderr
    with h5py.File(nir_file, "r+") as f:
        del f["node/nodes/fc1/v_threshold"]
        f["node/nodes/fc1/v_threshold"] = np.ones(5)
    done = run("info", nir_file, "--dt", "1e-3")
    assert done.returncode == 1 and "Traceback" not in done.stderr and "/node/nodes/fc1 (IF)" in done.stderr


def test_cli_imports_and_runs_an_ode_form_graph(tmp_path):
    """NIR's own neurons (no evsnn metadata) import into an evsnn file, which runs as the graph itself does."""
    cuba, _ = neuron_node("CubaLIF", 3)
    li, _ = neuron_node("LI", 3)
    nir.write(str(tmp_path / "g.nir"), graph(nir.Linear(weight=np.eye(3) * 40), cuba, nir.Linear(weight=np.eye(3)), li,
                                             shape=(3,)))
    np.save(tmp_path / "x.npy", np.random.default_rng(2).random((4, 3)))
    run = lambda *args: subprocess.run([sys.executable, "-m", "evsnn", *map(str, args)],  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    done = run("import", tmp_path / "g.nir", tmp_path / "g.h5", "--dt", "1e-3")
    assert done.returncode == 0, done.stderr
    model = evsnn.load(tmp_path / "g.h5")
    assert model == from_nir(tmp_path / "g.nir", dt=1e-3) and model.population("n1").neuron.kind == "cuba_lif"
    outputs = []
    for source in (["g.h5"], ["g.nir", "--dt", "1e-3"]):
        done = run("run", tmp_path / source[0], *source[1:], "--steps", "20", "--data", tmp_path / "x.npy", "--json")
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout)["spikes_per_neuron_per_step"])
    assert outputs[0] == outputs[1] and outputs[0]["n1"] > 0  # liveness: the CubaLIF spikes
