"""The ``evsnn`` command and the demo."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import evsnn
from evsnn.cli import main
from evsnn.demo import run_demo
from evsnn.training import diehl_cnn, random_shift
from factories import make_everything


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"evsnn {evsnn.__version__}"
    assert main([]) == 0
    assert "info" in capsys.readouterr().out


def test_console_script_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "evsnn", "--help"], capture_output=True, text=True, check=True)
    assert "usage: evsnn" in out.stdout and "demo" in out.stdout


def test_info_text_and_json(tmp_path, capsys):
    path = tmp_path / "m.h5"
    evsnn.save(make_everything(), path)
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "3 populations, 69 neurons, 5 projections, 2,019 synapses" in text
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["synapses"] == 2019 and info["provenance"]["calibration_size"] == 1000
    assert [p["name"] for p in info["projections"]] == ["conv1", "fc1", "skip", "out", "recurrent"]


def test_info_reports_bad_files_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    assert main(["info", str(bad)]) == 1  # a damaged file: the work failed
    err = capsys.readouterr().err
    assert err.startswith("evsnn info: error:") and "bad.h5" in err and "Traceback" not in err
    assert main(["info", str(tmp_path / "missing.h5")]) == 2  # a bad argument
    assert "missing.h5: no such file" in capsys.readouterr().err


def test_demo_smoke(tmp_path, capsys):
    """A one-epoch demo on 500 images: every step runs and the saved model loads."""
    out = tmp_path / "demo.h5"
    result = run_demo(out=str(out), epochs=1, n_train=500, steps=5, progress=False)
    text = capsys.readouterr().out
    assert "ANN accuracy on the 2000 evaluation images" in text and "fc1  " in text
    assert "energy (cmos45-fp32): SNN" in text and "SNN/ANN energy:" in text
    model = evsnn.load(out)
    assert [p.shape for p in model.populations] == [(1200,), (1200,), (10,)]
    assert model.provenance["training"]["train_images"] == 500
    assert "cross-validation, event engine vs Brian2 (float64, 20 images, 5 steps)" in text
    assert result["cross_validation"]["identical"]
    assert result["max_forward_diff"] < 1e-4
    assert "SNN accuracy" in text and result["snn"]["samples"] == 2000
    assert result["snn"]["sops_per_sample_total"]["mean"] > 0


@pytest.mark.slow
def test_demo_recipe_reaches_96_percent(tmp_path, capsys):
    """The issue's bar: the default demo recipe gives >= 96% ANN accuracy on the 2,000 evaluation images."""
    result = run_demo(out=str(tmp_path / "demo.h5"), steps=1, progress=False)
    assert result["ann_accuracy"] >= 0.96


def test_run_text_and_json(tmp_path, capsys):
    from factories import make_mlp

    path = tmp_path / "mlp.h5"
    evsnn.save(make_mlp(), path)
    assert main(["run", str(path), "--samples", "8", "--steps", "12", "--encoding", "poisson", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "accuracy vs step: 1:" in text and "12:" in text and "SOPs per sample" in text
    assert main(["run", str(path), "--samples", "8", "--steps", "12", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 8 and info["settings"]["steps"] == 12 and "fc1" in info["input_macs_per_sample"]
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(path), "--steps", "5", "--samples", "0"])
    assert exit_.value.code == 2 and "--samples: must be an integer >= 1, got '0'" in capsys.readouterr().err
    assert main(["run", str(path), "--steps", "5", "--samples", "2001"]) == 2
    assert "--samples must be between 1 and 2000" in capsys.readouterr().err


def test_training_helpers_are_seeded():
    a, b = diehl_cnn(seed=3), diehl_cnn(seed=3)
    assert all(np.array_equal(p.detach(), q.detach()) for p, q in zip(a.parameters(), b.parameters()))
    import torch

    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    s1 = random_shift(x, 1, np.random.default_rng(0))
    s2 = random_shift(x, 1, np.random.default_rng(0))
    assert torch.equal(s1, s2) and s1.shape == x.shape
    # every output is the input shifted by at most one pixel, zero filled
    for img, src in zip(s1, x):
        assert any(torch.equal(img[0], torch.roll(torch.nn.functional.pad(src[0], (1, 1, 1, 1)), (dy, dx), (0, 1))
                               [1:-1, 1:-1]) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


# --- a CLI for people: every subcommand refuses bad arguments at once, in one line -----------------------------
class _ExpensiveWorkRan(BaseException):
    """Raised by the patched training/simulation functions; a BaseException so that main() cannot swallow it."""


@pytest.fixture
def guarded(monkeypatch):
    """Patch every expensive step (training, conversion, simulation, validation, sweep) to raise; list the calls."""
    import functools
    import importlib

    calls = []

    def refuse(name, original):
        @functools.wraps(original)  # the same signature: the CLI reads which settings a function takes
        def patched(*args, **kwargs):
            calls.append(name)
            raise _ExpensiveWorkRan(name)
        return patched

    for module, name in (("simulation", "simulate"), ("validation", "validate"), ("validation", "convergence"),
                         ("sweep", "sweep"), ("converters", "convert"), ("demo", "train_diehl")):
        module = importlib.import_module(f"evsnn.{module}")
        monkeypatch.setattr(module, name, refuse(f"{module.__name__}.{name}", getattr(module, name)))
    return calls


@pytest.fixture
def files(tmp_path):
    """A small model, sample files good and bad, checkpoints of several kinds, a FIFO, an empty file."""
    import torch

    from factories import make_mlp

    f = {"tmp": tmp_path, "dir": tmp_path, "missing": tmp_path / "missing.h5", "nodir": tmp_path / "no" / "x"}
    evsnn.save(make_mlp(), f.setdefault("model", tmp_path / "mlp.h5"))
    rng = np.random.default_rng(0)
    np.save(f.setdefault("bad_npy", tmp_path / "bad.npy"), rng.random((10, 3)))
    np.save(f.setdefault("good_npy", tmp_path / "good.npy"), rng.random((6, 1, 28, 28)))
    np.save(f.setdefault("flat_npy", tmp_path / "flat.npy"), rng.random((6, 784)))
    np.savez(f.setdefault("flat_npz", tmp_path / "flat.npz"), x=rng.random((6, 784)), y=np.arange(6) % 10)
    np.savez(f.setdefault("no_x_npz", tmp_path / "nox.npz"), images=rng.random((6, 1, 28, 28)))
    np.savez(f.setdefault("bad_labels_npz", tmp_path / "badlabels.npz"), x=rng.random((6, 1, 28, 28)),
             y=np.full(6, 10))
    (f.setdefault("empty", tmp_path / "empty.h5")).write_bytes(b"")
    (f.setdefault("empty_npy", tmp_path / "empty.npy")).write_bytes(b"")
    (f.setdefault("notnpy", tmp_path / "text.npy")).write_text("hello")
    os.mkfifo(f.setdefault("fifo", tmp_path / "fifo.h5"))
    net = torch.nn.Linear(784, 10)
    torch.save(net.state_dict(), f.setdefault("pt", tmp_path / "lin.pt"))
    torch.save(torch.nn.Sequential(net), f.setdefault("full_pt", tmp_path / "full.pt"))
    (f.setdefault("garbage_pt", tmp_path / "garbage.pt")).write_bytes(b"\x80\x02}q\x00(X\x01\x00ae" + bytes(200))
    return {k: str(v) for k, v in f.items()}


LIN = ["--arch", "torch.nn:Linear", "--arch-kwargs", '{{"in_features": 784, "out_features": 10}}',
       "--input-shape", "784"]
MODEL_FILES = ["{missing}", "{dir}", "{fifo}", "{empty}", "{pt}", "{garbage_pt}"]
SIM = [  # hostile run-settings and --data for run, report and validate (a valid model, --steps 5 unless bad)
    ["--steps", "0"], ["--steps", "-1"], ["--steps", "abc"], ["--steps", "1e3"], [],  # [] : --steps missing
    ["--steps", "5", "--batch-size", "0"], ["--steps", "5", "--seed", "-1"], ["--steps", "5", "--max-rate", "-5"],
    ["--steps", "5", "--threads", "0"], ["--steps", "5", "--max-rate", "nan"], ["--steps", "5", "--scale", "inf"], ["--steps", "5", "--dtype", "float16"],
    ["--steps", "5", "--encoding", "morse"], ["--steps", "5", "--samples", "0"],
    ["--steps", "5", "--data", "{bad_npy}"], ["--steps", "5", "--data", "{flat_npy}"],
    ["--steps", "5", "--data", "{missing}"], ["--steps", "5", "--data", "{dir}"], ["--steps", "5", "--data", "{fifo}"],
    ["--steps", "5", "--data", "{empty_npy}"], ["--steps", "5", "--data", "{notnpy}"],
    ["--steps", "5", "--data", "{no_x_npz}"], ["--steps", "5", "--data", "{bad_labels_npz}"],
    ["--steps", "5", "--data", "{good_npy}", "--samples", "7"], ["--steps", "5", "--labels", "{good_npy}"],
    ["--steps", "5", "--engine-option", "garbage"], ["--steps", "5", "--engine-option", "event=1"],
    ["--steps", "5", "--engine-option", "event.no_such_option=1"], ["--steps", "5", "--engine-option", "nope.x=1"],
]
HOSTILE = (
    [["info", m] for m in MODEL_FILES]
    + [[cmd, m, "--steps", "5"] for cmd in ("run", "report", "validate") for m in MODEL_FILES]
    + [[cmd, "{model}", *a] for cmd in ("run", "report", "validate") for a in SIM]
    + [["run", "{model}", "--steps", "5", "--engine", "nope"], ["report", "{model}", "--steps", "5", "--engine", "x"],
       ["report", "{model}", "--steps", "5", "--plot", "{tmp}/out.xyz"],
       ["report", "{model}", "--steps", "5", "--plot", "{nodir}/out.png"],
       ["report", "{model}", "--steps", "5", "--plot", "{dir}"],
       ["report", "{model}", "--steps", "5", "--csv", "{nodir}/out.csv"],
       ["report", "{model}", "--steps", "5", "--preset", "nope"],
       ["report", "{model}", "--steps", "5", "--ann-preset", "{missing}"],
       ["report", "{model}", "--steps", "5", "--sops", "some"],
       ["validate", "{model}", "--steps", "5", "--against", "nope"],
       ["validate", "{model}", "--steps", "5", "--convergence", "ten"],
       ["validate", "{model}", "--steps", "5", "--convergence", "0"],
       ["validate", "{model}", "--steps", "5", "--propagation", "sideways"]]
    + [["convert", c, *LIN, "--norm", "none", "-o", "{tmp}/o.h5"]
       for c in ["{missing}", "{dir}", "{fifo}", "{empty}", "{garbage_pt}", "{full_pt}", "{model}"]]
    + [["convert", "{pt}", *LIN, "--norm", "none", "-o", "{nodir}/o.h5"],
       ["convert", "{pt}", *LIN, "--norm", "none", "-o", "{dir}"],
       ["convert", "{pt}", *LIN, "--calibration", "{bad_npy}", "-o", "{tmp}/o.h5"],
       ["convert", "{pt}", *LIN, "--calibration", "{fifo}", "-o", "{tmp}/o.h5"],
       ["convert", "{pt}", *LIN, "--calibration", "0:99999", "-o", "{tmp}/o.h5"],
       ["convert", "{pt}", "--arch", "nope:x", "--norm", "none", "-o", "{tmp}/o.h5"],
       ["convert", "{pt}", "--arch", "torch.nn:Linear", "--arch-kwargs", "{{oops", "-o", "{tmp}/o.h5"],
       ["convert", "{pt}", "--arch", "torch.nn:Linear", "--arch-kwargs", "[1]", "-o", "{tmp}/o.h5"],
       ["convert", "{pt}", "--arch", "torch.nn:Linear", "--norm", "none", "-o", "{tmp}/o.h5"],  # missing kwargs
       ["convert", "{pt}", "--arch", "torch.nn:Conv2d", "--arch-kwargs", '{{"in_channels": 1, "out_channels": 2, '
        '"kernel_size": 3}}', "--norm", "none", "-o", "{tmp}/o.h5"],  # weights do not fit
       ["convert", "{pt}", "--norm", "none", "-o", "{tmp}/o.h5"],  # no --arch
       ["convert", "{pt}", *LIN[:4], "--input-shape", "a,b", "-o", "{tmp}/o.h5"],
       ["convert", "{pt}", *LIN, "--percentile", "0", "-o", "{tmp}/o.h5"]]
    + [["sweep", "{pt}", *LIN, "--calibration", "{flat_npy}", "--select", "{flat_npz}", "--out", "{tmp}/sw", *a]
       for a in (["--steps", "0"], [], ["--steps", "5", "--leaks", "abc"], ["--steps", "5", "--leaks", "2"],
                 ["--steps", "5", "--resets", "maybe"], ["--steps", "5", "--eval-samples", "-1"],
                 ["--steps", "5", "--out", "{nodir}/sw"], ["--steps", "5", "--out", "{model}"],
                 ["--steps", "5", "--select", "{flat_npy}"], ["--steps", "5", "--data", "{flat_npy}"],
                 ["--steps", "5", "--data", "{bad_npy}"], ["--steps", "5", "--data", "{fifo}"],
                 ["--steps", "5", "--calibration", "{missing}"], ["--steps", "5", "--engine-option", "x"],
                 ["--steps", "5", "--batch-size", "0"])]
    + [["sweep", "{model}", "--steps", "5", "--threads", "0"]]
    + [["demo", *a] for a in (["--epochs", "0"], ["--epochs", "-1"], ["--steps", "0"], ["--steps", "abc"],
                              ["--seed", "-2"], ["--threads", "0"], ["--out", "{nodir}/m.h5"], ["--out", "{dir}"])]
)


def _run_main(argv, capsys):
    """main(argv) in-process under a 30 s alarm (a blocking open of a FIFO fails the test instead of hanging)."""
    import signal

    def hang(*_):
        raise _ExpensiveWorkRan("blocked for 30 s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(30)
    try:
        try:
            status = main(argv)
        except SystemExit as exit_:  # argparse's own usage errors
            status = exit_.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("template", HOSTILE, ids=[" ".join(t) for t in HOSTILE])
def test_hostile_arguments_fail_at_once_in_one_line(template, files, guarded, capsys):
    argv = [a.format(**files) for a in template]
    status, out, err = _run_main(argv, capsys)
    assert guarded == [], f"expensive work ran before the arguments were refused: {guarded}"
    assert status in (1, 2), (status, err)
    assert "Traceback" not in out + err and "\x1b[" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"evsnn {argv[0]}: error: "), err
    assert "internal error" not in err  # a bug, not a refusal
    for python in ("Pass e.g.", "steps=", "batch_size", "KeyError", "Errno", ".tmp"):
        assert python not in err, err


@pytest.mark.parametrize("argv", [
    ["run", "{model}", "--steps", "5", "--samples", "2"],
    ["run", "{model}", "--steps", "5", "--data", "{good_npy}", "--engine-option", "event.dense_above=0.5"],
    ["report", "{model}", "--steps", "5", "--plot", "{tmp}/r.svg", "--csv", "{tmp}/r.csv"],
    ["validate", "{model}", "--steps", "5", "--data", "{good_npy}"],
    ["convert", "{pt}", *LIN, "--norm", "none", "-o", "{tmp}/o.h5"],
    ["convert", "{full_pt}", "--trust-pickle", "--input-shape", "784", "--norm", "none", "-o", "{tmp}/o.h5"],
    ["sweep", "{pt}", *LIN, "--calibration", "{flat_npy}", "--select", "{flat_npz}", "--data", "{flat_npz}",
     "--out", "{tmp}/sw", "--steps", "5"],
    ["demo", "--epochs", "1", "--steps", "5", "--out", "{tmp}/m.h5", "--quiet"],
], ids=lambda a: a[0])
def test_the_guard_sees_valid_commands_reach_the_work(argv, files, guarded, capsys):
    """Liveness of the test above: the same commands with valid arguments do reach the patched work."""
    with pytest.raises(_ExpensiveWorkRan):
        _run_main([a.format(**files) for a in argv], capsys)
    assert len(guarded) == 1


def test_messages_speak_in_flags(files, capsys):
    lin = [a.format() for a in LIN]
    status, _, err = _run_main(["run", files["model"], "--steps", "5", "--data", files["bad_npy"]], capsys)
    assert status == 2 and err.strip() == (f"evsnn run: error: --data {files['bad_npy']} holds arrays of shape (3,) "
                                           f"per sample; the model {files['model']} expects (1, 28, 28).")
    status, _, err = _run_main(["info", files["pt"]], capsys)
    assert status == 2 and "is a torch checkpoint, not an evsnn model" in err and "evsnn convert" in err
    status, _, err = _run_main(["convert", files["full_pt"], *lin, "--norm", "none", "-o", files["tmp"] + "/o.h5"],
                                 capsys)
    assert status == 2 and "torch.save(net)" in err and "--trust-pickle" in err
    status, _, err = _run_main(["report", files["model"], "--steps", "5", "--plot", files["nodir"] + "/r.png"], capsys)
    assert status == 2 and f"the directory {files['nodir']} does not exist" in err
    status, _, err = _run_main(["convert", files["pt"], *lin, "--norm", "none", "-o", files["nodir"] + "/o.h5"], capsys)
    assert status == 2 and f"the directory {files['nodir']} does not exist" in err
    status, _, err = _run_main(["run", files["model"]], capsys)
    assert status == 2 and "--steps" in err


def test_library_messages_are_translated_to_flags():
    from evsnn.cli import _shell

    assert _shell("simulate: batch_size must be a positive integer, got 0.") == \
        "--batch-size must be a positive integer, got 0."
    assert _shell("encode: steps must be a positive integer, got 0. Pass e.g. steps=100.") == \
        "--steps must be a positive integer, got 0."
    assert _shell("Weights only load failed, \x1b[1mdo those steps\x1b[0m.\n\tnext") == \
        "Weights only load failed, do those steps. next"


def test_unexpected_errors_interrupts_and_debug(files, monkeypatch, capsys):
    import evsnn.io.hdf5

    def boom(*_, **__):
        raise TypeError("an unforeseen bug")

    monkeypatch.setattr(evsnn.io.hdf5, "load", boom)
    status, out, err = _run_main(["info", files["model"]], capsys)
    assert status == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "internal error" in err and "TypeError: an unforeseen bug" in err and "EVSNN_DEBUG=1" in err
    monkeypatch.setenv("EVSNN_DEBUG", "1")
    with pytest.raises(TypeError, match="unforeseen"):
        main(["info", files["model"]])

    def interrupt(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(evsnn.io.hdf5, "load", interrupt)
    status, _, err = _run_main(["info", files["model"]], capsys)
    assert status == 130 and err.strip() == "evsnn info: interrupted"


def test_help_documents_exit_codes_and_trust_pickle(capsys):
    for argv in (["--help"], ["convert", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "exit status:" in out and "EVSNN_DEBUG=1" in out
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    assert "--trust-pickle" in capsys.readouterr().out


def test_run_on_own_data_with_and_without_labels(tmp_path, capsys):
    """A model of another input shape runs on --data; labels give accuracy, their absence says "no labels"."""
    rng = np.random.default_rng(1)
    model = evsnn.SpikingModel(input=evsnn.InputSpec((4,)), populations=[evsnn.Population("out", (3,))],
                               projections=[evsnn.Projection("out", "input", "out",
                                                             evsnn.Dense(np.eye(3, 4) * 0.6))])
    path = tmp_path / "m.h5"
    evsnn.save(model, path)
    x = rng.random((9, 4))
    y = x[:, :3].argmax(axis=1)  # the identity network predicts the largest of the first three inputs
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(path), "--steps", "50", "--data", str(tmp_path / "d.npz"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 9 and info["data"] == f"{tmp_path / 'd.npz'} [0:9]"
    predicted = evsnn.simulate(model, x, steps=50).predictions
    assert info["accuracy"] == pytest.approx((predicted == y).mean()) and info["accuracy"] > 0.5
    assert main(["run", str(path), "--steps", "50", "--data", str(tmp_path / "x.npy"), "--samples", "4"]) == 0
    text = capsys.readouterr().out
    assert "no labels" in text and "accuracy" not in text
    assert main(["run", str(path), "--steps", "5", "--data", str(tmp_path / "x.npy"), "--json"]) == 0
    assert "accuracy" not in json.loads(capsys.readouterr().out)
    assert main(["run", str(path), "--steps", "5"]) == 2  # the bundled images do not fit: say so, in flags
    assert "the bundled MNIST evaluation images have arrays of shape (1, 28, 28) per sample; the model" in \
        capsys.readouterr().err


def test_report_on_idx_data_with_idx_labels(tmp_path, capsys):
    from test_datasets import write_idx

    from factories import make_mlp

    path = tmp_path / "m.h5"
    evsnn.save(make_mlp(), path)
    data = evsnn.io.datasets.mnist_split()
    images = np.round(data.x_test[:5, 0] * 255).astype(np.uint8)
    write_idx(tmp_path / "img-idx3-ubyte", images)
    write_idx(tmp_path / "lab-idx1-ubyte", data.y_test[:5].astype(np.uint8))
    assert main(["report", str(path), "--steps", "4", "--data", str(tmp_path / "img-idx3-ubyte"), "--labels",
                 str(tmp_path / "lab-idx1-ubyte"), "--json"]) == 0
    idx = json.loads(capsys.readouterr().out)
    assert main(["report", str(path), "--steps", "4", "--samples", "5", "--json"]) == 0
    bundled = json.loads(capsys.readouterr().out)  # the same five images and labels, read from the package
    assert idx["samples"] == 5 and idx["snn"]["energy_pj"] == bundled["snn"]["energy_pj"]
    assert idx["time"]["accuracy_per_step"] == bundled["time"]["accuracy_per_step"]
    assert main(["report", str(path), "--steps", "4", "--data", str(tmp_path / "img-idx3-ubyte")]) == 0
    text = capsys.readouterr().out
    assert "img-idx3-ubyte [0:5], no labels" in text


def test_run_settings_reach_the_library_with_its_names(files, monkeypatch, capsys):
    """Each run-settings flag arrives as the library's keyword; --engine-option values are read as JSON."""
    import functools

    import evsnn.simulation

    seen = {}
    original = evsnn.simulation.simulate

    @functools.wraps(original)
    def spy(model, x, **kwargs):
        seen.update(kwargs, n=len(x))
        raise _ExpensiveWorkRan("simulate")

    monkeypatch.setattr(evsnn.simulation, "simulate", spy)
    with pytest.raises(_ExpensiveWorkRan):
        main(["run", files["model"], "--steps", "7", "--encoding", "regular", "--seed", "3", "--max-rate", "250",
              "--scale", "0.5", "--dtype", "float64", "--batch-size", "5", "--threads", "3", "--samples", "4",
              "--quiet",
              "--engine-option", "event.dense_above=0.25", "--engine-option", "brian2.codegen=numpy"])
    assert seen == {"engine": "event", "client": None, "steps": 7, "encoding": "regular", "seed": 3,
                    "max_rate": 250.0, "scale": 0.5, "dtype": "float64", "batch_size": 5, "threads": 3,
                    "progress": False,
                    "options": {"event": {"dense_above": 0.25}, "brian2": {"codegen": "numpy"}}, "n": 4}


@pytest.mark.parametrize("command", ["run", "report", "validate", "sweep", "demo"])
def test_every_simulating_subcommand_takes_threads(command):
    from evsnn.cli import build_parser

    extra = {"demo": [], "sweep": ["net.pt", "--out", "sweep"]}.get(command, ["model.h5"])
    argv = [command, *extra, "--steps", "5", "--threads", "2"]
    assert build_parser().parse_args(argv).threads == 2
    assert build_parser().parse_args(argv[:-2]).threads is None  # unset: the library's default, all cores
