"""Scale-out on Dask: simulate and sweep with a client give what a serial run gives; a sweep survives a killed worker;
``--scheduler`` on the command line; Dask stays optional."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

import evsnn
import evsnn.simulation
import evsnn.sweep
from evsnn import DependencyError, EngineError, InputError, NeuronSpec
from evsnn.cli import main
from evsnn.cluster import local_cluster
from evsnn.equality import same
from evsnn.sweep import sweep
from evsnn.training import diehl_mlp
from factories import make_everything, make_mlp

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    saved = dict(os.environ)
    with local_cluster(2) as cluster, distributed.Client(cluster) as c:
        assert dict(os.environ) == saved and len(c.nthreads()) == 2  # workers up, this process's env untouched
        yield c
    # a worker restarted after the killed-worker test had its nanny write OMP_NUM_THREADS=1 here again
    os.environ.clear()
    os.environ.update(saved)


def event_everything() -> evsnn.SpikingModel:
    """Every IR feature the event engine runs (conv, sparse, delays, recurrence, bias, membrane readout)."""
    m = make_everything()
    out = NeuronSpec("lif", beta=0.9, threshold=0.75)
    return m.replace(populations=[p if p.name != "out" else dataclasses.replace(p, neuron=out) for p in m.populations])


def untimed(result: evsnn.Result) -> evsnn.Result:
    return dataclasses.replace(result, wall_time=0.0, setup_time=0.0)


@pytest.mark.parametrize("encoding", ["poisson", "regular", "current", "spikes"])
def test_simulate_on_dask_equals_a_serial_run(client, encoding):
    model = event_everything()
    rng = np.random.default_rng(5)
    n = 23  # 6 batches of 4, the last one short, over 2 shards (one per worker)
    if encoding == "spikes":
        x = evsnn.encode_spikes(model, rng.random((n, 15, 2, 7, 7)) < 0.2)
        settings = {}
    else:
        x, settings = rng.random((n, 2, 7, 7)), dict(steps=15, encoding=encoding, seed=3)
    serial = evsnn.simulate(model, x, record="all", batch_size=4, **settings)
    dask = evsnn.simulate(model, x, record="all", batch_size=4, client=client, **settings)
    assert same(untimed(dask), untimed(serial))
    # the rasters' sample indices run over the whole input, not restarting in each shard
    fc1 = dask.rasters["fc1"]
    assert fc1.sample.max() >= 20
    np.testing.assert_array_equal(fc1.to_dense(n, 15).sum(axis=2), dask.spike_counts["fc1"])
    assert dask.wall_time > 0 and dask.setup_time > 0


def test_simulate_spreads_its_shards_over_the_workers(client):
    """Dask runs a task where its inputs are, so without placement both shards ran beside the model, on one worker."""
    model = event_everything()
    x = np.random.default_rng(6).random((16, 2, 7, 7))
    with distributed.get_task_stream(client) as stream:
        evsnn.simulate(model, x, steps=5, batch_size=4, client=client)
    shards = [task for task in stream.data if task["key"].startswith("_run_shard")]
    assert len(shards) == 2 and len({task["worker"] for task in shards}) == 2


def test_a_workers_error_is_raised_as_itself(client):
    model = make_everything()  # the engine, built on the worker, refuses the device
    with pytest.raises(EngineError, match="Engine 'torch': device must be"):
        evsnn.simulate(model, np.ones((3, 2, 7, 7)), steps=5, client=client, engine="torch",
                       options={"torch": {"device": "tpu"}})


def test_a_client_must_be_a_client():
    with pytest.raises(InputError, match=r"simulate: client must be a distributed.Client, got str"):
        evsnn.simulate(event_everything(), np.ones((3, 2, 7, 7)), steps=5, client="tcp://127.0.0.1:8786")


def test_without_dask_a_client_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    with pytest.raises(DependencyError, match=r'pip install "evsnn\[dask\]"'):
        evsnn.simulate(event_everything(), np.ones((3, 2, 7, 7)), steps=5, client=object())
    assert main([*cli_run_args("unused.h5"), "--scheduler", "local:1"]) == 1  # before the model is read


def test_import_evsnn_does_not_import_dask():
    code = ("import sys, evsnn; bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')); "
            "assert not bad, bad")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --- sweeps ---------------------------------------------------------------------------------------------------------
RNG = np.random.default_rng(0)
X = RNG.random((300, 64)).astype(np.float32)
Y = RNG.integers(0, 10, 300)


def sweep_model() -> evsnn.SpikingModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 48, bias=False), nn.ReLU(), nn.Linear(48, 10, bias=False))
    return evsnn.convert(net, input_shape=(64,), norm="data", calibration=X)


def run_sweep(log, **kwargs):
    """16 runs of ~0.1 s: 12 selection runs (2 leaks x (2 thresholds + 2 thresholds x 2 alphas)) and 4 evaluations."""
    options = dict(x_select=X[:150], y_select=Y[:150], calibration=X, x_eval=X[150:], y_eval=Y[150:], log=log,
                   steps=60, encoding="poisson", leaks=(1.0, 0.9), resets=("subtract",), thresholds=(0.8, 1.0),
                   alphas=(1.0, 2.0), progress=False)
    return sweep(sweep_model(), **{**options, **kwargs})


@pytest.fixture(scope="module")
def serial_sweep(tmp_path_factory):
    return run_sweep(tmp_path_factory.mktemp("serial") / "log.jsonl")


def log_keys(path) -> list[tuple]:
    lines = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    return [tuple(r[k] for k in ("kind", "leak", "reset", "method", "threshold", "alpha")) for r in lines]


def test_sweep_survives_a_killed_worker(client, serial_sweep, tmp_path):
    log = tmp_path / "log.jsonl"
    out, errors = [], []
    thread = threading.Thread(target=lambda: _catch(errors, lambda: out.append(run_sweep(log, client=client))))
    thread.start()
    deadline = time.monotonic() + 60
    while (not log.exists() or len(log.read_text().splitlines()) < 2) and time.monotonic() < deadline:
        time.sleep(0.01)
    busy = {addr: keys for addr, keys in client.processing().items() if keys}
    logged = len(log.read_text().splitlines()) - 1
    victim = next(iter(busy))
    os.kill(client.run(os.getpid, workers=[victim])[victim], signal.SIGKILL)  # mid-task: no chance to clean up
    thread.join(timeout=120)
    assert not errors and out, errors
    assert 1 <= logged < 16 and busy, "the worker was killed after the sweep had finished"
    result = out[0]
    assert result.table() == serial_sweep.table()
    assert result.runs == serial_sweep.runs and result.to_csv() == serial_sweep.to_csv()
    keys = log_keys(log)
    assert len(keys) == len(set(keys)) == 16  # every run logged once, by the client, as it arrived


def _catch(errors: list, fn) -> None:
    try:
        fn()
    except BaseException as err:  # noqa: BLE001 - reported by the test's assertion
        errors.append(err)


def test_a_dask_log_resumes_serially_in_any_order(client, serial_sweep, tmp_path):
    """Runs arrive in any order; the choice of a cell (ties: grid order) must not depend on it."""
    log = tmp_path / "log.jsonl"
    run_sweep(log, client=client)
    head, *runs = log.read_text().splitlines()
    kept = [runs[i] for i in np.random.default_rng(1).permutation(len(runs))[:9]]
    log.write_text("\n".join([head, *kept]) + "\n")
    resumed = run_sweep(log)
    assert resumed.runs == serial_sweep.runs and resumed.table() == serial_sweep.table()
    assert sorted(log_keys(log)) == sorted(log_keys_of(serial_sweep))


def log_keys_of(result) -> list[tuple]:
    return [tuple(r[k] for k in ("kind", "leak", "reset", "method", "threshold", "alpha")) for r in result.runs]


# --- the command line -------------------------------------------------------------------------------------------------
def cli_run_args(model_path) -> list[str]:
    return ["run", str(model_path), "--samples", "40", "--steps", "20", "--encoding", "poisson", "--batch-size", "16",
            "--json", "--quiet"]


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "mlp.h5"
    evsnn.save(make_mlp(), path)
    return path


def test_cli_run_with_a_local_scheduler(mlp_file, capsys):
    summaries = []
    for extra in ([], ["--scheduler", "local:2"]):
        assert main([*cli_run_args(mlp_file), *extra]) == 0
        summary = json.loads(capsys.readouterr().out)
        summaries.append({k: v for k, v in summary.items() if not k.startswith(("wall_time", "setup_time"))})
    assert summaries[0] == summaries[1]


@pytest.mark.parametrize("scheduler, match", [
    ("nowhere", r"--scheduler nowhere: must be local, local:N or a Dask scheduler address such as tcp://HOST:8786"),
    ("local:0", r"--scheduler local:0: local:N needs a number of workers N >= 1"),
    ("tcp://127.0.0.1:1", r"--scheduler tcp://127.0.0.1:1: no Dask scheduler answered there within 0.5 s"),
])
def test_cli_bad_scheduler(mlp_file, capsys, monkeypatch, scheduler, match):
    monkeypatch.setattr("evsnn.cluster.CONNECT_TIMEOUT", 0.5)
    assert main([*cli_run_args(mlp_file), "--scheduler", scheduler]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(match, err), err


def test_cli_report_and_sweep_run_on_the_scheduler(client, mlp_file, tmp_path, capsys, monkeypatch):
    """--scheduler reaches report and sweep: the same output as without it, computed on the cluster's workers."""
    asked, on_dask = [], []

    @contextlib.contextmanager
    def the_module_cluster(text):  # the module's cluster instead of a new one: no second start-up
        asked.append(text)
        yield client

    def counted(module):
        original = module._run_on_dask

        def run_on_dask(*args, **kwargs):
            on_dask.append(module.__name__)
            return original(*args, **kwargs)
        return run_on_dask

    for module in (evsnn.simulation, evsnn.sweep):
        monkeypatch.setattr(module, "_run_on_dask", counted(module))
    monkeypatch.setattr("evsnn.cluster.scheduler_client", the_module_cluster)
    ckpt = tmp_path / "mlp.pt"
    torch.save(diehl_mlp(seed=0).state_dict(), ckpt)
    commands = {
        "report": ["report", str(mlp_file), "--samples", "20", "--steps", "10", "--encoding", "poisson", "--json",
                   "--quiet"],
        "sweep": ["sweep", str(ckpt), "--arch", "evsnn.training:diehl_mlp", "--calibration", "0:50", "--select",
                  "7000:7010", "--eval-samples", "5", "--steps", "5", "--leaks", "1,0.9", "--resets", "subtract",
                  "--thresholds", "1", "--alphas", "1", "--quiet"],
    }
    for name, args in commands.items():
        outputs = []
        for k, extra in enumerate(([], ["--scheduler", "tcp://127.0.0.1:8786"])):
            out = ["--out", str(tmp_path / f"{name}{k}")] if name == "sweep" else []
            assert main([*args, *out, *extra]) == 0
            text = capsys.readouterr().out
            outputs.append(re.sub(r"(wall|setup)[^\n]*\n", "", text).replace(f"{name}{k}", ""))
        assert outputs[0] == outputs[1], name
    assert asked == ["tcp://127.0.0.1:8786"] * 2 and on_dask == ["evsnn.simulation", "evsnn.sweep"]
