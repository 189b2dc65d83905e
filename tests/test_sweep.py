"""Sweeps: the grid, the choice on selection images, resuming, damaged logs, outputs; `evsnn convert`/`sweep`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

import evsnn
from evsnn import EvsnnWarning, InputError
from evsnn.cli import main
from evsnn.io.datasets import mnist_split
from evsnn.sweep import _choose, plot_sweep, sweep
from evsnn.training import diehl_mlp

RNG = np.random.default_rng(0)
X = RNG.random((24, 6)).astype(np.float32)
Y = RNG.integers(0, 3, 24)


def small_model() -> evsnn.SpikingModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
    return evsnn.convert(net, input_shape=(6,), norm="data", calibration=X)


def run(log, **kwargs):
    options = dict(x_select=X[:12], y_select=Y[:12], calibration=X, x_eval=X[12:], y_eval=Y[12:], log=log, steps=10,
                   encoding="poisson",
                   leaks=(1.0, 0.9), resets=("subtract",), thresholds=(0.5, 1.0), alphas=(1.0,), progress=False)
    return sweep(small_model(), **{**options, **kwargs})


def test_grid_choice_and_outputs(tmp_path):
    result = run(tmp_path / "log.jsonl")
    select = [r for r in result.runs if r["kind"] == "select"]
    assert len(select) == 2 * 1 * 2 * 2  # leaks x resets x methods x thresholds (one alpha)
    assert len([r for r in result.runs if r["kind"] == "eval"]) == 4
    for b in result.best():
        cell = [r for r in select if (r["leak"], r["reset"], r["method"]) == (b["leak"], b["reset"], b["method"])]
        assert b["select_accuracy"] == max(r["accuracy"] for r in cell)
        tied = [r for r in cell if r["accuracy"] == b["select_accuracy"]]
        assert b["select_mean_accuracy"] == max(r["mean_accuracy"] for r in tied)
        assert b["eval_accuracy"] is not None and (b["alpha"] is None) == (b["method"] == "baseline")
    # each run is what a direct simulation of that configuration gives
    r = next(r for r in select if r["method"] == "baseline" and r["leak"] == 0.9 and r["threshold"] == 0.5)
    model = small_model()
    neuron = evsnn.NeuronSpec(kind="lif", beta=0.9, threshold=0.5)
    model = model.replace(input=evsnn.InputSpec((6,), encoding="poisson"),
                          populations=[p.__class__(p.name, p.shape, neuron, p.bias) for p in model.populations])
    direct = evsnn.simulate(model, X[:12], steps=10, seed=0)
    assert direct.accuracy(Y[:12]) == r["accuracy"]
    assert direct.accuracy_over_time(Y[:12]).mean() == pytest.approx(r["mean_accuracy"])
    lines = result.to_csv().splitlines()
    assert lines[0].startswith("kind,leak,reset,method,threshold,alpha,accuracy") and len(lines) == 13
    assert json.loads(json.dumps(result.to_json()))["best"] == result.best()
    assert result.table().splitlines()[4].split()[:3] == ["0.9", "subtract", "baseline"]
    plot_sweep(result, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 1000


def test_ties_go_to_the_faster_configuration_then_to_grid_order():
    def record(threshold, accuracy, mean):
        return dict(kind="select", leak=1.0, reset="subtract", method="baseline", threshold=threshold, alpha=None,
                    accuracy=accuracy, mean_accuracy=mean)
    runs = [record(0.8, 1.0, 0.90), record(1.0, 1.0, 0.95), record(1.2, 0.99, 0.99), record(1.4, 1.0, 0.95)]
    assert _choose(runs, 1.0, "subtract", "baseline")["threshold"] == 1.0
    assert _choose(runs, 1.0, "zero", "baseline") is None


def test_resume_skips_finished_runs_and_drops_a_cut_line(tmp_path):
    log = tmp_path / "log.jsonl"
    first = run(log)
    text = log.read_text()
    log.write_text(text[: text.rfind("\n", 0, len(text) - 1) + 1] + '{"kind": "ev')  # a write cut short
    with pytest.warns(EvsnnWarning, match="dropping the unfinished last line"):
        again = run(log)
    assert again.runs == first.runs and log.read_text() == text  # the cut run was repeated, nothing else
    assert run(log).runs == first.runs  # nothing left to do
    assert len(log.read_text().splitlines()) == 1 + len(first.runs)


def test_damaged_or_foreign_logs_are_refused(tmp_path):
    log = tmp_path / "log.jsonl"
    run(log)
    with pytest.raises(InputError, match=r"written by a sweep with other settings \(steps differ\)"):
        run(log, steps=11)
    lines = log.read_text().splitlines()
    lines[2] = "not json"
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"line 3 is not valid JSON; the log is damaged"):
        run(log)
    other = tmp_path / "other.jsonl"
    other.write_text("hello\n")
    with pytest.raises(InputError, match=r"is not a sweep log"):
        run(other)


@pytest.mark.parametrize("kwargs, match", [
    (dict(leaks=(1.5,)), r"leaks must be a non-empty list of leak factors in \(0, 1\]"),
    (dict(resets=("soft",)), r"resets must be a non-empty list"),
    (dict(methods=("l5",)), r"methods must be"),
    (dict(thresholds=()), r"thresholds must be a non-empty list of positive numbers"),
    (dict(alphas=(-1.0,)), r"alphas must be"),
    (dict(calibration=None), r"methods include 'l4', which needs calibration images"),
    (dict(y_eval=None), r"x_eval and y_eval must be given together"),
])
def test_bad_grids(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        run(tmp_path / "log.jsonl", **kwargs)


def test_cli_convert_and_sweep(tmp_path, capsys):
    net = diehl_mlp(seed=0)
    ckpt = tmp_path / "mlp.pt"
    torch.save({"state_dict": net.state_dict()}, ckpt)
    out = tmp_path / "m.h5"
    assert main(["convert", str(ckpt), "--arch", "evsnn.training:diehl_mlp", "--norm", "data", "--calibration",
                 "0:50", "--l4-alpha", "1", "-o", str(out)]) == 0
    model = evsnn.load(out)
    data = mnist_split()
    expected = evsnn.convert(net.eval(), input_shape=(1, 28, 28), norm="data", calibration=data.x_train[:50],
                             l4_alpha=1.0)
    assert model.replace(provenance={}) == expected.replace(provenance={})
    assert model.provenance["arch"] == "evsnn.training:diehl_mlp" and model.provenance["calibration_images"] == "0:50"
    capsys.readouterr()
    args = ["sweep", str(ckpt), "--arch", "evsnn.training:diehl_mlp", "--calibration", "0:50", "--select",
            "7000:7010", "--eval-samples", "5", "--steps", "5", "--leaks", "1,0.9", "--resets", "subtract",
            "--thresholds", "1", "--alphas", "1", "--out", str(tmp_path / "sw"), "--quiet"]
    assert main(args) == 0
    assert "0.9  subtract  l4" in capsys.readouterr().out
    log = (tmp_path / "sw" / "sweep.jsonl").read_text()
    assert main(args) == 0 and (tmp_path / "sw" / "sweep.jsonl").read_text() == log  # resumed: nothing rerun
    assert (tmp_path / "sw" / "sweep.csv").read_text().count("\n") == 1 + 4 + 4


@pytest.mark.parametrize("args, match", [
    (["--arch", "nope:thing"], r"--arch nope:thing: cannot be imported \(No module named 'nope'\)"),
    (["--arch", "evsnn.training:diehl_cnn"], r"the weights do not fit --arch evsnn.training:diehl_cnn"),
    (["--arch", "evsnn.training:diehl_mlp", "--calibration", "0:9000"],
     r"--calibration must lie within the 8000 bundled"),
    (["--arch", "evsnn.training:diehl_mlp", "--arch-kwargs", "{bad"], r"--arch-kwargs must be a JSON object"),
])
def test_cli_convert_errors(tmp_path, capsys, args, match):
    ckpt = tmp_path / "mlp.pt"
    torch.save(diehl_mlp().state_dict(), ckpt)
    assert main(["convert", str(ckpt), "-o", str(tmp_path / "m.h5"), *args]) == 2  # bad arguments
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "m.h5").exists()
