"""HDF5 exchange: bit-exact round trips, the on-disk layout, hostile files, atomic saves."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import evsnn
from evsnn import (Dense, FormatError, InputSpec, ModelError, NeuronSpec, Population, Projection, SpikingModel,
                   UnsupportedVersionError)
from evsnn.model import INPUT
from evsnn.io import hdf5, integrity
from factories import make_everything, make_mlp, make_nir_neurons, models
from hostile import CRAFTED, craft, edit, restamp, text

GOLDEN = Path(__file__).parent / "data" / "v0.1.0" / "everything.h5"
#: Format version 2 with version-1.0.0 populations, written by evsnn 0.2.0 (commit 0d7a28f) before populations
#: gained the NIR neuron fields (encoding-version 1.1.0).
GOLDEN_V0_2 = Path(__file__).parent / "data" / "v0.2.0" / "everything.h5"


# --- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_every_feature(tmp_path, dtype):
    m = make_everything(dtype)
    evsnn.save(m, tmp_path / "m.h5")
    back = evsnn.load(tmp_path / "m.h5")
    assert back == m
    assert back.projections[0].op.weight.dtype == dtype
    assert [p.name for p in back.populations] == [p.name for p in m.populations]
    assert [p.name for p in back.projections] == [p.name for p in m.projections]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("out", ["li", "cuba_li", "i"])
def test_round_trip_nir_neurons(tmp_path, dtype, out):
    """Every kind and field populations gained for NIR, most per neuron, bit for bit (dtype included)."""
    m = make_nir_neurons(dtype, out)
    evsnn.save(m, tmp_path / "m.h5")
    back = evsnn.load(tmp_path / "m.h5")
    assert back == m
    cuba = back.population("cuba").neuron
    assert set(cuba.arrays()) == {"threshold", "v_reset", "tau_syn", "tau_mem", "r", "v_leak", "w_in"}
    assert all(a.dtype == dtype for a in cuba.arrays().values()) and cuba.strict_threshold
    assert back.population("lif_leak").neuron.beta.dtype == dtype
    assert back.population("out").neuron.kind == out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(models())
def test_round_trip_random_models(tmp_path, m):
    path = tmp_path / "random.h5"
    evsnn.save(m, path)
    assert evsnn.load(path) == m


def test_golden_file_from_v0_1_0_still_reads():
    """Files written by past releases must stay readable: never regenerate this file."""
    with pytest.warns(hdf5.NoDigestWarning, match="format version 1 has no digest"):
        assert evsnn.load(GOLDEN) == make_everything()


def test_golden_file_from_v0_2_0_still_reads(recwarn):
    """A version-2 file with version-1.0.0 populations, as 0.2.0 wrote it: loads unchanged, without warnings."""
    assert evsnn.load(GOLDEN_V0_2) == make_everything()
    assert not recwarn.list


def _layout(path):
    """Every group's and dataset's attributes and every dataset's dtype and bytes, by path (``evsnn-version`` left
    out: it names the writing release)."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, node):
            attrs = {k: np.asarray(v).tobytes() for k, v in node.attrs.items() if k != "evsnn-version"}
            data = (node.dtype.str, node[()].tobytes()) if isinstance(node, h5py.Dataset) else None
            out[name] = (attrs, data)
        visit("/", f)
        f.visititems(visit)
    return out


def test_models_0_2_0_could_save_are_written_as_0_2_0_wrote_them(tmp_path):
    """Populations without the NIR fields keep encoding-version 1.0.0, so evsnn 0.2.0 (and 0.1.0's layout
    readers) still read files of converted models; the reference is the file 0.2.0 wrote."""
    evsnn.save(make_everything(), tmp_path / "m.h5")
    new, old = _layout(tmp_path / "m.h5"), _layout(GOLDEN_V0_2)
    assert new == old
    assert {old[f"populations/{p}"][0]["encoding-version"] for p in ("conv1", "fc1", "out")} == {b"1.0.0"}


def test_nir_fields_in_plain_h5py(tmp_path):
    """Version-1.1.0 populations: a number is an attribute, one value per neuron a dataset of the population's shape."""
    m = make_nir_neurons(np.float32)
    evsnn.save(m, tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f.attrs["format_version"] == 2
        cuba, lif = f["populations/cuba"], f["populations/lif_ode"]
        assert cuba.attrs["encoding-version"] == b"1.1.0" and cuba.attrs["neuron"] == b"cuba_lif"
        np.testing.assert_array_equal(cuba["tau_mem"][()], m.population("cuba").neuron.tau_mem)
        assert cuba["w_in"].dtype == np.dtype("<f4") and cuba.attrs["strict_threshold"] == 1
        assert lif.attrs["tau_mem"] == 0.01 and lif.attrs["r"] == 2.0 and lif.attrs["v_leak"] == 0.1
        assert lif.attrs["w_in"] == 1.0 and "tau_mem" not in f["populations/if_ode"].attrs
        assert f["populations/step"].attrs["neuron"] == b"threshold"


def test_layout_is_readable_with_plain_h5py(tmp_path):
    m = make_everything()
    evsnn.save(m, tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:  # strings are fixed-length UTF-8, which h5py reads as bytes
        assert f.attrs["format"] == b"evsnn" and f.attrs["format_version"] == 2
        assert f.userblock_size == integrity.USERBLOCK_SIZE
        assert list(f["populations"].attrs["order"]) == [b"conv1", b"fc1", b"out"]
        np.testing.assert_array_equal(f["projections/fc1/weight"][()], m.projections[1].op.weight)
        w = f["projections/skip/weight"]
        assert w.attrs["encoding-type"] == b"csr_matrix" and tuple(w.attrs["shape"]) == (16, 98)
        ds = f["projections/conv1/weight"]
        assert ds.dtype == np.dtype("<f8") and ds.compression == "gzip" and ds.fletcher32 and ds.shuffle

        def stamped(name, node):  # every group and dataset carries its encoding
            assert "encoding-type" in node.attrs and "encoding-version" in node.attrs, name
        f.visititems(stamped)


def test_version_2_files_hold_no_variable_length_data(tmp_path):
    """No value lives in HDF5's global heap: every string is a fixed-length UTF-8 string in its attribute."""
    m = make_everything().replace(provenance={"note": "héllo", "k": [1, 2], "nested": {"b": np.array([True])}})
    evsnn.save(m, tmp_path / "m.h5")
    seen = {"string": 0, "dataset": 0}
    with h5py.File(tmp_path / "m.h5", "r") as f:
        def check(name, node):
            for key in node.attrs:
                tid = node.attrs.get_id(key).get_type()
                assert tid.get_class() in (h5py.h5t.STRING, h5py.h5t.INTEGER, h5py.h5t.FLOAT), (name, key)
                if tid.get_class() == h5py.h5t.STRING:
                    assert not tid.is_variable_str() and tid.get_cset() == h5py.h5t.CSET_UTF8, (name, key)
                    # what anndata's attribute reader relies on to decode fixed-length strings
                    assert h5py.check_string_dtype(node.attrs.get_id(key).dtype).length is not None
                    seen["string"] += 1
            if isinstance(node, h5py.Dataset):
                assert node.id.get_type().get_class() in (h5py.h5t.INTEGER, h5py.h5t.FLOAT, h5py.h5t.ENUM), name
                seen["dataset"] += 1
        check("/", f)
        f.visititems(check)
        assert f["provenance"].attrs["note"] == '"h\\u00e9llo"'.encode()
    assert seen["string"] > 40 and seen["dataset"] > 5  # liveness: the walk saw the file


def test_provenance_text_over_64_kib_round_trips(tmp_path):
    """A JSON value larger than HDF5's 64 KiB attribute-message limit (dense attribute storage)."""
    m = make_mlp().replace(provenance={"log": "x" * 200_000, "losses": [0.5] * 30_000, "d": {"t": "é" * 70_000}})
    evsnn.save(m, tmp_path / "m.h5")
    assert evsnn.load(tmp_path / "m.h5") == m


def test_strings_that_are_not_utf8_are_refused(saved):
    edit(saved, lambda f: f["populations/fc1"].attrs.__setitem__("neuron", np.bytes_(b"l\xffif")))
    with pytest.raises(FormatError, match=r"/populations/fc1: attribute 'neuron' is not valid UTF-8"):
        evsnn.load(saved)


def test_save_keeps_permissions_and_accepts_str_paths(tmp_path):
    target = tmp_path / "m.h5"
    evsnn.save(make_mlp(), str(target))
    os.chmod(target, 0o640)
    evsnn.save(make_mlp(seed=1), target)
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert evsnn.load(target) == make_mlp(seed=1)
    with pytest.raises(ModelError, match="model must be a SpikingModel"):
        evsnn.save({"not": "a model"}, target)


# --- atomic writes ----------------------------------------------------------------------------
@pytest.mark.parametrize("existing", [True, False])
def test_failed_save_leaves_existing_file_untouched(tmp_path, monkeypatch, existing):
    target = tmp_path / "m.h5"
    if existing:
        evsnn.save(make_mlp(), target)
    before = target.read_bytes() if existing else None

    def explode(g, pr):
        g.create_dataset("half", data=np.zeros(10))
        raise RuntimeError("disk full (injected)")

    monkeypatch.setattr(hdf5, "_write_projection", explode)
    with pytest.raises(RuntimeError, match="injected"):
        evsnn.save(make_everything(), target)
    assert os.listdir(tmp_path) == (["m.h5"] if existing else [])  # no temporary file left behind
    if existing:
        assert target.read_bytes() == before


# --- hostile files ----------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.h5"
    evsnn.save(make_everything(np.float32), path)
    return path


def replace_dataset(f, name, data):
    attrs = dict(f[name].attrs)
    del f[name]
    f[name] = data
    f[name].attrs.update(attrs)


def set_weight_value(f, name, index, value):
    data = f[name][()]
    data[index] = value
    replace_dataset(f, name, data)


CASES = {
    "missing group": (lambda f: f.__delitem__("populations"), r"model.h5:/populations: group must exist"),
    "missing input": (lambda f: f.__delitem__("input"), r"/input: group must exist, but it is missing"),
    "missing dataset": (lambda f: f.__delitem__("projections/fc1/weight"),
                        r"/projections/fc1/weight: dataset must exist"),
    "missing attribute": (lambda f: f["projections/out"].attrs.__delitem__("delay"),
                          r"/projections/out: attribute 'delay' is missing"),
    "missing root attribute": (lambda f: f.attrs.__delitem__("dt"), r"model.h5:/: attribute 'dt' is missing"),
    "mistyped attribute": (lambda f: f["input"].attrs.__setitem__("shape", text("2x7x7")),
                           r"/input: attribute 'shape' must be a 1-D integer array"),
    "wrong dtype": (lambda f: replace_dataset(f, "projections/fc1/weight", np.ones((16, 48), np.int32)),
                    r"/projections/fc1/weight: dtype must be float32 or float64, got int32"),
    "float16": (lambda f: replace_dataset(f, "projections/fc1/weight", np.ones((16, 48), np.float16)),
                r"/projections/fc1/weight: datatype float \(2 bytes\) refused: the format stores only standard "
                r"integers, IEEE float32/float64 or bool"),
    "wrong ndim": (lambda f: replace_dataset(f, "projections/fc1/weight", np.ones(16 * 48, np.float32)),
                   r"/projections/fc1/weight: must have shape \(16, 48\) \(declared by the model\), got \(768,\)"),
    "wrong shape": (lambda f: replace_dataset(f, "projections/fc1/weight", np.ones((16, 47), np.float32)),
                    r"/projections/fc1/weight: must have shape \(16, 48\) \(declared by the model\), got \(16, 47\)"),
    "wrong bias shape": (lambda f: replace_dataset(f, "populations/conv1/bias", np.ones((3, 4), np.float32)),
                         r"/populations/conv1/bias: must have shape \(3, 4, 4\) \(declared by the model\), got \(3, 4\)"),
    "nan weight": (lambda f: set_weight_value(f, "projections/fc1/weight", (0, 0), np.nan),
                   r"/projections/fc1: Dense: weight must be finite, got 1 NaN/inf"),
    "inf conv weight": (lambda f: set_weight_value(f, "projections/conv1/weight", (0, 0, 0, 0), np.inf),
                        r"/projections/conv1: Conv2d: weight must be finite"),
    "nan threshold": (lambda f: set_weight_value(f, "populations/conv1/threshold", (0, 0, 0), np.nan),
                      r"/populations/conv1: NeuronSpec: threshold must be finite"),
    "csr indptr not monotone": (
        lambda f: set_weight_value(f, "projections/skip/weight/indptr", 3, 10**6),
        r"/projections/skip/weight: Sparse: indptr must start at 0 and never decrease"),
    "csr index out of range": (
        lambda f: set_weight_value(f, "projections/skip/weight/indices", 0, 98),
        r"/projections/skip/weight: Sparse: indices must lie in \[0, 98\), got range \[0, 98\]"),
    "csr lengths": (lambda f: replace_dataset(f, "projections/skip/weight/data", np.ones(3, np.float32)),
                    r"/projections/skip/weight/indices: must have shape \(3,\) \(declared by the model\), got \(491,\)"),
    "unknown op": (lambda f: f["projections/fc1"].attrs.__setitem__("op", text("lstm")),
                   r"/projections/fc1: attribute 'op' must be one of \['conv2d', 'dense', 'sparse'\], got 'lstm'"),
    "unknown neuron": (lambda f: f["populations/fc1"].attrs.__setitem__("neuron", text("hodgkin_huxley")),
                       r"/populations/fc1: NeuronSpec: kind must be one of 'if', 'lif', 'srm', .*got 'hodgkin_huxley'"),
    "unknown reset": (lambda f: f["populations/fc1"].attrs.__setitem__("reset", text("soft")),
                      r"/populations/fc1: NeuronSpec: reset must be one of 'subtract', 'zero', got 'soft'"),
    "unknown readout": (lambda f: f.attrs.__setitem__("readout", text("rate")),
                        r"model.h5:/: SpikingModel: readout must be one of 'count', 'membrane', got 'rate'"),
    "negative delay": (lambda f: f["projections/skip"].attrs.__setitem__("delay", np.int64(-1)),
                       r"/projections/skip: Projection 'skip': delay must be an integer number of steps >= 0"),
    "float delay": (lambda f: f["projections/skip"].attrs.__setitem__("delay", 1.5),
                    r"/projections/skip: attribute 'delay' must be an integer, got 1.5"),
    "projection to a missing population": (
        lambda f: f["projections/out"].attrs.__setitem__("source", text("ghost")),
        r"/projections/out: attribute 'source' must name a population in /populations, got 'ghost'"),
    "population removed": (
        lambda f: (f.__delitem__("populations/fc1"),
                   f["populations"].attrs.__setitem__("order", np.array([b"conv1", b"out"]))),
        r"/projections/fc1: attribute 'target' must name a population in /populations, got 'fc1'"),
    "order disagrees with members": (
        lambda f: f["populations"].attrs.__setitem__("order", np.array([b"conv1", b"out", b"fc1", b"extra"])),
        r"/populations: attribute 'order' must list each member once"),
    "not an evsnn file": (lambda f: f.attrs.__setitem__("format", text("nir")),
                          r"attribute 'format' must be 'evsnn', got 'nir': not an evsnn model"),
    "bad provenance json": (lambda f: f["provenance"].attrs.__setitem__("flag", text("{oops")),
                            r"/provenance: attribute 'flag' must be JSON text"),
}


CASES.update({
    "threshold kind in a version-1.0.0 population": (
        lambda f: f["populations/fc1"].attrs.__setitem__("neuron", text("threshold")),
        r"/populations/fc1: neuron 'threshold' needs population encoding-version '1.1.0'; version '1.0.0' holds "
        r"only 'if', 'lif', 'srm'"),
    "per-neuron beta in a version-1.0.0 population": (
        lambda f: (f["populations/conv1"].attrs.__delitem__("beta"), f["populations/conv1"].copy("threshold", "beta")),
        r"/populations/conv1/beta: unknown member"),
    "v_leak in a version-1.0.0 population": (lambda f: f["populations/fc1"].attrs.__setitem__("v_leak", 0.5),
                                             r"/populations/fc1: unknown attribute\(s\) \['v_leak'\]"),
})


@pytest.fixture
def saved_nir(tmp_path):
    path = tmp_path / "model.h5"
    evsnn.save(make_nir_neurons(np.float32), path)
    return path


def set_attr(population, name, value):
    return lambda f: f[f"populations/{population}"].attrs.__setitem__(name, value)


NIR_CASES = {
    "int tau_mem": (lambda f: replace_dataset(f, "populations/cuba/tau_mem", np.ones(4, np.int32)),
                    r"/populations/cuba/tau_mem: dtype must be float32 or float64, got int32"),
    "bool w_in": (lambda f: replace_dataset(f, "populations/cuba/w_in", np.ones(4, bool)),
                  r"/populations/cuba/w_in: dtype must be float32 or float64, got bool"),
    "float16 r": (lambda f: replace_dataset(f, "populations/cuba/r", np.ones(4, np.float16)),
                  r"/populations/cuba/r: datatype float \(2 bytes\) refused"),
    "wrong r shape": (lambda f: replace_dataset(f, "populations/cuba/r", np.ones(5, np.float32)),
                      r"/populations/cuba/r: must have shape \(4,\) \(declared by the model\), got \(5,\)"),
    "2-d tau_syn": (lambda f: replace_dataset(f, "populations/cuba/tau_syn", np.ones((2, 2), np.float32)),
                    r"/populations/cuba/tau_syn: must have shape \(4,\) \(declared by the model\), got \(2, 2\)"),
    "nan v_leak": (lambda f: set_weight_value(f, "populations/cuba/v_leak", 0, np.nan),
                   r"/populations/cuba: NeuronSpec: v_leak must be finite, got 1 NaN/inf"),
    "inf v_reset": (lambda f: set_weight_value(f, "populations/lif_leak/v_reset", 3, -np.inf),
                    r"/populations/lif_leak: NeuronSpec: v_reset must be finite"),
    "inf v_leak attribute": (set_attr("lif_ode", "v_leak", np.inf),
                             r"/populations/lif_ode: NeuronSpec: v_leak must be finite, got inf"),
    "negative tau_syn": (lambda f: set_weight_value(f, "populations/cuba/tau_syn", 1, -1e-3),
                         r"/populations/cuba: NeuronSpec: tau_syn must be > 0, got minimum .*-0.001"),
    "zero tau_mem attribute": (set_attr("lif_ode", "tau_mem", 0.0),
                               r"/populations/lif_ode: NeuronSpec: tau_mem must be > 0, got 0.0"),
    "beta above 1": (lambda f: set_weight_value(f, "populations/lif_leak/beta", 0, 1.5),
                     r"/populations/lif_leak: NeuronSpec: beta must be > 0 and <= 1"),
    "beta in the ODE form": (set_attr("lif_ode", "beta", 0.9),
                             r"/populations/lif_ode: NeuronSpec: the ODE form \(r given\) derives its leak from "
                             r"tau_mem; beta must stay 1.0"),
    "strict_threshold 2": (set_attr("step", "strict_threshold", np.int64(2)),
                           r"/populations/step: attribute 'strict_threshold' must be 0 or 1, got 2"),
    "strict_threshold float": (set_attr("step", "strict_threshold", 1.0),
                               r"/populations/step: attribute 'strict_threshold' must be an integer, got 1.0"),
    "tau_mem twice": (set_attr("cuba", "tau_mem", 0.01),
                      r"/populations/cuba: tau_mem is both an attribute and a dataset"),
    "missing v_leak": (lambda f: f["populations/lif_ode"].attrs.__delitem__("v_leak"),
                       r"/populations/lif_ode: attribute 'v_leak' is missing"),
    "missing strict_threshold": (lambda f: f["populations/out"].attrs.__delitem__("strict_threshold"),
                                 r"/populations/out: attribute 'strict_threshold' is missing"),
    "missing r": (lambda f: f.__delitem__("populations/out/r"),
                  r"/populations/out: NeuronSpec: kind 'cuba_li' exists only in the ODE form"),
    "missing tau_mem": (lambda f: f["populations/lif_ode"].attrs.__delitem__("tau_mem"),
                        r"/populations/lif_ode: NeuronSpec: tau_mem \(seconds\) is required for kind 'lif'"),
    "tau_mem on a threshold": (set_attr("step", "tau_mem", 0.01),
                               r"/populations/step: NeuronSpec: tau_mem applies only to leaky kinds"),
    "tau_refr on a cuba_lif": (set_attr("cuba", "tau_refr", 0.01),
                               r"/populations/cuba: NeuronSpec: tau_refr applies only to kind 'srm'"),
    "w_in on a lif": (set_attr("lif_ode", "w_in", 2.0),
                      r"/populations/lif_ode: NeuronSpec: w_in applies only to kinds 'cuba_lif' and 'cuba_li'"),
    "unknown kind": (set_attr("cuba", "neuron", text("adex")),
                     r"/populations/cuba: NeuronSpec: kind must be one of 'if', .*got 'adex'"),
    "non-spiking kind inside": (set_attr("if_ode", "neuron", text("i")),
                                r"/: SpikingModel: .*Population 'if_ode': kind 'i' never spikes"),
    "unknown member": (lambda f: f["populations/cuba"].move("tau_mem", "tau_adapt"),
                       r"/populations/cuba/tau_adapt: unknown member"),
    "new fields under version 1.0.0": (set_attr("step", "encoding-version", text("1.0.0")),
                                       r"/populations/step: unknown attribute\(s\) \['strict_threshold', 'v_leak', "
                                       r"'w_in'\]"),
}


@pytest.mark.parametrize("case", NIR_CASES, ids=list(NIR_CASES))
def test_malformed_nir_fields_give_format_error_naming_file_dataset_and_population(saved_nir, case):
    mutate, match = NIR_CASES[case]
    edit(saved_nir, mutate)
    with pytest.raises(FormatError, match=f"^{saved_nir}:" + match):
        evsnn.load(saved_nir)


def test_newer_population_version_is_refused_naming_the_versions_read(saved_nir):
    edit(saved_nir, set_attr("cuba", "encoding-version", text("1.3.0")))
    with pytest.raises(UnsupportedVersionError, match=r"/populations/cuba: encoding-version '1.3.0' of 'population' "
                                                      r"is not supported \(this evsnn reads '1.2.0', '1.1.0', "
                                                      r"'1.0.0'\)"):
        evsnn.load(saved_nir)


def test_srm_refractory_amplitude_is_stored_in_population_1_2_0_only(tmp_path):
    """Seed 003's 2-theta refractory kernel needs the 1.2.0 field; an SRM population with the default amplitude is
    still written as 1.0.0, which older releases read."""
    srm = NeuronSpec("srm", tau_syn=2e-3, tau_refr=4e-3)
    seed = NeuronSpec("srm", tau_syn=2e-3, tau_refr=4e-3, refractory_amplitude=2.0)
    model = SpikingModel(input=InputSpec((4,)),
                         populations=[Population("a", (3,), srm), Population("b", (2,), seed)],
                         projections=[Projection("a", INPUT, "a", Dense(np.ones((3, 4)))),
                                      Projection("b", "a", "b", Dense(np.ones((2, 3))))])
    path = tmp_path / "srm.h5"
    evsnn.save(model, path)
    with h5py.File(path, "r") as f:
        assert f["populations/a"].attrs["encoding-version"] == b"1.0.0"
        assert f["populations/b"].attrs["encoding-version"] == b"1.2.0"
        assert f["populations/b"].attrs["refractory_amplitude"] == 2.0
        assert "refractory_amplitude" not in f["populations/a"].attrs
    loaded = evsnn.load(path)
    assert loaded == model and loaded.population("b").neuron.refractory_amplitude == 2.0


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_malformed_file_gives_format_error_naming_the_path(saved, case):
    mutate, match = CASES[case]
    edit(saved, mutate)
    with pytest.raises(FormatError, match=match):
        evsnn.load(saved)


def test_newer_format_version_is_refused(saved):
    edit(saved, lambda f: f.attrs.__setitem__("format_version", np.int64(3)))
    with pytest.raises(UnsupportedVersionError, match=r"format_version 3 is not supported .* Upgrade evsnn"):
        evsnn.load(saved)


def test_newer_element_encoding_is_refused_naming_the_key(saved):
    edit(saved, lambda f: f["projections/fc1"].attrs.__setitem__("encoding-version", text("2.0.0")))
    with pytest.raises(UnsupportedVersionError, match=r"/projections/fc1: encoding-version '2.0.0' of 'projection'"):
        evsnn.load(saved)


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"model.h5: checksum mismatch: the file is \d+ bytes but was saved with "
                                          r"\d+ \(truncated\)"):
        evsnn.load(saved)
    saved.write_bytes(data[:100])
    with pytest.raises(FormatError, match=r"model.h5: checksum mismatch: the file is truncated to 100 bytes"):
        evsnn.load(saved)


def test_not_hdf5(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("this is not HDF5\n")
    with pytest.raises(FormatError, match=r"notes.h5: file must be an HDF5 file written by evsnn.save\(\)"):
        evsnn.load(path)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(FormatError, match="attribute 'format' is missing: this HDF5 file is not an evsnn model"):
        evsnn.load(tmp_path / "other.h5")
    with pytest.raises(FileNotFoundError):
        evsnn.load(tmp_path / "absent.h5")


def test_fletcher32_catches_flipped_chunk_bytes_behind_a_valid_digest(saved):
    with h5py.File(saved, "r") as f:
        info = f["projections/fc1/weight"].id.get_chunk_info(0)
    raw = bytearray(saved.read_bytes())
    for i in range(info.byte_offset + 8, info.byte_offset + 24):
        raw[i] ^= 0xFF
    saved.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"model.h5: checksum mismatch: the file is damaged"):
        evsnn.load(saved)
    restamp(saved)  # a valid digest over damaged data: HDF5's own chunk checksum still catches it
    with pytest.raises(FormatError, match=r"/projections/fc1/weight: data is corrupt"):
        evsnn.load(saved)


@pytest.mark.parametrize("where", ["header", "body"])
def test_digest_catches_any_single_byte_change(saved, where):
    data = saved.read_bytes()
    offsets = range(0, 512, 7) if where == "header" else range(512, len(data), max(1, len(data) // 40))
    assert len(offsets) > 30  # liveness: many positions are tried
    for at in offsets:
        changed = bytearray(data)
        changed[at] ^= 0x10
        saved.write_bytes(bytes(changed))
        with pytest.raises(FormatError, match=r"model.h5: checksum mismatch"):
            evsnn.load(saved)


def test_appended_bytes_are_refused(saved):
    saved.write_bytes(saved.read_bytes() + b"\x00")
    with pytest.raises(FormatError, match=r"checksum mismatch: .*\(bytes appended"):
        evsnn.load(saved)


def test_version_2_file_cannot_pass_as_version_1(tmp_path):
    """Without its header (user block stripped or never written) a version-2 file is refused, not loaded unchecked."""
    path = tmp_path / "bare.h5"
    with h5py.File(path, "w", track_order=True) as f:
        hdf5._write_model(f, make_mlp())
    with pytest.raises(FormatError, match=r"bare.h5:/: format_version 2 disagrees with the file's missing digest"):
        evsnn.load(path)
    with h5py.File(path, "r+") as f:  # a genuine version-1 layout still loads, with its warning
        f.attrs["format_version"] = np.int64(1)
    with pytest.warns(hdf5.NoDigestWarning):
        assert evsnn.load(path) == make_mlp()


def test_version_1_inside_a_digest_header_is_refused(saved):
    edit(saved, lambda f: f.attrs.__setitem__("format_version", np.int64(1)))
    with pytest.raises(FormatError, match=r"model.h5:/: format_version 1 disagrees with the file's digest header"):
        evsnn.load(saved)


# --- crafted hostile files ---------------------------------------------------------------------
@pytest.mark.parametrize("case", CRAFTED, ids=list(CRAFTED))
def test_crafted_file_is_refused_by_its_structural_check(saved, tmp_path, case):
    """Re-stamped with a valid digest, so the structural check itself is what refuses the file."""
    path = craft(saved, tmp_path / "crafted.h5", case)
    with pytest.raises(FormatError) as err:
        evsnn.load(path)
    message = str(err.value)
    assert CRAFTED[case][1] in message and "\n" not in message and message.startswith(str(path))


@pytest.mark.parametrize("case", CRAFTED, ids=list(CRAFTED))
def test_crafted_file_without_a_new_digest_is_refused_by_the_digest(saved, tmp_path, case):
    path = craft(saved, tmp_path / "crafted.h5", case, stamp=False)
    if path.read_bytes() == saved.read_bytes():
        pytest.skip("h5py rewrote the file byte for byte")
    with pytest.raises(FormatError, match=r"crafted.h5: checksum mismatch"):
        evsnn.load(path)


def test_crafted_external_link_never_reads_the_linked_file(saved, tmp_path):
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["data"] = np.full((16, 48), 7.0, np.float32)
    path = craft(saved, tmp_path / "m.h5", "virtual dataset")
    os.chmod(secret, 0)  # any attempt to open it would fail differently
    with pytest.raises(FormatError, match="virtual dataset refused"):
        evsnn.load(path)


def test_non_regular_paths_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.h5"
    os.mkfifo(fifo)
    code = "import evsnn, sys\ntry:\n    evsnn.load(sys.argv[1])\nexcept evsnn.FormatError as e:\n    print(e)"
    done = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert done.stdout.strip() == f"{fifo}: model file must be a regular file, got a FIFO."
    with pytest.raises(FormatError, match=r": model file must be a regular file, got a directory\."):
        evsnn.load(tmp_path)


def test_model_bounds_name_the_layer():
    from evsnn.model import MAX_DELAY, MAX_NEURONS

    with pytest.raises(ModelError, match=f"Projection 'w': delay must be at most MAX_DELAY = {MAX_DELAY} steps"):
        evsnn.Projection("w", "input", "out", evsnn.Dense(np.ones((1, 1))), delay=MAX_DELAY + 1)
    assert evsnn.Projection("w", "input", "out", evsnn.Dense(np.ones((1, 1))), delay=MAX_DELAY).delay == MAX_DELAY
    with pytest.raises(ModelError, match=r"Population 'big': shape \(8192, 8193\) holds 67117056 neurons, more than "
                                         f"MAX_NEURONS = {MAX_NEURONS}"):
        evsnn.Population("big", (8192, 8193))
    with pytest.raises(ModelError, match="InputSpec: shape"):
        evsnn.InputSpec((MAX_NEURONS + 1,))


# --- save refuses what load refuses -----------------------------------------------------------
@pytest.mark.parametrize("provenance, match", [
    ({"h": np.ones(3, np.float16)}, r"/provenance/h: arrays must be bool, integer, float32 or float64, got float16"),
    ({"z": np.array(1.5)}, r"/provenance/z: arrays must have at least one dimension, got a 0-d array"),
    ({"l": [np.ones(2)]}, r"/provenance/l: value must be JSON-encodable, got a list holding an array"),
    ({"a\x00b": 1}, r"/provenance: provenance key 'a\\x00b' must not contain '/' or NUL"),
    ({"d": {"big": np.zeros(hdf5.MAX_PROVENANCE_BYTES // 8 + 1)}},
     r"/provenance/d/big: provenance exceeds 16777216 bytes \(MAX_PROVENANCE_BYTES\)"),
])
def test_save_refuses_provenance_that_load_would_refuse(tmp_path, provenance, match):
    target = tmp_path / "m.h5"
    with pytest.raises(FormatError, match=f"^{target}:" + match):
        evsnn.save(make_mlp().replace(provenance=provenance), target)
    assert os.listdir(tmp_path) == []


def test_save_round_trips_json_edge_values(tmp_path):
    prov = {"nested": [{"a": 1}, [1, 2.5, None]], "text": "nul\x00 and \udcff", "big": 2**70, "b": np.array([True])}
    m = make_mlp().replace(provenance=prov)
    evsnn.save(m, tmp_path / "m.h5")
    assert evsnn.load(tmp_path / "m.h5") == m


def test_save_through_a_symlink_replaces_the_file_it_points_to(tmp_path):
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "m.h5"
    evsnn.save(make_mlp(), real)
    link = tmp_path / "link.h5"
    link.symlink_to(real)
    evsnn.save(make_mlp(seed=1), link)
    assert link.is_symlink() and evsnn.load(real) == make_mlp(seed=1)


def test_save_errors_name_the_target_not_the_temporary_file(tmp_path, monkeypatch):
    def full(tmp):
        raise OSError(28, f"No space left on device: '{tmp}'")

    monkeypatch.setattr(integrity, "stamp", full)
    target = tmp_path / "m.h5"
    with pytest.raises(FormatError, match=f"^{target}: cannot save: .*No space left on device: '{target}'") as err:
        evsnn.save(make_mlp(), target)
    assert ".tmp" not in str(err.value) and os.listdir(tmp_path) == []


def test_save_with_a_long_name_and_a_missing_directory(tmp_path):
    long = tmp_path / ("m" * 250 + ".h5")
    evsnn.save(make_mlp(), long)
    assert evsnn.load(long) == make_mlp()
    missing = tmp_path / "nowhere" / "m.h5"
    with pytest.raises(FileNotFoundError, match=f"^{missing}: cannot save, directory {missing.parent} does not exist"):
        evsnn.save(make_mlp(), missing)


@pytest.mark.parametrize("golden", [GOLDEN, GOLDEN_V0_2], ids=["v0.1.0", "v0.2.0"])
def test_golden_file_is_committed_unchanged(golden):
    assert golden.exists(), f"{golden} must be committed; never regenerate it"


if __name__ == "__main__":  # writes the golden file once, for a new release's folder
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    evsnn.save(make_everything(), GOLDEN)
    shutil.copymode(__file__, GOLDEN)
