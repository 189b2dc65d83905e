"""Fuzzing a saved model: no mutation may crash or hang the reader or load a different model.

Each mutant is loaded in a worker subprocess (``hostile.fuzz``), so a segmentation
fault or a hang is caught and attributed to the file that caused it.
``benchmarks/hdf5_fuzz.py`` runs the same fuzzer for longer.
"""

import numpy as np
import pytest

import evsnn
from factories import make_everything, make_nir_neurons
from hostile import CRAFTED, craft, fuzz, mutations

N_MUTATIONS = 400


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "model.h5"
    evsnn.save(make_everything(np.float32), path)
    return path


@pytest.fixture(scope="module")
def nir_neurons(tmp_path_factory):
    """Populations of encoding-version 1.1.0: every NIR neuron field, as attributes and as per-neuron datasets."""
    path = tmp_path_factory.mktemp("fuzz") / "nir.h5"
    evsnn.save(make_nir_neurons(np.float32), path)
    return path


def test_mutations_of_a_saved_model_are_all_refused_with_format_error(original, tmp_path):
    data = original.read_bytes()
    mutants = list(mutations(data, N_MUTATIONS, seed=0))
    crafted = [(f"crafted {case}", craft(original, tmp_path / "c.h5", case, stamp=stamp).read_bytes())
               for case in CRAFTED for stamp in (True, False)]
    outcomes = fuzz(original, [*mutants, *crafted, ("unchanged", data)], tmp_path, jobs=2)
    assert outcomes.get("identical") == ["unchanged"]  # liveness: the worker does load a valid file
    bad = {kind: whats[:5] for kind, whats in outcomes.items()
           if kind != "identical" and not kind.startswith("FormatError") or "multi-line" in kind}
    assert not bad, f"crashes, hangs, silent loads or other errors: {bad}"
    assert sum(map(len, outcomes.values())) == N_MUTATIONS + len(crafted) + 1
    # every mutation of the bytes is caught by the digest, before libhdf5 parses anything
    assert len(outcomes["FormatError:checksum mismatch"]) >= N_MUTATIONS


@pytest.mark.parametrize("model", ["original", "nir_neurons"])
def test_mutations_behind_a_valid_digest_raise_nothing_but_format_error(model, tmp_path, request):
    """The parser's own robustness: mutate the HDF5 body, then re-stamp a valid digest.

    Such files can be valid models with different values (an attribute's bits changed), so
    "different" is allowed here; crashes, hangs and other exceptions are not. Version 2 holds no
    variable-length strings, whose global-heap values crashed libhdf5 before (0 crashes in
    20,000 of ``benchmarks/hdf5_fuzz.py --restamped``); one rare hang in libhdf5's link
    iteration remains (1 in 20,000, docs/hdf5-format.md), which this seed does not hit.
    """
    original = request.getfixturevalue(model)
    mutants = list(mutations(original.read_bytes(), N_MUTATIONS // 2, seed=1, body_only=True))
    outcomes = fuzz(original, mutants, tmp_path, restamped=True, jobs=2)
    assert sum(map(len, outcomes.values())) == len(mutants)
    assert any(kind.startswith("FormatError:structure") for kind in outcomes)  # liveness: the parser was reached
    bad = {kind: whats[:5] for kind, whats in outcomes.items()
           if kind.startswith(("crash", "hang", "error")) or "multi-line" in kind}
    assert not bad, f"crashes, hangs or other errors behind a valid digest: {bad}"
