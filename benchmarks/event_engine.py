"""Speed and memory of the event engine against a plain dense torch timestep loop and Brian2, in one run.

Run from the repository root (after installing evsnn):

    python benchmarks/event_engine.py            # trains the two models first (seeded, ~1 min)
    python benchmarks/event_engine.py --quick    # fewer samples, for a smoke test

Both engines run on ONE core (BLAS and torch limited to one thread), on the
same Poisson spike trains; the script
checks in float64 that they compute the same spikes before it reports a
ratio (in float32 the two sum in different orders, so a few spikes differ:
the Δ spikes column). Models: the demo's Diehl MLP
(784-1200-1200-10) and the Diehl CNN (12c5-a2-64c5-a2-10), trained on the
bundled split and converted without normalization (thresholds 1).

Printed: SOP/s of the event engine and wall time per sample at batch 1 and
64; the dense loop's time at the same batch and the ratio; Brian2's time per
sample (numpy target, samples one by one on one network built once, so the
same at any batch size; measured on the first few samples) and the
event engine's speed-up over it at batch 1 and 64, with Brian2's per-sample
time against its bare ``Network.run`` time; wall time against
input rate (event time should follow SOPs, the dense loop stays flat); the
engine's memory (state + precomputed connectivity) against the model's weight
bytes.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core for numpy's BLAS; must precede the numpy import

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import evsnn  # noqa: E402
from evsnn.training import train_diehl  # noqa: E402
from evsnn.encoding import encode  # noqa: E402
from evsnn.engines.event import EventEngine  # noqa: E402
from evsnn.io.datasets import mnist_split  # noqa: E402
from evsnn.ops import Conv2d, Dense  # noqa: E402
from evsnn.training import diehl_cnn, train_classifier  # noqa: E402


def dense_torch_run(model: evsnn.SpikingModel, spikes_tbn: torch.Tensor) -> dict[str, torch.Tensor]:
    """A plain dense timestep loop (IF, subtract reset, delay 0), the baseline; returns spike counts per step."""
    steps, batch, _ = spikes_tbn.shape
    weights = {}
    for pr in model.projections:
        if pr.delay != 0 or not isinstance(pr.op, (Dense, Conv2d)):
            raise ValueError("the dense baseline handles delay-0 dense/conv2d projections only")
        weights[pr.name] = torch.from_numpy(np.array(pr.op.weight))  # a writable copy
    v = {p.name: torch.zeros(batch, p.size) for p in model.populations}
    counts = {p.name: torch.zeros(batch, steps, dtype=torch.int64) for p in model.populations}
    with torch.no_grad():
        for t in range(steps):
            spikes = {"input": spikes_tbn[t]}
            for p in model.populations:
                current = torch.zeros(batch, p.size)
                for pr in model.projections_into(p.name):
                    src, w = spikes[pr.source], weights[pr.name]
                    if isinstance(pr.op, Conv2d):
                        out = F.conv2d(src.reshape(batch, *pr.op.input_shape), w, stride=pr.op.stride,
                                       padding=pr.op.padding)
                        current += out.reshape(batch, -1)
                    else:
                        current += src @ w.T
                v[p.name] += current
                s = v[p.name] >= p.neuron.threshold
                v[p.name] -= s * p.neuron.threshold
                spikes[p.name] = s.to(current.dtype)
                counts[p.name][:, t] = s.sum(1)
    return counts


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


def time_event(model, enc, batch: int, repeats: int) -> tuple[float, evsnn.Result]:
    best, result = np.inf, None
    for _ in range(repeats):
        result = evsnn.simulate(model, enc, batch_size=batch, threads=1)
        best = min(best, result.wall_time)
    return best, result


def time_dense(model, enc, batch: int, repeats: int) -> tuple[float, dict]:
    best, counts = np.inf, None
    for _ in range(repeats):
        start, parts = time.perf_counter(), []
        for lo in range(0, enc.n_samples, batch):
            hi = min(lo + batch, enc.n_samples)
            s = enc.spikes(lo, hi)  # the same trains the event engine sees (encoding is timed for both)
            dense = torch.from_numpy(s.toarray().astype(np.float32)).reshape(enc.steps, hi - lo, -1)
            parts.append(dense_torch_run(model, dense))
        best = min(best, time.perf_counter() - start)
        counts = {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
    return best, counts


def time_brian2(model, enc, n: int) -> tuple[float, dict]:
    """Seconds per sample of the Brian2 engine on samples [0, n), and its timing record (build excluded)."""
    from evsnn.engines.brian2 import Brian2Engine

    engine = Brian2Engine(model, dtype="float32")
    engine.prepare(enc)  # the build, paid once per model
    engine.run_batch(enc, 0, n, frozenset())
    return engine.timing["sample_s"] / n, engine.timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke test)")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    steps = args.steps
    n1, n64 = (4, 64) if args.quick else (20, 256)
    n_brian2 = 2 if args.quick else 8
    repeats = 1 if args.quick else 2

    data = mnist_split()
    torch.set_num_threads(2)  # training may use both cores; the benchmark itself uses one
    print("training the models (seeded) ...", flush=True)
    mlp_net, _ = train_diehl("mlp", data.x_train, data.y_train, seed=0, epochs=2 if args.quick else None)
    cnn_net = diehl_cnn(seed=0)
    train_classifier(cnn_net, data.x_train, data.y_train, epochs=1, lr=3e-3, progress=False)
    torch.set_num_threads(1)
    model_nets = {"MLP 784-1200-1200-10": mlp_net, "CNN 12c5-a2-64c5-a2-10": cnn_net}
    models = {name: evsnn.convert(net, input_shape=(1, 28, 28), input_encoding="poisson")
              for name, net in model_nets.items()}

    print("\nsame semantics: float64, 8 samples x 30 steps, event engine vs the dense loop, spike for spike:")
    torch.set_default_dtype(torch.float64)
    for name, model in models.items():
        model64 = evsnn.convert(model_nets[name].double(), input_shape=(1, 28, 28), input_encoding="poisson")
        enc = encode(model64, data.x_test[:8], steps=30, seed=0)
        result = evsnn.simulate(model64, enc, batch_size=8, dtype="float64")
        counts = dense_torch_run(model64, torch.from_numpy(enc.spikes(0, 8).toarray()).reshape(30, 8, -1))
        same = all(np.array_equal(result.spike_counts[k], counts[k].numpy()) for k in counts)
        print(f"  {name:<24} identical: {same}")
        model_nets[name].float()
    torch.set_default_dtype(torch.float32)

    print(f"\none core; Poisson input (max_rate 1000 Hz, dt 1 ms), {steps} steps, float32, "
          f"best of {repeats}; evaluation images\n")
    header = (f"{'model':<24}{'batch':>6}{'SOP/sample':>13}{'spikes/neuron/step':>20}{'event ms/sample':>17}"
              f"{'event SOP/s':>13}{'dense ms/sample':>17}{'dense/event':>13}{'Δ spikes':>13}"
              f"{'brian2 ms/sample':>18}{'brian2/event':>14}")
    print(header)
    brian2 = {}
    for name, model in models.items():
        t_brian2, timing = time_brian2(model, encode(model, data.x_test[:n_brian2], steps=steps, seed=0), n_brian2)
        brian2[name] = (t_brian2, timing)
        for batch, n in ((1, n1), (64, n64)):
            enc = encode(model, data.x_test[:n], steps=steps, seed=0)
            t_event, result = time_event(model, enc, batch, repeats)
            t_dense, counts = time_dense(model, enc, batch, repeats)
            total_event = sum(int(c.sum()) for c in result.spike_counts.values())
            total_dense = sum(int(c.sum()) for c in counts.values())
            diff = abs(total_event - total_dense) / max(total_dense, 1)
            sops = result.total_sops().mean()
            rate = sum(c.sum() for c in result.spike_counts.values()) / (n * steps * model.n_neurons)
            print(f"{name:<24}{batch:>6}{sops:>13,.0f}{rate:>20.4f}{1e3 * t_event / n:>17.2f}"
                  f"{sops * n / t_event:>13.2e}{1e3 * t_dense / n:>17.2f}{t_dense / t_event:>13.2f}{100 * diff:>12.3f}%"
                  f"{1e3 * t_brian2:>18.1f}{t_brian2 / (t_event / n):>14.1f}")

    print(f"\nBrian2 (numpy target, float32, one network built once per model, samples one by one; first "
          f"{n_brian2} samples): time per sample against the bare Network.run() time")
    for name, (t_brian2, timing) in brian2.items():
        run = timing["run_s"] / timing["samples"]
        print(f"  {name:<24} {1e3 * t_brian2:8.1f} ms/sample, run() {1e3 * run:8.1f} ms/sample: "
              f"+{100 * (t_brian2 / run - 1):.1f}% (restore, input, spike read-out); build {timing['build_s']:.2f} s")

    print("\nwall time against input rate: event time should follow SOPs, the dense loop stays flat")
    print(f"{'model':<24}{'batch':>6}{'max_rate Hz':>12}{'spikes/neuron/step':>20}{'SOP/sample':>13}"
          f"{'event ms/sample':>17}{'ns per SOP':>12}{'dense ms/sample':>17}{'dense/event':>13}")
    for name, batch, n in (("MLP 784-1200-1200-10", 1, n1), ("MLP 784-1200-1200-10", 64, n64),
                           ("CNN 12c5-a2-64c5-a2-10", 64, n64)):
        model = models[name]
        for max_rate in (50, 100, 200, 500, 1000):
            enc = encode(model, data.x_test[:n], steps=steps, seed=0, max_rate=max_rate)
            t_event, result = time_event(model, enc, batch, repeats)
            t_dense, _ = time_dense(model, enc, batch, repeats)
            sops = result.total_sops().mean()
            rate = sum(c.sum() for c in result.spike_counts.values()) / (n * steps * model.n_neurons)
            print(f"{name:<24}{batch:>6}{max_rate:>12}{rate:>20.4f}{sops:>13,.0f}{1e3 * t_event / n:>17.2f}"
                  f"{1e9 * t_event / (sops * n):>12.2f}{1e3 * t_dense / n:>17.2f}{t_dense / t_event:>13.2f}")

    print("\nconv delivery: kernel scatter (the engine's) vs the unrolled CSR of the same convolutions")
    cnn = models["CNN 12c5-a2-64c5-a2-10"]
    unrolled = cnn.replace(projections=[
        pr if not isinstance(pr.op, Conv2d) else evsnn.Projection(pr.name, pr.source, pr.target,
                                                                 evsnn.Sparse.from_matrix(pr.op.to_csr()), pr.delay)
        for pr in cnn.projections])
    for batch, n in ((1, n1), (64, n64)):
        enc = encode(cnn, data.x_test[:n], steps=steps, seed=0, max_rate=100)
        t_scatter, r_scatter = time_event(cnn, enc, batch, repeats)
        t_csr, r_csr = time_event(unrolled, enc, batch, repeats)
        same = np.array_equal(r_scatter.total_sops(), r_csr.total_sops())
        print(f"  batch {batch:>2}, max_rate 100 Hz: scatter {1e3 * t_scatter / n:.2f} ms/sample, unrolled CSR "
              f"{1e3 * t_csr / n:.2f} ms/sample (CSR/scatter {t_csr / t_scatter:.2f}); "
              f"connectivity {engine_bytes(EventEngine(cnn), 0) / 1e6:.2f} MB vs "
              f"{engine_bytes(EventEngine(unrolled), 0) / 1e6:.2f} MB; same SOP counts: {same}")

    print("\nmemory: engine state + precomputed connectivity vs the model's weight bytes")
    for name, model in models.items():
        engine = EventEngine(model)
        wb = weight_bytes(model)
        for batch in (1, 64):
            eb = engine_bytes(engine, batch)
            print(f"  {name:<24} batch {batch:>2}: {eb / 1e6:8.2f} MB vs weights {wb / 1e6:.2f} MB "
                  f"= {eb / wb:.2f}x")


if __name__ == "__main__":
    main()
