"""Speed of the torch timestep engine against the event engine, Brian2 and SpikingJelly, in one run.

Run from the repository root (after installing evsnn):

    python benchmarks/torch_engine.py            # trains the two models first (seeded, a few minutes)
    python benchmarks/torch_engine.py --quick    # fewer samples and epochs, for a smoke test

Models: the demo's Diehl MLP (784-1200-1200-10) and Diehl CNN
(12c5-a2-64c5-a2-10), trained with the demo recipe (``train_diehl``, seed 0)
on the bundled training split and converted with data-based normalization on
it. Every engine runs on ``--threads`` cores (default one: torch and BLAS
limited alike), float32, on the same encoded input.

Printed, in order:

1. float64 identity: the torch engine against the event engine, spike for
   spike (every population, every step) on a few samples;
2. samples/s and SOP/s of the torch engine (CPU, and CUDA where torch finds
   one) and the event engine at batch 1, 64 and 256, Poisson and analog
   input; Brian2's time per sample (numpy target, the first few samples,
   Poisson input) and the ratios;
3. where each engine is the right choice: time per sample against the input
   rate (spike density) at batch 64 and 256, and which engine is faster;
4. the same networks with SRM neurons (seed 003's kernels): the event
   engine's time per SOP and the torch engine's time, against the input rate;
5. SpikingJelly's converted model of the same trained ANN (where SpikingJelly
   is installed: run the script in that environment with
   ``PYTHONPATH=<checkout>``) against the torch engine, both at batch 256,
   2,000 evaluation images x 100 steps, analog input, the same thread count.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

import evsnn
from evsnn.encoding import encode
from evsnn.io.datasets import mnist_split
from evsnn.training import train_diehl

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"MLP 784-1200-1200-10": "mlp", "CNN 12c5-a2-64c5-a2-10": "cnn"}


def load_average() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} cores)"


def run(model, enc, engine: str, batch: int, threads: int, device: str = "cpu", repeats: int = 1,
        dtype: str = "float32", record=()) -> tuple[float, evsnn.Result]:
    """Best wall time of ``simulate`` over ``repeats`` runs, and the last Result."""
    options = {"torch": {"device": device}} if engine == "torch" else {"event": {}}
    best, result = np.inf, None
    for _ in range(repeats):
        result = evsnn.simulate(model, enc, engine=engine, batch_size=batch, threads=threads, dtype=dtype,
                                options=options, record=record)
        best = min(best, result.wall_time)
    return best, result


def identity(models: dict, data, threads: int, n: int = 8, steps: int = 40) -> None:
    print(f"\nfloat64, {n} samples x {steps} steps: torch engine vs event engine (exact delivery), every "
          "population's spikes")
    for name, model in models.items():
        for encoding in ("poisson", "current"):
            enc = encode(model, data.x_test[:n], steps=steps, seed=0, encoding=encoding)
            a = evsnn.simulate(model, enc, dtype="float64", record="all", threads=threads,
                               options={"event": {"dense_above": 1.0}})
            b = evsnn.simulate(model, enc, engine="torch", dtype="float64", record="all", threads=threads)
            same = all(np.array_equal(a.rasters[k].to_dense(n, steps), b.rasters[k].to_dense(n, steps))
                       for k in a.rasters)
            spikes = sum(len(r) for r in a.rasters.values())
            print(f"  {name:<24}{encoding:>9}: identical {same} ({spikes:,} spikes)")


def speed_table(models: dict, data, args, sizes: dict, devices: list[str]) -> None:
    steps, threads = args.steps, args.threads
    print(f"\n{threads} thread(s), float32, {steps} steps, Poisson (max_rate 1000 Hz) and analog input, best of "
          f"{sizes['repeats']}; {load_average()}")
    print(f"{'model':<24}{'input':>9}{'batch':>6}{'SOP/sample':>13}{'engine':>12}{'ms/sample':>11}{'samples/s':>11}"
          f"{'SOP/s':>11}{'event ms':>10}{'torch/event':>13}{'brian2 ms':>11}{'brian2/torch':>14}")
    for name, model in models.items():
        brian2 = None
        if not args.no_brian2:
            n_b = sizes["brian2"]
            enc = encode(model, data.x_test[:n_b], steps=steps, seed=0)
            brian2 = run(model, enc, "brian2", 1, threads)[0] / n_b
        for encoding in ("poisson", "current"):
            for batch in (1, 64, 256):
                n = sizes[batch]
                enc = encode(model, data.x_test[:n], steps=steps, seed=0, encoding=encoding)
                t_event, result = run(model, enc, "event", batch, threads, repeats=sizes["repeats"])
                sops = result.total_sops().mean()
                for device in devices:
                    t_torch, _ = run(model, enc, "torch", batch, threads, device=device, repeats=sizes["repeats"])
                    b2 = (f"{1e3 * brian2:>11.1f}{brian2 / (t_torch / n):>14.1f}"
                          if brian2 is not None and encoding == "poisson" else f"{'-':>11}{'-':>14}")
                    print(f"{name:<24}{encoding:>9}{batch:>6}{sops:>13,.0f}{'torch ' + device:>12}"
                          f"{1e3 * t_torch / n:>11.2f}{n / t_torch:>11.1f}{sops * n / t_torch:>11.2e}"
                          f"{1e3 * t_event / n:>10.2f}{t_torch / t_event:>13.2f}{b2}", flush=True)


def crossover(models: dict, data, args, sizes: dict) -> None:
    steps, threads = args.steps, args.threads
    print("\nwhere each engine is the right choice: ms per sample against the input rate (Poisson), one core")
    print(f"{'model':<24}{'batch':>6}{'max_rate Hz':>12}{'spikes/neuron/step':>20}{'event ms':>10}{'torch ms':>10}"
          f"{'faster':>8}")
    for name, model in models.items():
        for batch in (64, 256):
            n = sizes[batch]
            for rate in sizes["rates"]:
                enc = encode(model, data.x_test[:n], steps=steps, seed=0, max_rate=rate)
                t_event, result = run(model, enc, "event", batch, threads)
                t_torch, _ = run(model, enc, "torch", batch, threads)
                density = sum(c.sum() for c in result.spike_counts.values()) / (n * steps * model.n_neurons)
                print(f"{name:<24}{batch:>6}{rate:>12}{density:>20.4f}{1e3 * t_event / n:>10.2f}"
                      f"{1e3 * t_torch / n:>10.2f}{'event' if t_event < t_torch else 'torch':>8}", flush=True)


def srm(models: dict, data, args, sizes: dict) -> None:
    """The same networks with seed 003's SRM neurons, on both engines: the event engine's delivery still follows
    the spikes (its SRM neurons, whose kernels decay, are updated every step, as LIF neurons are)."""
    steps, threads, n = args.steps, args.threads, sizes[64]
    print(f"\nSRM neurons (seed 003: tau_s = tau_r = 1 ms, refractory kernel -2 theta e^(-t/tau_r)) on the same "
          f"weights and thresholds, Poisson input, batch 64, {n} samples, {threads} thread(s)")
    print(f"{'model':<24}{'max_rate Hz':>12}{'SOP/sample':>13}{'event ms':>10}{'torch ms':>10}{'torch/event':>13}")
    for name, model in models.items():
        spec = model.populations[0].neuron
        srm_model = model.with_neuron(evsnn.NeuronSpec("srm", threshold=spec.threshold, tau_syn=1e-3, tau_refr=1e-3,
                                                       refractory_amplitude=2.0))
        for rate in sizes["rates"][::2]:
            enc = encode(srm_model, data.x_test[:n], steps=steps, seed=0, max_rate=rate)
            t_event, result = run(srm_model, enc, "event", 64, threads, repeats=sizes["repeats"])
            t_torch, _ = run(srm_model, enc, "torch", 64, threads, repeats=sizes["repeats"])
            print(f"{name:<24}{rate:>12}{result.total_sops().mean():>13,.0f}{1e3 * t_event / n:>10.2f}"
                  f"{1e3 * t_torch / n:>10.2f}{t_torch / t_event:>13.2f}", flush=True)


def spikingjelly(nets: dict, data, args, sizes: dict) -> None:
    n, steps, threads = sizes["sj_samples"], args.steps, args.threads
    print(f"\nSpikingJelly ann2snn vs the torch engine on the same trained ANN: {n} evaluation images x {steps} steps, "
          f"analog input, batch 256, {threads} thread(s); evsnn data-based normalization / SpikingJelly mode Max, "
          "both calibrated on the training images")
    if importlib.util.find_spec("spikingjelly") is None:
        print("  SpikingJelly: not installed")
        return
    spec = importlib.util.spec_from_file_location("spikingjelly_comparison",
                                                  ROOT / "examples" / "spikingjelly_comparison.py")
    sj = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sj)  # its conversion and run, shared with the example
    logging.getLogger("torch._library").setLevel(logging.ERROR)  # "Triton not available", on importing SpikingJelly
    x, y = data.x_test[:n], data.y_test[:n]
    print(f"{'model':<24}{'torch s':>9}{'torch %':>9}{'SJ s':>8}{'SJ %':>7}{'torch/SJ':>10}{'event s':>9}")
    for name, net in nets.items():
        model = evsnn.convert(net, input_shape=(1, 28, 28), norm="data", calibration=data.x_train)
        enc = encode(model, x, steps=steps, encoding="current")
        t_torch, result = run(model, enc, "torch", 256, threads)
        t_event, _ = run(model, enc, "event", 64, threads)
        torch.set_num_threads(threads)
        with contextlib.redirect_stderr(io.StringIO()):  # its calibration's progress bars
            snn = sj.spikingjelly_convert(net, data.x_train, "Max")
        start = time.perf_counter()
        predictions = sj.spikingjelly_predictions(snn, x, steps, 256)
        t_sj = time.perf_counter() - start
        print(f"{name:<24}{t_torch:>9.2f}{100 * result.accuracy(y):>9.2f}{t_sj:>8.2f}"
              f"{100 * np.mean(predictions[-1] == y):>7.2f}{t_torch / t_sj:>10.2f}{t_event:>9.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, rates and epochs (smoke test)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="cores for every engine (default 1)")
    parser.add_argument("--no-brian2", action="store_true", help="skip Brian2")
    args = parser.parse_args()
    if args.threads < 1 or args.steps < 1:
        parser.error("--threads and --steps must be >= 1")
    quick = args.quick
    sizes = {1: 4 if quick else 16, 64: 64 if quick else 256, 256: 256 if quick else 512,
             "brian2": 2 if quick else 4, "repeats": 1 if quick else 2,
             "rates": (10, 100, 1000) if quick else (10, 50, 100, 200, 500, 1000),
             "sj_samples": 256 if quick else 2000}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"evsnn {evsnn.__version__}, torch {torch.__version__}; devices: {', '.join(devices)}; {load_average()}")
    data = mnist_split()
    torch.set_num_threads(max(2, args.threads))  # training may use both cores; the benchmark uses --threads
    print("training the Diehl MLP and CNN with the demo recipe (seed 0) ...", flush=True)
    epochs = {"mlp": 2, "cnn": 1} if quick else {}
    nets = {name: train_diehl(kind, data.x_train, data.y_train, seed=0, epochs=epochs.get(kind))[0]
            for name, kind in MODELS.items()}
    torch.set_num_threads(args.threads)
    models = {name: evsnn.convert(net, input_shape=(1, 28, 28), input_encoding="poisson", norm="data",
                                  calibration=data.x_train) for name, net in nets.items()}
    identity({name: evsnn.convert(net.double(), input_shape=(1, 28, 28), input_encoding="poisson", norm="data",
                                  calibration=data.x_train.astype(np.float64)) for name, net in nets.items()},
             data, args.threads)
    for net in nets.values():
        net.float()
    speed_table(models, data, args, sizes, devices)
    crossover(models, data, args, sizes)
    srm(models, data, args, sizes)
    spikingjelly(nets, data, args, sizes)


if __name__ == "__main__":
    main()
