"""evsnn.energy: every operation class on hand-computed networks, presets, the raster cross-check, outputs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

import evsnn
from evsnn import Conv2d, Dense, InputSpec, NeuronSpec, Population, Projection, Sparse, SpikingModel
from evsnn.cli import main
from evsnn.encoding import encode
from evsnn.energy import (PRESETS, EnergyPreset, OpSeries, ann_ops_ir, ann_ops_torch, energy_report, event_ops,
                          get_preset, load_preset, report_from_ops, snn_ops, sops_from_rasters)
from evsnn.errors import DependencyError, EngineError, FormatError, InputError
from evsnn.io.datasets import mnist_split
from evsnn.training import diehl_cnn, diehl_mlp
from factories import make_mlp
from test_event_engine import brute_fan_out, brute_sops


def totals(rep):
    return {op: v["count"]["mean"] for op, v in rep.to_dict()["snn"]["totals"].items()}


# --- hand-computed networks ------------------------------------------------------------------
def two_layer():
    """3 regular inputs -> 2 IF -> 1 IF, with zero weights (see test_dense_sops_by_hand for the spikes)."""
    return SpikingModel(
        input=InputSpec((3,), encoding="regular"),  # max_rate 1000 Hz, dt 1 ms: p = x per step
        populations=[Population("h", (2,)), Population("out", (1,))],
        projections=[
            Projection("w1", "input", "h", Dense(np.array([[1.0, 0.0, 1.0], [0.5, 0.5, 0.0]], np.float32))),
            Projection("w2", "h", "out", Dense(np.array([[1.0, 0.0]], np.float32))),
        ],
    )


X_TWO = np.array([[1.0, 0.5, 0.0]])


def test_dense_sops_by_hand():
    # Input spikes (regular, p = x): neuron 0 at steps 0,1,2,3; neuron 1 at steps 1,3; neuron 2 never.
    # w1 synapses per input (non-zero weights): 2, 1, 1; nominal: 2, 2, 2.
    # h0 receives 1.0 every step and spikes every step; h1 receives 0.5, 1.0, 0.5, 1.0: v = 0.5, 1.5 (spike),
    # 1.0 (spike), 1.0 (spike). w2 synapses per h neuron: 1, 0 (non-zero); 1, 1 (nominal).
    m = two_layer()
    res = evsnn.simulate(m, X_TWO, steps=4, record="all")
    assert res.spike_counts["h"].tolist() == [[1, 2, 2, 2]]
    ops = {(s.item, s.op): s for s in snn_ops(res, m)}
    assert ops["w1", "sop"].per_step.tolist() == [2, 3, 2, 3]
    assert ops["w2", "sop"].per_step.tolist() == [1, 1, 1, 1]
    assert ops["h", "update_if"].per_sample.tolist() == [8] and ops["out", "update_if"].per_sample.tolist() == [4]
    nominal = {(s.item, s.op): s for s in snn_ops(res, m, sop_convention="nominal")}
    assert nominal["w1", "sop"].per_step.tolist() == [2, 4, 2, 4]
    assert nominal["w2", "sop"].per_step.tolist() == [1, 2, 2, 2]

    rep = energy_report(res, m, x=X_TWO, labels=np.array([0]))
    d = rep.to_dict()
    assert totals(rep) == {"sop": 14, "update_if": 12}
    assert d["snn"]["energy_pj"]["mean"] == pytest.approx((14 + 12) * 0.9)  # SOP and IF update: one fp32 add
    # ANN (the IR's dense equivalent): w1 6 MACs, 4 effective (inputs 0 and 1 non-zero, 2 connections each);
    # w2 2 MACs, both effective (h's rates 1 and 0.75 are non-zero).
    assert d["ann"]["dense_macs"] == 8 and d["ann"]["effective_macs"]["mean"] == 6
    assert d["ann"]["energy_pj"]["dense"] == pytest.approx(8 * 4.6)
    assert d["ratios"]["snn_over_ann_energy_dense"] == pytest.approx(26 * 0.9 / (8 * 4.6))
    assert d["ratios"]["snn_over_ann_energy_effective"] == pytest.approx(26 * 0.9 / (6 * 4.6))
    assert d["ratios"]["sops_per_ann_mac_dense"] == pytest.approx(14 / 8)
    assert d["spikes_per_neuron_per_step"]["h"] == pytest.approx(7 / 8)
    rep_nominal = energy_report(res, m, sop_convention="nominal")
    assert totals(rep_nominal)["sop"] == 19 and "structural connection" in rep_nominal.policy["SOPs"]


def conv_model():
    """A 3x3 convolution, stride 2, padding 1, over a 1x4x4 input; channel 1 has two zero taps."""
    w = np.ones((2, 1, 3, 3), np.float32)
    w[1, 0, 1, 1] = w[1, 0, 0, 0] = 0.0
    op = Conv2d(w, (1, 4, 4), stride=2, padding=1)  # -> (2, 2, 2)
    return SpikingModel(InputSpec((1, 4, 4), encoding="regular"),
                        [Population("c", (2, 2, 2), NeuronSpec(threshold=100.0))],
                        [Projection("conv", "input", "c", op)]), w


def conv_input():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = x[0, 0, 3, 3] = 1.0  # each spikes at every step
    return x


def test_conv_sops_with_borders_and_stride_by_hand():
    # Output row oy covers input rows 2*oy - 1 .. 2*oy + 1. Input row 0 reaches output row 0 only
    # (tap 1); row 1 reaches rows 0 and 1 (taps 2 and 0); row 3 reaches row 1 only (tap 2). So:
    #   pixel (0,0): 1 position, tap (1,1): nominal 2 synapses; non-zero 1 (channel 1's centre is 0)
    #   pixel (1,1): 4 positions, taps (2,2),(2,0),(0,2),(0,0): nominal 8; non-zero 7 (channel 1's (0,0) is 0)
    #   pixel (3,3): 1 position, tap (2,2): nominal 2; non-zero 2
    # A count that ignores borders and stride (kernel x channels per spike) would give 18 per pixel.
    m, _ = conv_model()
    x = conv_input()
    res = evsnn.simulate(m, x, steps=3)
    assert res.sops["conv"].tolist() == [[10, 10, 10]]
    assert res.sops_nominal["conv"].tolist() == [[12, 12, 12]]
    rep = energy_report(res, m, x=x)
    assert totals(rep) == {"sop": 30, "update_if": 24}
    # The ANN equivalent: dense = 8 outputs x 9 taps (padding taps included) = 72; effective = the non-zero
    # pixels' connections (padding excluded): 2 + 8 + 2 = 12.
    (layer,) = rep.ann
    assert layer.dense_macs == 72 and layer.effective_macs.tolist() == [12]


def test_torch_conv_macs_with_borders_and_stride_match_the_ir():
    m, w = conv_model()
    x = conv_input()
    conv = nn.Conv2d(1, 2, 3, stride=2, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
    (layer,) = ann_ops_torch(nn.Sequential(conv), x)
    assert (layer.dense_macs, layer.effective_macs.tolist(), layer.bias_adds) == (72, [12], 0)
    assert layer.detail == "Conv2d 1→2 3x3 stride=2 padding=1"


def test_analog_first_layer_macs_per_step_and_once():
    w = np.array([[1, 0, 2, 0], [0, 0, 1, 1], [1, 1, 1, 1]], np.float32) * 0.1
    m = SpikingModel(InputSpec((4,)), [Population("h", (3,), NeuronSpec(threshold=10.0))],
                     [Projection("fc", "input", "h", Dense(w))])
    x = np.array([[0.5, 0.0, 1.0, 0.25], [0.0, 0.0, 0.0, 0.0]])
    res = evsnn.simulate(m, x, steps=5)
    # Non-zero synapses per input: 2, 1, 3, 2. Sample 0's non-zero inputs 0, 2, 3: 2 + 3 + 2 = 7 per step.
    assert res.input_macs["fc"].tolist() == [[7] * 5, [0] * 5]
    per_step = energy_report(res, m, x=x)
    assert [s.per_sample.tolist() for s in per_step.snn if s.op == "input_mac"] == [[35, 0]]
    d = per_step.to_dict()
    # Sample 0: 35 MACs x 4.6 pJ + 15 IF updates x 0.9 pJ = 174.5 pJ; sample 1: 13.5 pJ.
    assert d["snn"]["energy_pj"] == pytest.approx({"mean": (174.5 + 13.5) / 2, "std": (174.5 - 13.5) / 2})
    once = energy_report(res, m, x=x, input_macs="once")
    (series,) = [s for s in once.snn if s.op == "input_mac"]
    assert series.per_sample.tolist() == [7, 0] and series.per_step.tolist() == [3.5, 0, 0, 0, 0]
    assert "once (first step only)" in once.policy["analog input"]
    # The ANN's first layer: 12 dense MACs; effective 3 non-zero inputs x 3 connections = 9, and 0.
    assert once.ann[0].dense_macs == 12 and once.ann[0].effective_macs.tolist() == [9, 0]


def test_lif_population_and_bias_adds():
    m = SpikingModel(
        InputSpec((2,), encoding="regular"),
        [Population("h", (3,), NeuronSpec("lif", beta=0.5), bias=np.array([0.1, 0.0, 0.2], np.float32))],
        [Projection("fc", "input", "h", Dense(np.ones((3, 2), np.float32)))],
    )
    res = evsnn.simulate(m, np.array([[0.0, 0.0]]), steps=4)  # no input spikes: only updates and biases
    rep = energy_report(res, m)
    assert totals(rep) == {"update_lif": 12, "bias_add": 8}  # 3 neurons x 4 steps; 2 non-zero biases x 4
    energy = rep.to_dict()["snn"]["totals"]
    assert energy["update_lif"]["energy_pj"]["mean"] == pytest.approx(12 * 4.6)  # a LIF update: multiply-add
    assert energy["bias_add"]["energy_pj"]["mean"] == pytest.approx(8 * 0.9)
    assert rep.ann[0].bias_adds == 2


def test_graded_events_cost_their_synapses_as_macs_by_hand():
    """A 3x3 map through a 2x2 kernel [[1, 0], [2, 3]] (stride 1, no padding): the corner (0, 0) reaches one
    output, through tap (0, 0); the centre all four, but one through the zero tap (0, 1): 3 synapses; (0, 1)
    reaches taps (0, 1) (zero) and (0, 0): 1; (1, 2) taps (0, 1) and (1, 1): 1. Spikes (1) cost SOPs,
    other non-zero values graded MACs."""
    op = Conv2d(np.array([[[[1, 0], [2, 3]]]], np.float32), input_shape=(1, 3, 3))
    events = np.zeros((2, 9))
    events[0, 0], events[0, 4] = 1, 0.5  # step 0: corner spike, graded centre
    events[1, 1], events[1, 5], events[1, 4] = 0.25, 1, 1  # step 1: graded (0, 1), spikes at (1, 2) and the centre
    sops, graded = event_ops(events, op)
    assert sops.tolist() == [1, 1 + 3] and graded.tolist() == [3, 1]
    reference = brute_fan_out(op)[0]
    assert sops.tolist() == [(reference * (e == 1)).sum() for e in events]
    assert event_ops(events, op, nominal=True)[1].tolist() == [4, 2]  # every connection: centre 4, (0, 1) 2
    with pytest.raises(InputError, match="9 inputs"):
        event_ops(np.zeros((2, 8)), op)


@pytest.mark.parametrize("name, add, mult", [("cmos45-fp32", 0.9, 3.7), ("cmos45-fp16", 0.4, 1.1),
                                             ("cmos45-int8", 0.03, 0.2), ("cmos45-int32", 0.1, 3.1)])
def test_a_graded_event_is_priced_as_a_multiply_add_and_a_spike_as_an_add(name, add, mult):
    """One synapse reached by a spike and one by a graded event: Horowitz's add, and his multiply plus add."""
    series = [OpSeries("p", "projection", "sop", "", np.array([1]), np.array([1.0])),
              OpSeries("p", "projection", "graded_mac", "", np.array([1]), np.array([1.0]))]
    rep = report_from_ops(series, settings={"dt": 1e-3}, policy={}, preset=name)
    costs = {op: v["energy_pj"]["mean"] for op, v in rep.to_dict()["snn"]["totals"].items()}
    assert costs == pytest.approx({"sop": add, "graded_mac": add + mult})
    assert rep.energy_per_sample()[0] == pytest.approx(2 * add + mult)
    assert "1 graded MACs" in rep.brief() and "graded MAC" in rep.format()


def test_report_from_ops_names_unpriced_graded_events_and_bad_series():
    series = [OpSeries("p", "projection", "graded_mac", "", np.array([2, 4]), np.array([3.0]))]
    rep = report_from_ops(series, settings={"dt": 1e-3}, policy={}, preset="loihi")
    assert rep.unpriced() == ["graded_mac"] and "graded_mac" in rep.warnings[0]
    with pytest.raises(InputError, match="'dt'"):
        report_from_ops(series, settings={}, policy={})
    bad = OpSeries("q", "projection", "ann_mac", "", np.array([1, 1]), np.array([1.0]))
    with pytest.raises(InputError, match="'q'"):
        report_from_ops(series + [bad], settings={"dt": 1e-3}, policy={})


# --- presets -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, add, mac", [("cmos45-fp32", 0.9, 4.6), ("cmos45-fp16", 0.4, 1.5),
                                            ("cmos45-int8", 0.03, 0.23), ("cmos45-int32", 0.1, 3.2)])
def test_cmos_presets_are_horowitz_add_and_multiply(name, add, mac):
    p = PRESETS[name]
    assert p.cost("sop") == p.cost("update_if") == p.cost("bias_add") == p.cost("ann_bias_add") == add
    assert p.cost("input_mac") == p.cost("graded_mac") == p.cost("update_lif") == p.cost("ann_mac") \
        == pytest.approx(mac)
    # evsnn's SRM recursion per neuron and step: x = i + e*I, psp = a*(psp + g*x) (two multiply-adds),
    # i = a*x, r = b*r (with a's multiply: three multiplies), v = psp + r (an add)
    assert p.cost("update_srm") == pytest.approx(2 * mac + 3 * (mac - add) + add)
    assert "Horowitz" in p.source


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_energy_is_the_sum_of_counts_times_costs(name):
    m = SpikingModel(
        InputSpec((4,)),
        [Population("h", (3,), NeuronSpec("lif", beta=0.9, threshold=0.3), bias=np.array([0.1, 0, 0], np.float32)),
         Population("out", (2,), NeuronSpec(threshold=0.5))],
        [Projection("fc1", "input", "h", Dense(np.full((3, 4), 0.2, np.float32))),
         Projection("fc2", "h", "out", Dense(np.array([[1, 0, 1], [0, 1, 1]], np.float32)))],
    )
    x = np.random.default_rng(0).random((5, 4))
    res = evsnn.simulate(m, x, steps=20)
    rep = energy_report(res, m, x=x, preset=name)
    p = PRESETS[name]
    counts = {"sop": res.sops["fc2"].sum(1), "input_mac": res.input_macs["fc1"].sum(1),
              "update_lif": np.full(5, 60), "update_if": np.full(5, 40), "bias_add": np.full(5, 20)}
    assert counts["sop"].min() > 0
    expected = sum(c * p.cost(op) for op, c in counts.items() if p.cost(op) is not None)
    np.testing.assert_allclose(rep.energy_per_sample(), expected, rtol=1e-12)
    assert rep.unpriced() == [op for op in ("sop", "input_mac", "update_if", "update_lif", "bias_add")
                              if p.cost(op) is None]
    if p.cost("ann_mac") is None:
        assert rep.to_dict()["ratios"]["snn_over_ann_energy_dense"] is None
        assert "ANN energy: unpriced" in rep.format() and "gives no MAC cost" in rep.brief()


def test_neuromorphic_presets_with_a_cmos_ann_preset():
    m = two_layer()
    res = evsnn.simulate(m, X_TWO, steps=4)
    rep = energy_report(res, m, x=X_TWO, preset="loihi", ann_preset="cmos45-fp32")
    d = rep.to_dict()
    assert d["snn"]["energy_pj"]["mean"] == pytest.approx(14 * 23.6 + 12 * 81.0)
    assert d["ratios"]["snn_over_ann_energy_dense"] == pytest.approx((14 * 23.6 + 12 * 81.0) / (8 * 4.6))
    assert "ANN preset: cmos45-fp32" in rep.format()
    spinnaker = energy_report(res, m, preset="spinnaker").to_dict()
    assert spinnaker["snn"]["energy_pj"]["mean"] == pytest.approx(14 * 43_000 + 12 * 100_000)
    short = m.replace(dt=5e-4)
    assert "dt is 0.0005 s" in " ".join(energy_report(evsnn.simulate(short, X_TWO, steps=4), short,
                                                      preset="spinnaker").warnings)


def test_user_presets_from_toml_and_json(tmp_path):
    toml = tmp_path / "chip.toml"
    toml.write_text('name = "chip"\nsource = "made up for a test"\nadd_pj = 1.0\nmult_pj = 2.0\n'
                    'step_s = 1e-3\n[costs_pj]\nsop = 0.5\n')
    p = load_preset(toml)
    assert (p.name, p.cost("sop"), p.cost("input_mac"), p.cost("update_if"), p.step_s) == ("chip", 0.5, 3.0, 1.0,
                                                                                           1e-3)
    js = tmp_path / "events.json"
    js.write_text(json.dumps({"source": "a datasheet", "costs_pj": {"sop": 2.0, "update_if": 1.0}}))
    q = get_preset(str(js))
    assert (q.name, q.cost("sop"), q.cost("update_if"), q.cost("input_mac")) == ("events", 2.0, 1.0, None)
    m = two_layer()
    rep = energy_report(evsnn.simulate(m, X_TWO, steps=4), m, preset=js)
    assert rep.to_dict()["snn"]["energy_pj"]["mean"] == pytest.approx(14 * 2.0 + 12 * 1.0)


@pytest.mark.parametrize("text, match", [
    ('name = "x"\nadd_pj = 1.0\nmult_pj = 1.0\n', "source"),
    ('source = "s"\n[costs_pj]\nflop = 1.0\n', "operation classes"),
    ('source = "s"\n[costs_pj]\nsop = -1.0\n', ">= 0"),
    ('source = "s"\nadd_pj = 1.0\n', "together"),
    ('source = "s"\ncolour = "red"\n', "unknown key"),
    ('source = "s\n', "not a valid TOML"),
])
def test_invalid_user_presets_are_format_errors(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(FormatError, match=match):
        load_preset(path)


def test_unknown_preset_lists_the_builtin_ones(tmp_path):
    with pytest.raises(InputError, match="cmos45-fp32, cmos45-fp16"):
        get_preset("cmos28")
    with pytest.raises(FormatError, match="cannot read"):
        get_preset(tmp_path / "missing.json")
    with pytest.raises(InputError, match="source"):
        EnergyPreset("x", source=" ", costs_pj={})


# --- cross-check: engine counters vs a brute-force count from the recorded rasters -----------------
# The brute force (tests/test_event_engine.py: brute_fan_out) counts synapses from the operators' definitions;
# the engines and sops_from_rasters all use the library's one rule (Operator.fan_out), checked against it here.
def mixed_model():
    rng = np.random.default_rng(3)

    def w(*shape, zeros=0.3):
        a = rng.normal(0.3, 0.6, shape).astype(np.float32)
        a[rng.random(shape) < zeros] = 0.0
        return a
    skip = sp.csr_array(w(12, 2 * 6 * 6, zeros=0.7))
    skip.data[::5] = 0.0  # explicit zeros: connections that are not synapses
    return SpikingModel(
        InputSpec((2, 6, 6), encoding="poisson", max_rate=500.0),
        [Population("c", (3, 3, 3), NeuronSpec("lif", beta=0.9, threshold=0.8), bias=w(3, 3, 3)),
         Population("h", (12,), NeuronSpec(reset="zero", threshold=0.7)),
         Population("o", (4,), NeuronSpec(threshold=0.6))],
        [Projection("conv", "input", "c", Conv2d(w(3, 2, 3, 3), (2, 6, 6), stride=2, padding=1)),
         Projection("fc", "c", "h", Dense(w(12, 27))),
         Projection("skip", "input", "h", Sparse.from_matrix(skip), delay=1),
         Projection("out", "h", "o", Dense(w(4, 12)), delay=2),
         Projection("back", "o", "h", Dense(w(12, 4)), delay=1)],
    )


@pytest.mark.parametrize("engine,n", [("event", 12), pytest.param("brian2", 3, marks=pytest.mark.brian2)])
def test_engine_sops_equal_a_brute_force_count_from_rasters(engine, n):
    """Conv (stride 2, padding 1, borders), dense with zero weights, sparse with explicit zeros, delays and a
    recurrent edge: each engine's SOPs (both conventions) and sops_from_rasters equal the brute-force count."""
    m = mixed_model()
    skip = m.projections[2].op
    assert (skip.data == 0).any() and (m.projections[1].op.weight == 0).any()  # the zeros this test is about
    x = np.random.default_rng(4).random((n, 2, 6, 6))
    enc = encode(m, x, steps=30, seed=5)
    res = evsnn.simulate(m, enc, engine=engine, dtype="float64", record="all")
    events = enc.spike_events(0, n)
    for nominal in (False, True):
        brute = brute_sops(m, res.rasters, events, n, 30, nominal=nominal)
        recount = sops_from_rasters(m, res.rasters, n_samples=n, steps=30, input_events=events, nominal=nominal)
        counted = res.sops_nominal if nominal else res.sops
        assert set(brute) == set(counted) == set(recount) == {"conv", "fc", "skip", "out", "back"}
        for name in brute:
            assert counted[name].sum() > 0, name  # every projection carries spikes: the check is not vacuous
            np.testing.assert_array_equal(counted[name], brute[name], err_msg=f"{engine} {name} nominal={nominal}")
            np.testing.assert_array_equal(recount[name], brute[name], err_msg=f"recount {name} nominal={nominal}")
    assert (res.sops_nominal["skip"] > res.sops["skip"]).any()  # the explicit zeros were spiked through
    with pytest.raises(InputError, match="record='all'"):
        sops_from_rasters(m, {}, n_samples=n, steps=30)


def diehl(kind: str, encoding: str):
    net = diehl_mlp(seed=1) if kind == "mlp" else diehl_cnn(seed=1)
    return net, evsnn.convert(net, input_shape=(1, 28, 28), input_encoding=encoding)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("encoding", ["poisson", "current"])
def test_diehl_networks_report_sops_equal_to_the_raster_count(kind, encoding):
    """The Diehl MLP and CNN shapes (the demo's), untrained: report SOPs = recorded rasters x fan-out."""
    net, m = diehl(kind, encoding)
    x = mnist_split().x_test[:6]
    enc = encode(m, x, steps=20, seed=0)
    res = evsnn.simulate(m, enc, record="all")
    events = enc.spike_events(0, 6) if encoding == "poisson" else None
    brute = brute_sops(m, res.rasters, events, 6, 20)
    rep = energy_report(res, m, x=x, ann=net)
    reported = {s.item: s.per_sample for s in rep.snn if s.op == "sop"}
    assert set(reported) == set(brute) and all(v.sum() > 0 for v in reported.values())
    for name, counts in brute.items():
        np.testing.assert_array_equal(reported[name], counts.sum(axis=1), err_msg=name)
    if encoding == "current":  # the analog first layer: non-zero pixels x non-zero weights, every step
        fan = brute_fan_out(m.projections[0].op)[0]
        macs = (x.reshape(6, -1) != 0) @ fan * 20
        (series,) = [s for s in rep.snn if s.op == "input_mac"]
        np.testing.assert_array_equal(series.per_sample, macs)


@pytest.mark.brian2
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("encoding", ["poisson", "current"])
def test_diehl_networks_report_the_sops_of_a_brian2_run(kind, encoding):
    """The same encoded input on Brian2: its report's SOPs equal the brute-force count of its own rasters (not
    the formula the engine uses) and the event engine's."""
    net, m = diehl(kind, encoding)
    x = mnist_split().x_test[:3]
    enc = encode(m, x, steps=15, seed=0)
    event = evsnn.simulate(m, enc, dtype="float64")
    brian = evsnn.simulate(m, enc, engine="brian2", dtype="float64", record="all")
    events = enc.spike_events(0, 3) if encoding == "poisson" else None
    brute = brute_sops(m, brian.rasters, events, 3, 15)
    reports = {name: energy_report(res, m) for name, res in (("event", event), ("brian2", brian))}
    assert reports["brian2"].settings["engine"] == "brian2"
    sops = {name: {s.item: s.per_sample for s in rep.snn if s.op == "sop"} for name, rep in reports.items()}
    assert set(sops["brian2"]) == set(brute) and all(v.sum() > 0 for v in sops["brian2"].values())
    for name, counts in brute.items():
        np.testing.assert_array_equal(sops["brian2"][name], counts.sum(axis=1), err_msg=name)
        np.testing.assert_array_equal(sops["brian2"][name], sops["event"][name], err_msg=name)


# --- the ANN's MACs ----------------------------------------------------------------------------
def test_torch_mlp_macs_equal_the_ir_dense_equivalent():
    net, m = diehl("mlp", "current")
    x = mnist_split().x_test[:7]
    torch_layers, ir_layers = ann_ops_torch(net, x, batch_size=3), ann_ops_ir(m, x, batch_size=3)
    assert [a.name for a in torch_layers] == ["1", "4", "7"] and [a.name for a in ir_layers] == ["fc1", "fc2", "fc3"]
    assert [a.dense_macs for a in torch_layers] == [a.dense_macs for a in ir_layers] == [784 * 1200, 1200 * 1200,
                                                                                         1200 * 10]
    for t, i in zip(torch_layers, ir_layers):
        np.testing.assert_array_equal(t.effective_macs, i.effective_macs)
    assert torch_layers[0].effective_macs.tolist() == [int(np.count_nonzero(s)) * 1200 for s in x]


def test_torch_cnn_macs_by_hand_and_by_unfold():
    net, m = diehl("cnn", "current")
    net.train()
    x = mnist_split().x_test[:5]
    layers = ann_ops_torch(net, x)
    assert net.training  # the training flag is restored
    # conv1: 12x24x24 outputs x 1x5x5 taps; conv2: 64x8x8 x 12x5x5; fc: 1024 x 10.
    assert [a.dense_macs for a in layers] == [12 * 24 * 24 * 25, 64 * 8 * 8 * 12 * 25, 1024 * 10]
    with torch.no_grad():
        h = net[2](net[1](net[0](torch.as_tensor(x))))  # the input of conv2: pooled ReLU of conv1
    patches = torch.nn.functional.unfold((h != 0).float(), 5)  # (N, 12*25, 8*8): non-zero inputs per window
    assert layers[1].effective_macs.tolist() == (patches.sum(dim=(1, 2)) * 64).long().tolist()
    ir = energy_report(evsnn.simulate(m, x, steps=2), m, x=x)
    assert "pooling is folded" in ir.ann_source
    assert [a.dense_macs for a in ir.ann] == [172_800, 64 * 8 * 8 * 12 * 100, 4096 * 10]  # folded: 10x10 kernel


def test_torch_bias_adds_and_a_layer_used_twice():
    lin = nn.Linear(3, 3)
    with torch.no_grad():
        lin.bias.copy_(torch.tensor([0.5, 0.0, -1.0]))
        lin.weight.fill_(1.0)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return self.lin(torch.relu(self.lin(x)))

    x = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    (layer,) = ann_ops_torch(Twice(), x, batch_size=1)
    # First call: 9 dense MACs, effective 3 (sample 0) / 0; relu(x@W+b) = [1.5, 1, 0] / [0.5, 0, 0]:
    # second call effective 6 / 3. Bias adds: 2 non-zero biases per call.
    assert (layer.dense_macs, layer.effective_macs.tolist(), layer.bias_adds) == (18, [9, 3], 4)


# --- the report ----------------------------------------------------------------------------------
@pytest.fixture
def report():
    m = two_layer()
    res = evsnn.simulate(m, X_TWO, steps=4)
    return energy_report(res, m, x=X_TWO, labels=np.array([0]), source="two.h5", data="hand-made")


def test_text_report_prints_the_settings_policy_and_preset(report):
    text = report.format()
    for needle in ("evsnn energy report: two.h5", "engine=event", "steps=4", "encoding=regular", "seed=0",
                   "dtype=float32", "(hand-made)", "counting policy:", "non-zero-weight synapse", "no x2 FLOP factor",
                   "preset: cmos45-fp32", "Horowitz", "IR's dense equivalent", "SNN/ANN energy: 0.6359",
                   "SOPs per ANN MAC: 1.75 (dense)", "spikes per neuron per step: h: 0.8750"):
        assert needle in text, needle
    assert str(report) == text
    brief = report.brief()
    assert brief.count("\n") == 2 and "SNN 23.4 ± 0 pJ per sample" in brief and "dense 36.8 pJ" in brief


def test_json_and_csv(report, tmp_path):
    d = json.loads(report.to_json(tmp_path / "r.json"))
    assert d == json.loads((tmp_path / "r.json").read_text())
    assert d["settings"]["engine"] == "event" and d["policy"] == report.policy
    assert d["time"]["accuracy_per_step"] == [1.0, 1.0, 1.0, 1.0]
    assert d["time"]["checkpoints"] == [1, 2, 4] and d["time"]["ops_cumulative"]["sop"] == [3, 7, 14]
    lines = report.to_csv(tmp_path / "r.csv").splitlines()
    assert lines[0] == "step,accuracy,sop,update_if,w1:sop,w2:sop,h:update_if,out:update_if,energy_pj," \
                       "energy_pj_cumulative"
    assert len(lines) == 5 and lines[2].startswith("2,1,4,3,3,1,2,1,")
    assert float(lines[-1].split(",")[-1]) == pytest.approx(23.4)
    assert (tmp_path / "r.csv").read_text().splitlines() == lines


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_plots_are_written_and_not_empty(report, tmp_path, suffix, magic):
    path = report.plot(tmp_path / f"sub/report{suffix}")
    data = path.read_bytes()
    assert data.startswith(magic) and len(data) > 10_000


def test_plot_errors(report, tmp_path, monkeypatch):
    with pytest.raises(EngineError, match=r"\.png, \.pdf or \.svg"):
        report.plot(tmp_path / "report.gif")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(DependencyError, match=r'pip install "evsnn\[plot\]"'):
        report.plot(tmp_path / "report.png")


def test_report_checks_its_arguments():
    m = two_layer()
    res = evsnn.simulate(m, X_TWO, steps=4)
    with pytest.raises(InputError, match="run of this model"):
        energy_report(res, make_mlp())
    with pytest.raises(InputError, match="1 samples"):
        energy_report(res, m, x=np.zeros((2, 3)))
    with pytest.raises(InputError, match="pass x"):
        energy_report(res, m, ann=nn.Linear(3, 2))
    with pytest.raises(InputError, match="sop_convention"):
        energy_report(res, m, sop_convention="dense")
    with pytest.raises(InputError, match="input_macs"):
        energy_report(res, m, input_macs="twice")
    no_x = energy_report(res, m)
    assert no_x.to_dict()["ann"]["effective_macs"] is None and "no effective MACs" in no_x.ann_source


# --- the command and the package ------------------------------------------------------------------
def test_report_command(tmp_path, capsys):
    path = tmp_path / "m.h5"
    evsnn.save(make_mlp(), path)
    png, table = tmp_path / "r.png", tmp_path / "r.csv"
    assert main(["report", str(path), "--steps", "5", "--samples", "10", "--plot", str(png), "--csv", str(table),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "evsnn energy report:" in out and "bundled MNIST evaluation images [8000:8010]" in out
    assert f"wrote {png}" in out and png.stat().st_size > 10_000 and len(table.read_text().splitlines()) == 6
    assert main(["report", str(path), "--steps", "3", "--samples", "4", "--json", "--preset", "loihi",
                 "--ann-preset", "cmos45-int8", "--encoding", "poisson", "--sops", "nominal"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["preset"]["name"], d["ann_preset"]["name"], d["settings"]["encoding"]) == ("loihi", "cmos45-int8",
                                                                                        "poisson")
    assert main(["report", str(path), "--steps", "3", "--preset", "nope", "--samples", "1"]) == 2
    assert "built-in presets" in capsys.readouterr().err


def test_import_evsnn_loads_neither_torch_nor_matplotlib():
    code = "import sys, evsnn; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
