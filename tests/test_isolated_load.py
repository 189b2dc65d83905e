"""``evsnn.load(path, isolate=True)``: the file is parsed in a child process, whose crash or hang is a FormatError.

The reference for every outcome is the in-process ``evsnn.load`` of the same file.
"""

import signal
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

import evsnn
from evsnn import FormatError, InputError, UnsupportedVersionError
from evsnn.io.hdf5 import NoDigestWarning
from factories import make_everything, make_nir_neurons
from hostile import edit, restamp

GOLDEN = Path(__file__).parent / "data" / "v0.1.0" / "everything.h5"
HANG_OFFSET = 32090  # "byte 32090 0x01->0x10", re-stamped: libhdf5 loops listing /projections/skip


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    path = tmp_path_factory.mktemp("isolated") / "model.h5"
    evsnn.save(make_everything(np.float32), path)
    return path


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Where load(isolate=True) makes its temporary directory; checked empty afterwards."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    yield where
    assert list(where.iterdir()) == [], "load(isolate=True) left its temporary directory behind"


def _outcome(path, **kwargs):
    """(exception class, message) or the model, and the warnings issued, of load(path, **kwargs)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = evsnn.load(path, **kwargs)
        except Exception as err:  # noqa: BLE001 - compared between the two ways of loading
            result = (type(err), str(err))
    return result, [(w.category, str(w.message), w.filename) for w in caught]


@pytest.mark.parametrize("which", ["v2", "v1", "nir neurons"])
def test_isolated_load_equals_in_process_load_bit_for_bit(original, private_tmp, tmp_path, which):
    """"nir neurons": population encoding 1.1.0, which the child must save whole for this process to load."""
    path = {"v2": original, "v1": GOLDEN, "nir neurons": tmp_path / "nir.h5"}[which]
    if which == "nir neurons":
        evsnn.save(make_nir_neurons(np.float32), path)
    direct, direct_warnings = _outcome(path)
    isolated, isolated_warnings = _outcome(path, isolate=True)
    assert isinstance(direct, evsnn.SpikingModel)  # liveness: the file does load
    assert isolated == direct  # models compare bit for bit (evsnn.equality.BitExact)
    # the child's NoDigestWarning (version 1) is re-issued here, pointing at the caller
    assert isolated_warnings == direct_warnings
    assert [c for c, _, _ in direct_warnings] == ([NoDigestWarning] if which == "v1" else [])
    assert all(filename == __file__ for _, _, filename in isolated_warnings)


def _damaged(path):
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


def _newer(path):
    edit(path, lambda f: f.attrs.__setitem__("format_version", np.int64(3)))


def _directory(path):
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("spoil, cls, match", [
    (_damaged, FormatError, "checksum mismatch"),
    (_newer, UnsupportedVersionError, "format_version 3 is not supported"),
    (_directory, FormatError, "must be a regular file, got a directory"),
    (Path.unlink, FileNotFoundError, "no such file"),
])
def test_refusals_pass_through_with_their_class_and_message(original, tmp_path, private_tmp, spoil, cls, match):
    path = tmp_path / "spoilt.h5"
    path.write_bytes(original.read_bytes())
    spoil(path)
    direct, _ = _outcome(path)
    assert direct[0] is cls and match in direct[1] and str(path) in direct[1]
    assert _outcome(path, isolate=True)[0] == direct


def test_a_crafted_file_that_hangs_libhdf5_is_a_format_error_after_the_timeout(original, tmp_path, private_tmp):
    data = bytearray(original.read_bytes())
    assert data[HANG_OFFSET] == 0x01, "the saved layout moved: find the hanging mutant again (docs/hdf5-format.md)"
    data[HANG_OFFSET] = 0x10
    path = tmp_path / "hang.h5"
    path.write_bytes(bytes(data))
    restamp(path)
    # the child never exits by itself (the in-process load loops forever), so returning at all means it was killed
    with pytest.raises(FormatError, match=r"hang\.h5: the reader did not finish within 2 s"):
        evsnn.load(path, isolate=True, timeout=2)


def test_a_timeout_shorter_than_the_start_up_kills_the_reader(original, private_tmp):
    with pytest.raises(FormatError, match=r"model\.h5: the reader did not finish within 1e-06 s"):
        evsnn.load(original, isolate=True, timeout=1e-6)


def fake_interpreter(tmp_path, monkeypatch, script: str) -> None:
    """Start the child as a shell script instead of Python (the child is started with ``sys.executable``)."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o700)
    monkeypatch.setattr(sys, "executable", str(fake))


def test_a_reader_that_dies_of_a_signal_is_a_format_error_naming_it(original, tmp_path, private_tmp, monkeypatch):
    # an interpreter that segfaults on start stands in for libhdf5
    fake_interpreter(tmp_path, monkeypatch, "kill -SEGV $$")
    with pytest.raises(FormatError, match=rf"model\.h5: the reader crashed \(signal {signal.SIGSEGV}, SIGSEGV\)"):
        evsnn.load(original, isolate=True)


def test_a_reader_that_exits_without_a_result_is_a_format_error(original, tmp_path, private_tmp, monkeypatch):
    fake_interpreter(tmp_path, monkeypatch, "echo 'out of memory' >&2\nexit 3")
    with pytest.raises(FormatError, match=r"model\.h5: the reader failed \(exit status 3: out of memory\)"):
        evsnn.load(original, isolate=True)


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf"), "60"])
def test_timeout_must_be_a_positive_number(original, timeout):
    with pytest.raises(InputError, match="timeout must be a positive number"):
        evsnn.load(original, isolate=True, timeout=timeout)
