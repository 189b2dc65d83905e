"""Speed and memory of the event engine against a dense torch loop, numpy/scipy, Brian2 and SpikingJelly, in one run.

Run from the repository root (after installing evsnn):

    python benchmarks/event_engine.py            # trains the two models first (seeded, a few minutes)
    python benchmarks/event_engine.py --quick    # fewer samples and epochs, for a smoke test
    python benchmarks/event_engine.py --only mlp --batch 64 --samples 128   # a cheap partial run

Every engine and baseline runs on ``--threads`` cores (default one: BLAS,
torch and evsnn limited alike), on the same encoded input; the script checks
in float64 that the event engine, the dense torch loop and the numpy/scipy
loop compute the same spikes before it reports a ratio (in float32 they sum
in different orders, so a few spikes differ: the Δ spikes column). Models: the
demo's Diehl MLP (784-1200-1200-10) and the Diehl CNN (12c5-a2-64c5-a2-10),
both trained with the demo recipe (``train_diehl``, seed 0) on the bundled
training split, each converted without normalization (thresholds 1, "none")
and with data-based normalization calibrated on the training split ("data",
as the demo converts), run with Poisson and analog ("current") input.

Printed: SOP/s of the event engine and wall time per sample at batch 1 and
64; the dense torch loop's and the numpy/scipy loop's times on the same input
and their ratios to the event engine; Brian2's time per sample (numpy target,
samples one by one on one network built once, so the same at any batch size;
unnormalized models, Poisson input, the first few samples) and the event
engine's speed-up over it, with Brian2's per-sample time against its bare
``Network.run`` time; wall time against input rate and the fit of time per
sample-step = a + b * SOPs per sample-step (b: ns per SOP; a: the fixed cost),
beside the time of a sample-step with no input spikes (the fixed cost measured
directly: the fit's intercept also holds costs that grow with spikes but not
in proportion to SOPs, such as the first reads of weight rows from memory);
the conv kernel scatter against the unrolled CSR; the engine's memory against
the model's weight bytes; 1 vs 2 threads (where ``simulate`` takes
``threads``; numpy's BLAS pool is sized by ``--threads`` at import, so what
scales there is evsnn's own threads and torch's pool; 2 threads also with
the event engine's ``rows_apart=False``, which steps every batch); SpikingJelly's
converted model of the same trained ANN (where SpikingJelly is installed: run
the script in that environment with ``PYTHONPATH=<checkout>``); and, last,
issue 14's targets next to the measured values (a table to read, not a
pass/fail check). The load average is printed at the start and the end: on a
shared machine, compare numbers only from quiet runs.
"""

from __future__ import annotations

import os
import sys


def _threads_from_argv(argv: list[str]) -> int:
    """The ``--threads`` value, read before numpy is imported (its BLAS pool size is fixed at import)."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv) and argv[i + 1].isdigit():
            return max(1, int(argv[i + 1]))
        if arg.startswith("--threads=") and arg.split("=", 1)[1].isdigit():
            return max(1, int(arg.split("=", 1)[1]))
    return 1


for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(_threads_from_argv(sys.argv))  # BLAS pools for numpy; must precede the numpy import

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import inspect  # noqa: E402
import io  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import evsnn  # noqa: E402
from evsnn.encoding import encode  # noqa: E402
from evsnn.engines.event import EventEngine  # noqa: E402
from evsnn.errors import EvsnnError  # noqa: E402
from evsnn.io.datasets import mnist_split  # noqa: E402
from evsnn.model import INPUT  # noqa: E402
from evsnn.ops import Conv2d, Dense  # noqa: E402
from evsnn.settings import RunSettings  # noqa: E402
from evsnn.training import accuracy, train_diehl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MLP, CNN = "MLP 784-1200-1200-10", "CNN 12c5-a2-64c5-a2-10"
KINDS = {MLP: "mlp", CNN: "cnn"}
NORMS = ("none", "data")
ENCODINGS = ("poisson", "current")
#: simulate() takes threads=N (issue 14); older engines run on one core.
THREADS_SUPPORTED = "threads" in {f.name for f in dataclasses.fields(RunSettings)}
#: The event engine's rows_apart option (a batch's rows run apart on several threads); older engines always step.
ROWS_APART = "rows_apart" in inspect.signature(EventEngine).parameters


# ---------------------------------------------------------------------------------------------------- baselines

def check_baseline_model(model: evsnn.SpikingModel) -> None:
    """The baselines implement IF neurons, subtract reset, delay-0 dense/conv2d projections: refuse anything else."""
    for pr in model.projections:
        if pr.delay != 0 or not isinstance(pr.op, (Dense, Conv2d)):
            raise ValueError(f"the baselines handle delay-0 dense/conv2d projections only, not {pr.name!r}")


def dense_weights(model: evsnn.SpikingModel, dtype: np.dtype) -> dict[str, torch.Tensor]:
    """Each projection's weight as a torch tensor (Dense: (n_out, n_in); Conv2d: the kernel)."""
    check_baseline_model(model)
    return {pr.name: torch.from_numpy(np.array(pr.op.weight, dtype=dtype)) for pr in model.projections}


def torch_product(pr: evsnn.Projection, w: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """The current ``pr`` carries from the (batch, n_in) activity ``src``: a matmul or torch's convolution."""
    if isinstance(pr.op, Conv2d):
        out = F.conv2d(src.reshape(src.shape[0], *pr.op.input_shape), w, stride=pr.op.stride, padding=pr.op.padding)
        return out.reshape(src.shape[0], -1)
    return src @ w.T


def dense_torch_run(model: evsnn.SpikingModel, weights: dict, enc, lo: int, hi: int) -> dict[str, np.ndarray]:
    """A plain dense timestep loop in torch (IF, subtract reset, delay 0), the baseline; spike counts per step."""
    batch, steps = hi - lo, enc.steps
    dtype = next(iter(weights.values())).dtype
    held = {}  # analog input: its current into each population, the same every step
    with torch.no_grad():
        if enc.is_spiking:
            trains = torch.from_numpy(enc.spikes(lo, hi).toarray()).to(dtype).reshape(steps, batch, -1)
        else:
            x = torch.from_numpy(enc.current(lo, hi)).to(dtype)
            for pr in model.projections:
                if pr.source == INPUT:
                    held[pr.target] = held.get(pr.target, 0) + torch_product(pr, weights[pr.name], x)
        v = {p.name: torch.zeros(batch, p.size, dtype=dtype) for p in model.populations}
        counts = {p.name: np.zeros((batch, steps), dtype=np.int64) for p in model.populations}
        for t in range(steps):
            spikes = {INPUT: trains[t]} if enc.is_spiking else {}
            for p in model.populations:
                current = torch.zeros(batch, p.size, dtype=dtype)
                for pr in model.projections_into(p.name):
                    if pr.source in spikes:
                        current += torch_product(pr, weights[pr.name], spikes[pr.source])
                if p.name in held:
                    current += held[p.name]
                v[p.name] += current
                s = v[p.name] >= p.neuron.threshold
                v[p.name] -= s * p.neuron.threshold
                spikes[p.name] = s.to(dtype)
                counts[p.name][:, t] = s.sum(1).numpy()
    return counts


def scipy_weights(model: evsnn.SpikingModel, dtype: np.dtype) -> dict[str, np.ndarray]:
    """Each projection's ``W.T`` as a dense C-contiguous (n_in, n_out) array; a convolution unrolled."""
    check_baseline_model(model)
    return {pr.name: np.ascontiguousarray((pr.op.weight if isinstance(pr.op, Dense) else pr.op.to_csr().toarray()).T,
                                          dtype=dtype)
            for pr in model.projections}


def scipy_run(model: evsnn.SpikingModel, weights: dict, enc, lo: int, hi: int) -> dict[str, np.ndarray]:
    """The plain numpy/scipy loop of issue 14: per step and population ``v += S @ W.T``, ``S`` the CSR spike rows.

    scipy's compiled CSR x dense kernel adds one row of ``W.T`` per spike;
    finding the spikes (``csr_array(v >= threshold)``) and the Python loop
    around it are the rest. IF, subtract reset, delay 0; spike counts per step.
    """
    batch, steps = hi - lo, enc.steps
    dtype = next(iter(weights.values())).dtype
    held = {}  # analog input: its current into each population, the same every step
    if enc.is_spiking:
        trains = sp.csr_array(enc.spikes(lo, hi), dtype=dtype)
    else:
        x = enc.current(lo, hi).astype(dtype)
        for pr in model.projections:
            if pr.source == INPUT:
                held[pr.target] = held.get(pr.target, 0) + x @ weights[pr.name]
    v = {p.name: np.zeros((batch, p.size), dtype=dtype) for p in model.populations}
    counts = {p.name: np.zeros((batch, steps), dtype=np.int64) for p in model.populations}
    for t in range(steps):
        spikes = {INPUT: trains[t * batch:(t + 1) * batch]} if enc.is_spiking else {}
        for p in model.populations:
            current = np.zeros((batch, p.size), dtype=dtype)
            for pr in model.projections_into(p.name):
                if pr.source in spikes:
                    current += spikes[pr.source] @ weights[pr.name]
            if p.name in held:
                current += held[p.name]
            u = v[p.name]
            u += current
            fired = u >= p.neuron.threshold
            np.subtract(u, p.neuron.threshold, out=u, where=fired)
            counts[p.name][:, t] = fired.sum(1)
            spikes[p.name] = sp.csr_array(fired.astype(dtype))
    return counts


BASELINES = {"dense": (dense_weights, dense_torch_run), "scipy": (scipy_weights, scipy_run)}


# ---------------------------------------------------------------------------------------------------- timing

def event_settings(batch: int, threads: int | None, options: dict | None = None) -> dict:
    """simulate()'s settings; ``threads`` only where this evsnn takes it."""
    settings = {"batch_size": batch}
    if threads is not None and THREADS_SUPPORTED:
        settings["threads"] = threads
    if options:
        settings["options"] = options
    return settings


def time_event(model, enc, batch: int, repeats: int, threads: int | None = None,
               options: dict | None = None) -> tuple[float, evsnn.Result]:
    best, result = np.inf, None
    for _ in range(repeats):
        result = evsnn.simulate(model, enc, **event_settings(batch, threads, options))
        best = min(best, result.wall_time)
    return best, result


def time_baseline(kind: str, model, enc, batch: int, repeats: int,
                  dtype: np.dtype = np.float32) -> tuple[float, dict[str, np.ndarray]]:
    """Best wall time of a baseline over all samples of ``enc`` (weights prepared once, untimed) and its counts."""
    prepare, run = BASELINES[kind]
    weights = prepare(model, dtype)
    best, counts = np.inf, None
    for _ in range(repeats):
        start, parts = time.perf_counter(), []
        for lo in range(0, enc.n_samples, batch):
            parts.append(run(model, weights, enc, lo, min(lo + batch, enc.n_samples)))  # input reading timed too
        best = min(best, time.perf_counter() - start)
        counts = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return best, counts


def time_brian2(model, enc, n: int) -> tuple[float, dict]:
    """Seconds per sample of the Brian2 engine on samples [0, n), and its timing record (build excluded)."""
    from evsnn.engines.brian2 import Brian2Engine

    engine = Brian2Engine(model, dtype="float32")
    engine.prepare(enc)  # the build, paid once per model
    engine.run_batch(enc, 0, n, frozenset())
    return engine.timing["sample_s"] / n, engine.timing


def spike_rate(result: evsnn.Result, model: evsnn.SpikingModel, steps: int) -> float:
    """Spikes per neuron per step over every population."""
    return sum(c.sum() for c in result.spike_counts.values()) / (result.n_samples * steps * model.n_neurons)


def fit_cost(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``seconds = a + b * SOPs`` over (SOPs, seconds) per sample-step: (b in ns/SOP, a in µs)."""
    sops, seconds = np.array(points).T
    b, a = np.polyfit(sops, seconds, 1)
    return 1e9 * b, 1e6 * a


def load_average() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} cores)"


# ---------------------------------------------------------------------------------------------------- memory

def engine_bytes(engine: EventEngine, batch: int) -> int:
    """Bytes of the engine's precomputed connectivity plus its state for ``batch`` samples."""
    total = 0
    for d in engine.deliveries.values():
        for value in vars(d).values():
            if isinstance(value, np.ndarray):
                total += value.nbytes
            elif hasattr(value, "data") and hasattr(value, "indptr"):  # scipy CSR
                total += value.data.nbytes + value.indices.nbytes + value.indptr.nbytes
    for p in engine.model.populations:
        total += p.size * batch * engine.dtype.itemsize * (1 + engine.ring_length)  # v + ring buffer
    return total


def weight_bytes(model: evsnn.SpikingModel) -> int:
    return sum(pr.op.weights.nbytes for pr in model.projections)


# ---------------------------------------------------------------------------------------------------- sections

def convert(net, norm: str, calibration: np.ndarray) -> evsnn.SpikingModel:
    """The benchmark's conversion: Poisson input by default, data-based normalization on ``calibration``."""
    return evsnn.convert(net, input_shape=(1, 28, 28), input_encoding="poisson", norm=norm,
                         calibration=calibration if norm != "none" else None)


def check_identity(nets: dict, data, steps: int = 30, n: int = 8) -> None:
    """Float64: the event engine, the dense torch loop and the numpy/scipy loop, spike for spike."""
    print(f"\nsame semantics: float64, {n} samples x {steps} steps, every population's spike counts per step; "
          "event engine vs the dense torch loop and vs the numpy/scipy loop:")
    torch.set_default_dtype(torch.float64)
    for name, net in nets.items():
        net.double()
        for norm in NORMS:
            model64 = convert(net, norm, data.x_train.astype(np.float64))
            for encoding in ENCODINGS:
                enc = encode(model64, data.x_test[:n], steps=steps, seed=0, encoding=encoding)
                result = evsnn.simulate(model64, enc, batch_size=n, dtype="float64")
                same = {}
                for kind, (prepare, run) in BASELINES.items():
                    counts = run(model64, prepare(model64, np.float64), enc, 0, n)
                    same[kind] = all(np.array_equal(result.spike_counts[k], counts[k]) for k in counts)
                print(f"  {name:<24} norm {norm:<5} {encoding:<8} identical: dense {same['dense']}, "
                      f"numpy/scipy {same['scipy']}")
        net.float()
    torch.set_default_dtype(torch.float32)


def main_table(models, data, args, sizes, threads) -> dict:
    """Event engine vs the dense torch loop, the numpy/scipy loop and Brian2, every model, input and batch."""
    steps, repeats = args.steps, sizes["repeats"]
    print(f"\n{threads} thread(s); Poisson input (max_rate 1000 Hz, dt 1 ms) and analog input, {steps} steps, "
          f"float32, best of {repeats}; evaluation images; {load_average()} at start")
    print(f"{'model':<24}{'norm':>6}{'input':>9}{'batch':>6}{'SOP/sample':>13}{'spikes/neuron/step':>20}"
          f"{'event ms/sample':>17}{'event SOP/s':>13}{'dense ms/sample':>17}{'dense/event':>13}"
          f"{'scipy ms/sample':>17}{'scipy/event':>13}{'Δ spikes':>11}{'brian2 ms/sample':>18}{'brian2/event':>14}")
    rows, brian2 = {}, {}
    for (name, norm), model in models.items():
        if norm == "none" and not args.no_brian2:
            n_b = sizes["brian2"]
            brian2[name] = time_brian2(model, encode(model, data.x_test[:n_b], steps=steps, seed=0), n_b)
        for encoding in ENCODINGS:
            for batch in args.batch:
                n = sizes[batch]
                enc = encode(model, data.x_test[:n], steps=steps, seed=0, encoding=encoding)
                t_event, result = time_event(model, enc, batch, repeats, threads)
                t_dense, counts = time_baseline("dense", model, enc, batch, repeats)
                t_scipy, _ = time_baseline("scipy", model, enc, batch, repeats)
                total_event = sum(int(c.sum()) for c in result.spike_counts.values())
                total_dense = sum(int(c.sum()) for c in counts.values())
                diff = abs(total_event - total_dense) / max(total_dense, 1)
                sops = result.total_sops().mean()
                rows[name, norm, encoding, batch] = {"sop_s": sops * n / t_event, "event": t_event,
                                                     "dense": t_dense, "scipy": t_scipy}
                b2 = f"{'-':>18}{'-':>14}" if name not in brian2 or encoding != "poisson" else (
                    f"{1e3 * brian2[name][0]:>18.1f}{brian2[name][0] / (t_event / n):>14.1f}")
                rate = spike_rate(result, model, steps)
                print(f"{name:<24}{norm:>6}{encoding:>9}{batch:>6}{sops:>13,.0f}{rate:>20.4f}"
                      f"{1e3 * t_event / n:>17.2f}{sops * n / t_event:>13.2e}{1e3 * t_dense / n:>17.2f}"
                      f"{t_dense / t_event:>13.2f}{1e3 * t_scipy / n:>17.2f}{t_scipy / t_event:>13.2f}"
                      f"{100 * diff:>10.3f}%{b2}", flush=True)

    if brian2:
        print(f"\nBrian2 (numpy target, float32, one network built once per model, samples one by one; first "
              f"{sizes['brian2']} samples): time per sample against the bare Network.run() time")
    for name, (t_brian2, timing) in brian2.items():
        run = timing["run_s"] / timing["samples"]
        print(f"  {name:<24} {1e3 * t_brian2:8.1f} ms/sample, run() {1e3 * run:8.1f} ms/sample: "
              f"+{100 * (t_brian2 / run - 1):.1f}% (restore, input, spike read-out); build {timing['build_s']:.2f} s")
    return rows


def rate_sweep(models, data, args, sizes, threads) -> dict:
    """Wall time against input rate, and the fit time per sample-step = a + b * SOPs per sample-step."""
    steps, repeats = args.steps, sizes["repeats"]
    print("\nwall time against input rate (Poisson): event time should follow SOPs, the dense loop stays flat")
    print(f"{'model':<24}{'norm':>6}{'batch':>6}{'max_rate Hz':>12}{'spikes/neuron/step':>20}{'SOP/sample':>13}"
          f"{'event ms/sample':>17}{'ns per SOP':>12}{'dense ms/sample':>17}{'dense/event':>13}")
    points, ratios, idle = {}, {}, {}
    scatter_only = {"event": {"dense_above": 1.0}}  # the conv kernel scatter at every density (no dense fallback)
    for (name, norm), model in models.items():
        for batch in args.batch:
            n = sizes[batch]
            # the fixed cost measured directly: the same run with (almost) no input spikes, so no SOPs
            t_idle, _ = time_event(model, encode(model, data.x_test[:n], steps=steps, seed=0, max_rate=1e-9), batch,
                                   repeats, threads)
            idle[name, norm, batch] = t_idle / (n * steps)
            for max_rate in sizes["rates"]:
                enc = encode(model, data.x_test[:n], steps=steps, seed=0, max_rate=max_rate)
                t_event, result = time_event(model, enc, batch, repeats, threads)
                t_dense, _ = time_baseline("dense", model, enc, batch, repeats)
                sops, rate = result.total_sops().mean(), spike_rate(result, model, steps)
                points.setdefault((name, norm, batch, "default"), []).append((sops / steps, t_event / (n * steps)))
                ratios.setdefault((name, batch), []).append((rate, t_dense / t_event))
                print(f"{name:<24}{norm:>6}{batch:>6}{max_rate:>12}{rate:>20.4f}{sops:>13,.0f}"
                      f"{1e3 * t_event / n:>17.2f}{1e9 * t_event / (sops * n):>12.2f}{1e3 * t_dense / n:>17.2f}"
                      f"{t_dense / t_event:>13.2f}", flush=True)
                if name == CNN:
                    try:
                        t_scatter, _ = time_event(model, enc, batch, repeats, threads, scatter_only)
                    except (EvsnnError, TypeError) as err:
                        print(f"  (scatter-only timing not possible: {err})")
                        continue
                    points.setdefault((name, norm, batch, "scatter only"), []).append(
                        (sops / steps, t_scatter / (n * steps)))

    print("\nfit over the rates above: wall time per sample-step = a + b * SOPs per sample-step "
          "(b: the cost of a SOP; a: the fixed cost of a sample-step)")
    print("and the time of a sample-step with no input spikes (max_rate 1e-9 Hz: the Poisson draws, the set-up, "
          "no SOPs)")
    print(f"{'model':<24}{'norm':>6}{'batch':>6}{'delivery':>14}{'b ns/SOP':>10}{'a µs/sample-step':>18}{'rates':>7}"
          f"{'no input µs/sample-step':>25}")
    fits = {}
    for (name, norm, batch, delivery), pts in points.items():
        b, a = fit_cost(pts)
        fits[name, norm, batch, delivery] = (b, a)
        print(f"{name:<24}{norm:>6}{batch:>6}{delivery:>14}{b:>10.3f}{a:>18.2f}{len(pts):>7}"
              f"{1e6 * idle[name, norm, batch]:>25.2f}")
    return {"fits": fits, "ratios": ratios, "idle": idle}


def conv_delivery(cnn: evsnn.SpikingModel, data, args, sizes, threads) -> None:
    print("\nconv delivery: kernel scatter (the engine's) vs the unrolled CSR of the same convolutions")
    unrolled = cnn.replace(projections=[
        pr if not isinstance(pr.op, Conv2d) else evsnn.Projection(pr.name, pr.source, pr.target,
                                                                 evsnn.Sparse.from_matrix(pr.op.to_csr()), pr.delay)
        for pr in cnn.projections])
    for batch in args.batch:
        n = sizes[batch]
        enc = encode(cnn, data.x_test[:n], steps=args.steps, seed=0, max_rate=100)
        t_scatter, r_scatter = time_event(cnn, enc, batch, sizes["repeats"], threads)
        t_csr, r_csr = time_event(unrolled, enc, batch, sizes["repeats"], threads)
        same = np.array_equal(r_scatter.total_sops(), r_csr.total_sops())
        print(f"  batch {batch:>2}, max_rate 100 Hz: scatter {1e3 * t_scatter / n:.2f} ms/sample, unrolled CSR "
              f"{1e3 * t_csr / n:.2f} ms/sample (CSR/scatter {t_csr / t_scatter:.2f}); "
              f"connectivity {engine_bytes(EventEngine(cnn), 0) / 1e6:.2f} MB vs "
              f"{engine_bytes(EventEngine(unrolled), 0) / 1e6:.2f} MB; same SOP counts: {same}")


def memory(models) -> None:
    print("\nmemory: engine state + precomputed connectivity vs the model's weight bytes")
    for (name, norm), model in models.items():
        if norm != "none":
            continue
        engine = EventEngine(model)
        wb = weight_bytes(model)
        for batch in (1, 64):
            eb = engine_bytes(engine, batch)
            print(f"  {name:<24} batch {batch:>2}: {eb / 1e6:8.2f} MB vs weights {wb / 1e6:.2f} MB "
                  f"= {eb / wb:.2f}x")


def thread_scaling(models, data, args, sizes) -> dict:
    """1 vs 2 threads at batch 64, results compared array for array; 2 threads also always stepping (the event
    engine's ``rows_apart=False``), where this evsnn has the option."""
    print("\nthreads: 1 vs 2 at batch 64 (simulate(..., threads=N)); identical: spike counts and SOPs equal"
          + ("; 'stepped': rows_apart=False (threads meet at every population and route of every step)"
             if ROWS_APART else ""))
    if not THREADS_SUPPORTED:
        print("  threads: not supported by this evsnn")
        return {}
    n, speedups = sizes[64], {}
    print(f"{'model':<24}{'norm':>6}{'input':>9}{'1 thread ms/sample':>20}{'2 threads ms/sample':>21}"
          f"{'speed-up':>10}{'identical':>11}" + (f"{'2 stepped ms/sample':>21}{'speed-up':>10}" if ROWS_APART else ""))
    for (name, norm), model in models.items():
        encoding = "poisson" if norm == "none" else "current"
        enc = encode(model, data.x_test[:n], steps=args.steps, seed=0, encoding=encoding)
        t1, r1 = time_event(model, enc, 64, sizes["repeats"], threads=1)
        t2, r2 = time_event(model, enc, 64, sizes["repeats"], threads=2)
        def same_as(r: evsnn.Result) -> bool:
            return all(np.array_equal(getattr(r1, f)[k], getattr(r, f)[k])
                       for f in ("spike_counts", "sops") for k in getattr(r1, f))

        same = same_as(r2)
        speedups[name, norm] = t1 / t2
        stepped = ""
        if ROWS_APART:
            t3, r3 = time_event(model, enc, 64, sizes["repeats"], threads=2, options={"event": {"rows_apart": False}})
            same &= same_as(r3)
            stepped = f"{1e3 * t3 / n:>21.2f}{t1 / t3:>10.2f}"
        print(f"{name:<24}{norm:>6}{encoding:>9}{1e3 * t1 / n:>20.2f}{1e3 * t2 / n:>21.2f}{t1 / t2:>10.2f}"
              f"{str(same):>11}{stepped}", flush=True)
    return speedups


def spikingjelly_comparison(nets: dict, data, args, sizes, threads) -> dict:
    """evsnn's event engine vs SpikingJelly's converter on the same trained ANN, analog input, same thread count."""
    n, steps = sizes["sj_samples"], sizes["sj_steps"]
    torch.set_num_threads(threads)  # SpikingJelly's thread count, whatever the runs before left
    print(f"\nSpikingJelly ann2snn vs evsnn on the same trained ANN: {n} evaluation images x {steps} steps, analog "
          f"input, {threads} thread(s), both calibrated on the {len(data.x_train)} training images; evsnn at "
          f"batch 64 (event engine, its SOPs counted), SpikingJelly at batch 64 and 250 (dense torch)")
    if importlib.util.find_spec("spikingjelly") is None:
        print("  SpikingJelly: not installed")
        return {}
    spec = importlib.util.spec_from_file_location("spikingjelly_comparison",
                                                  ROOT / "examples" / "spikingjelly_comparison.py")
    sj = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sj)  # its conversion and run, shared with the example
    x, y = data.x_test[:n], data.y_test[:n]
    print(f"{'model':<24}{'evsnn norm / SJ mode':>22}{'ANN %':>7}{'evsnn s':>9}{'evsnn %':>9}{'SOP/sample':>13}"
          f"{'SJ@64 s':>9}{'SJ@250 s':>10}{'SJ %':>7}{'SJ@64/evsnn':>13}{'SJ@250/evsnn':>14}")
    ratios = {}
    for name, net in nets.items():
        for norm, mode in (("data", "Max"), ("percentile", "99.9%")):
            model = evsnn.convert(net, input_shape=(1, 28, 28), norm=norm, calibration=data.x_train)
            result = evsnn.simulate(model, x, steps=steps, encoding="current", **event_settings(64, threads))
            with contextlib.redirect_stderr(io.StringIO()):  # its calibration's progress bars
                snn = sj.spikingjelly_convert(net, data.x_train, mode)
            t_sj = {}
            for batch in (64, 250):
                start = time.perf_counter()
                predictions = sj.spikingjelly_predictions(snn, x, steps, batch)
                t_sj[batch] = time.perf_counter() - start
            ratios[name, norm] = t_sj[64] / result.wall_time
            print(f"{name:<24}{f'{norm} / {mode}':>22}{100 * accuracy(net, x, y):>7.2f}{result.wall_time:>9.2f}"
                  f"{100 * result.accuracy(y):>9.2f}{result.total_sops().mean():>13,.0f}{t_sj[64]:>9.2f}"
                  f"{t_sj[250]:>10.2f}{100 * np.mean(predictions[-1] == y):>7.2f}"
                  f"{t_sj[64] / result.wall_time:>13.2f}{t_sj[250] / result.wall_time:>14.2f}", flush=True)
    return ratios


def targets(rows: dict, sweep: dict, speedups: dict, sj: dict) -> None:
    """Issue 14's targets next to what this run measured (for reading; nothing is asserted)."""
    print(f"\nissue 14's targets (one core unless said) and this run's values; {load_average()} at the end")
    print(f"{'target':<74}{'target':>10}{'measured':>10}")

    def line(what: str, target: str, value: float | None, fmt: str = ".2f") -> None:
        print(f"{what:<74}{target:>10}{'not run' if value is None else format(value, fmt):>10}")

    for (name, norm, encoding, batch), r in rows.items():
        if name == MLP:
            line(f"MLP SOP/s, norm {norm}, {encoding} input, batch {batch}", "≥ 5e9" if batch == 1 else "≥ 1e10",
                 r["sop_s"], ".2e")
    for (name, norm, batch, delivery), (b, a) in sweep.get("fits", {}).items():
        if name == MLP and delivery == "default":
            line(f"MLP fixed cost, µs per sample-step, norm {norm}, batch {batch} (fit, Poisson)", "≤ 5", a)
            line(f"MLP fixed cost, µs per sample-step, norm {norm}, batch {batch} (no input spikes)", "≤ 5",
                 1e6 * sweep["idle"][name, norm, batch])
    for (name, norm, batch, delivery), (b, a) in sweep.get("fits", {}).items():
        if name == CNN:
            line(f"CNN ns per SOP, norm {norm}, batch {batch}, {delivery} delivery (fit, Poisson)", "≤ 0.3", b, ".3f")
    for (name, batch), pts in sweep.get("ratios", {}).items():
        if name == CNN:
            low = [ratio for rate, ratio in pts if rate <= 0.10]
            line(f"CNN dense loop / event, slowest sweep point ≤ 10% spiking, batch {batch}", "≥ 1",
                 min(low) if low else None)
    for (name, norm, encoding, batch), r in rows.items():
        if (name, norm, encoding, batch) == (MLP, "data", "current", 64):
            line("normalized MLP, current input, batch 64: numpy/scipy loop time / event time", "≥ 3",
                 r["scipy"] / r["event"])
    for (name, norm), ratio in sj.items():
        line(f"{name.split()[0]} norm {norm}: SpikingJelly@64 time / evsnn time (same images x steps)", "≥ 1", ratio)
    for (name, norm), ratio in speedups.items():
        line(f"{name.split()[0]} norm {norm}, batch 64: 1-thread time / 2-thread time", "≥ 1.8", ratio)
    line("Dask, 2 local workers vs 1, on a sweep (not measured by this script)", "≥ 1.7", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, rates and epochs (smoke test)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--only", choices=sorted(KINDS.values()), help="one model only")
    parser.add_argument("--batch", type=int, choices=(1, 64), action="append",
                        help="batch sizes to run (repeatable; default 1 and 64)")
    parser.add_argument("--samples", type=int, help="samples per measurement (batch-1 rows take at most 20; "
                        "default 256 at batch 64, 2,000 for SpikingJelly; --quick: 64)")
    parser.add_argument("--threads", type=int, default=1, help="cores for evsnn, torch and BLAS alike (default 1)")
    parser.add_argument("--no-brian2", action="store_true", help="skip Brian2")
    args = parser.parse_args()
    if args.threads < 1 or (args.samples is not None and args.samples < 1):
        parser.error("--threads and --samples must be >= 1")
    args.batch = sorted(set(args.batch or (1, 64)))
    n64 = args.samples or (64 if args.quick else 256)
    sizes = {1: min(n64, 4 if args.quick else 20), 64: n64, "brian2": 2 if args.quick else 8,
             "repeats": 1 if args.quick else 2,
             "rates": (10, 100, 1000) if args.quick else (10, 50, 100, 200, 500, 1000),
             "sj_samples": args.samples or (64 if args.quick else 2000),
             "sj_steps": min(args.steps, 20) if args.quick else args.steps}
    threads = args.threads
    print(f"evsnn {evsnn.__version__}; threads: {'supported' if THREADS_SUPPORTED else 'not supported by this evsnn'}"
          f"; {load_average()}")

    data = mnist_split()
    torch.set_num_threads(max(2, threads))  # training may use both cores; the benchmark itself uses --threads
    kinds = {name: kind for name, kind in KINDS.items() if args.only in (None, kind)}
    print(f"training {', '.join(kinds)} with the demo recipe (seed 0) ...", flush=True)
    epochs = {"mlp": 2, "cnn": 1} if args.quick else {}
    nets = {name: train_diehl(kind, data.x_train, data.y_train, seed=0, epochs=epochs.get(kind))[0]
            for name, kind in kinds.items()}
    torch.set_num_threads(threads)
    models = {(name, norm): convert(net, norm, data.x_train) for name, net in nets.items() for norm in NORMS}

    check_identity(nets, data)
    rows = main_table(models, data, args, sizes, threads)
    sweep = rate_sweep(models, data, args, sizes, threads)
    if CNN in nets:
        conv_delivery(models[CNN, "none"], data, args, sizes, threads)
    memory(models)
    speedups = thread_scaling(models, data, args, sizes) if 64 in args.batch else {}
    sj = spikingjelly_comparison(nets, data, args, sizes, threads)
    targets(rows, sweep, speedups, sj)


if __name__ == "__main__":
    main()
