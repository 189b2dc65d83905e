"""HDF5 exchange: bit-exact round trips, the on-disk layout, hostile files, atomic saves."""

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import evsnn
from evsnn import FormatError, UnsupportedVersionError
from evsnn.io import hdf5
from factories import make_everything, make_mlp, models

GOLDEN = Path(__file__).parent / "data" / "v0.1.0" / "everything.h5"


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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(models())
def test_round_trip_random_models(tmp_path, m):
    path = tmp_path / "random.h5"
    evsnn.save(m, path)
    assert evsnn.load(path) == m


def test_golden_file_from_v0_1_0_still_reads():
    """Files written by past releases must stay readable: never regenerate this file."""
    assert evsnn.load(GOLDEN) == make_everything()


def test_layout_is_readable_with_plain_h5py(tmp_path):
    m = make_everything()
    evsnn.save(m, tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f.attrs["format"] == "evsnn" and f.attrs["format_version"] == 1
        assert list(f["populations"].attrs["order"]) == ["conv1", "fc1", "out"]
        np.testing.assert_array_equal(f["projections/fc1/weight"][()], m.projections[1].op.weight)
        w = f["projections/skip/weight"]
        assert w.attrs["encoding-type"] == "csr_matrix" and tuple(w.attrs["shape"]) == (16, 98)
        ds = f["projections/conv1/weight"]
        assert ds.dtype == np.dtype("<f8") and ds.compression == "gzip" and ds.fletcher32 and ds.shuffle

        def stamped(name, node):  # every group and dataset carries its encoding
            assert "encoding-type" in node.attrs and "encoding-version" in node.attrs, name
        f.visititems(stamped)


def test_save_keeps_permissions_and_accepts_str_paths(tmp_path):
    target = tmp_path / "m.h5"
    evsnn.save(make_mlp(), str(target))
    os.chmod(target, 0o640)
    evsnn.save(make_mlp(seed=1), target)
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert evsnn.load(target) == make_mlp(seed=1)
    with pytest.raises(TypeError, match="model must be a SpikingModel"):
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


def edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


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
    "mistyped attribute": (lambda f: f["input"].attrs.__setitem__("shape", "2x7x7"),
                           r"/input: attribute 'shape' must be a 1-D integer array"),
    "wrong dtype": (lambda f: replace_dataset(f, "projections/fc1/weight", np.ones((16, 48), np.int32)),
                    r"/projections/fc1/weight: dtype must be float32 or float64, got int32"),
    "float16": (lambda f: replace_dataset(f, "projections/fc1/weight", np.ones((16, 48), np.float16)),
                r"/projections/fc1/weight: dtype must be float32 or float64, got float16"),
    "wrong ndim": (lambda f: replace_dataset(f, "projections/fc1/weight", np.ones(16 * 48, np.float32)),
                   r"/projections/fc1/weight: must have 2 dimension\(s\), got shape \(768,\)"),
    "wrong shape": (lambda f: replace_dataset(f, "projections/fc1/weight", np.ones((16, 47), np.float32)),
                    r"Projection 'fc1': dense input size must equal the size of 'conv1', 48, got 47"),
    "wrong bias shape": (lambda f: replace_dataset(f, "populations/conv1/bias", np.ones((3, 4), np.float32)),
                         r"/populations/conv1: Population 'conv1': bias must have shape \(3, 4, 4\)"),
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
                    r"/projections/skip/weight: Sparse: indptr\[-1\], len\(indices\) and len\(data\) must be equal"),
    "unknown op": (lambda f: f["projections/fc1"].attrs.__setitem__("op", "lstm"),
                   r"/projections/fc1: attribute 'op' must be one of \['conv2d', 'dense', 'sparse'\], got 'lstm'"),
    "unknown neuron": (lambda f: f["populations/fc1"].attrs.__setitem__("neuron", "hodgkin_huxley"),
                       r"/populations/fc1: NeuronSpec: kind must be one of 'if', 'lif', 'srm', got 'hodgkin_huxley'"),
    "unknown reset": (lambda f: f["populations/fc1"].attrs.__setitem__("reset", "soft"),
                      r"/populations/fc1: NeuronSpec: reset must be one of 'subtract', 'zero', got 'soft'"),
    "unknown readout": (lambda f: f.attrs.__setitem__("readout", "rate"),
                        r"model.h5:/: SpikingModel: readout must be one of 'count', 'membrane', got 'rate'"),
    "negative delay": (lambda f: f["projections/skip"].attrs.__setitem__("delay", np.int64(-1)),
                       r"/projections/skip: Projection 'skip': delay must be an integer number of steps >= 0"),
    "float delay": (lambda f: f["projections/skip"].attrs.__setitem__("delay", 1.5),
                    r"/projections/skip: attribute 'delay' must be an integer, got 1.5"),
    "projection to a missing population": (
        lambda f: f["projections/out"].attrs.__setitem__("source", "ghost"),
        r"/projections/out: attribute 'source' must name a population in /populations, got 'ghost'"),
    "population removed": (
        lambda f: (f.__delitem__("populations/fc1"),
                   f["populations"].attrs.__setitem__("order", ["conv1", "out"])),
        r"/projections/fc1: attribute 'target' must name a population in /populations, got 'fc1'"),
    "order disagrees with members": (
        lambda f: f["populations"].attrs.__setitem__("order", ["conv1", "out", "fc1", "extra"]),
        r"/populations: attribute 'order' must list each member once"),
    "not an evsnn file": (lambda f: f.attrs.__setitem__("format", "nir"),
                          r"attribute 'format' must be 'evsnn', got 'nir': not an evsnn model"),
    "bad provenance json": (lambda f: f["provenance"].attrs.__setitem__("flag", "{oops"),
                            r"/provenance: attribute 'flag' must be JSON text"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_malformed_file_gives_format_error_naming_the_path(saved, case):
    mutate, match = CASES[case]
    edit(saved, mutate)
    with pytest.raises(FormatError, match=match):
        evsnn.load(saved)


def test_newer_format_version_is_refused(saved):
    edit(saved, lambda f: f.attrs.__setitem__("format_version", np.int64(2)))
    with pytest.raises(UnsupportedVersionError, match=r"format_version 2 is not supported .* Upgrade evsnn"):
        evsnn.load(saved)


def test_newer_element_encoding_is_refused_naming_the_key(saved):
    edit(saved, lambda f: f["projections/fc1"].attrs.__setitem__("encoding-version", "2.0.0"))
    with pytest.raises(UnsupportedVersionError, match=r"/projections/fc1: encoding-version '2.0.0' of 'projection'"):
        evsnn.load(saved)


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"model.h5: .*unreadable or truncated|corrupt|could not be read"):
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


def test_checksum_catches_flipped_bytes(saved):
    with h5py.File(saved, "r") as f:
        info = f["projections/fc1/weight"].id.get_chunk_info(0)
    raw = bytearray(saved.read_bytes())
    for i in range(info.byte_offset + 8, info.byte_offset + 24):
        raw[i] ^= 0xFF
    saved.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"/projections/fc1/weight: data is corrupt"):
        evsnn.load(saved)


def test_golden_file_is_committed_unchanged():
    assert GOLDEN.exists(), "tests/data/v0.1.0/everything.h5 must be committed; never regenerate it"


if __name__ == "__main__":  # writes the golden file once, for a new release's folder
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    evsnn.save(make_everything(), GOLDEN)
    shutil.copymode(__file__, GOLDEN)
