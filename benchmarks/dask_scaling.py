"""Scaling on Dask: a simulate and a sweep of the demo-size MLP, serial and on 1 and 2 local workers, in one run.

Run from the repository root (after installing evsnn with its dask extra):

    python benchmarks/dask_scaling.py              # trains the MLP for 2 epochs first (seeded)
    python benchmarks/dask_scaling.py --quick      # fewer samples and runs, for a smoke test

Every process computes on one thread (BLAS, OpenMP and torch limited to 1),
so one worker is one core; the workers are ``evsnn.cluster.local_cluster``'s
(what ``--scheduler local:N`` starts). Model: the Diehl MLP (784-1200-1200-10) of
``evsnn demo``, trained on the bundled split, data-normalized on 1000
training images. ``simulate``: the first ``--samples`` evaluation images,
Poisson input, 100 steps, batch 64. ``sweep``: leak (1, 0.9) x subtract x
(baseline, L4) with 3 thresholds and 2 alphas, chosen on ``--select``
training images and evaluated on as many evaluation images, 60 steps. Each
Dask run is checked identical to the serial one (the Result's arrays; the
sweep's table) before its time is printed.

Printed: seconds per configuration (best of ``--repeat``) with the cores it
obtained (CPU seconds of the computing processes over wall seconds; the
client's own work is not counted), the speed-up of 2 workers over 1 (the ratio
asked for) and over the serial run, the machine's cores and the load average
before and after (on a shared machine the ratio is only as good as the cores
that were free).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core per process for numpy's BLAS; must precede the numpy import

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import evsnn  # noqa: E402
from evsnn.cluster import local_cluster  # noqa: E402
from evsnn.equality import same  # noqa: E402
from evsnn.io.datasets import mnist_split  # noqa: E402
from evsnn.sweep import sweep  # noqa: E402
from evsnn.training import train_diehl  # noqa: E402

GRID = dict(leaks=(1.0, 0.9), resets=("subtract",), methods=("baseline", "l4"), thresholds=(0.8, 1.0, 1.2),
            alphas=(1.0, 2.0))


def _warm() -> None:
    """Import what the tasks use, so that the first task on a worker does not time the imports."""
    import evsnn.converters.l4  # noqa: F401
    import evsnn.engines.event  # noqa: F401
    import evsnn.sweep  # noqa: F401

    torch.set_num_threads(1)


def best_of(repeat: int, fn, cpu=time.process_time):
    """``((wall seconds, CPU seconds) of the fastest of ``repeat`` calls, what the last call returned)``.

    ``cpu()`` reads the CPU seconds of the processes that compute (this one, or the workers): CPU over wall is
    how many cores the run got, which on a shared machine is what limits the ratio.
    """
    times, out = [], None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), cpu()
        out = fn()
        times.append((time.perf_counter() - start, cpu() - start_cpu))
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and runs, for a smoke test")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the MLP (default: 2)")
    parser.add_argument("--samples", type=int, default=2000, help="evaluation images simulated (default: 2000)")
    parser.add_argument("--select", type=int, default=128, help="selection (and evaluation) images of the sweep")
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration, the fastest is kept")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.samples, args.select, args.repeat = 1, 128, 32, 1
    torch.set_num_threads(1)
    from distributed import Client

    load_before = os.getloadavg()
    data = mnist_split()
    net, _ = train_diehl("mlp", data.x_train, data.y_train, seed=0, epochs=args.epochs)
    model = evsnn.convert(net, input_shape=(1, 28, 28), norm="data", calibration=data.x_train[:1000])
    x = data.x_test[:args.samples]
    run = dict(steps=100, encoding="poisson", batch_size=64, threads=1)  # one core: the serial run too
    sweep_args = dict(x_select=data.x_train[7000:7000 + args.select], y_select=data.y_train[7000:7000 + args.select],
                      calibration=data.x_train[:1000], x_eval=data.x_test[:args.select],
                      y_eval=data.y_test[:args.select], steps=60, encoding="poisson", threads=1, **GRID)
    untimed = lambda r: dataclasses.replace(r, wall_time=0.0, setup_time=0.0)  # noqa: E731

    with tempfile.TemporaryDirectory() as tmp:
        logs = iter(Path(tmp) / f"log{i}.jsonl" for i in range(1000))  # a new log per sweep: nothing resumed
        seconds = {}
        seconds["simulate", "serial"], reference = best_of(args.repeat, lambda: evsnn.simulate(model, x, **run))
        seconds["sweep", "serial"], table = best_of(args.repeat, lambda: sweep(model, log=next(logs), **sweep_args))
        for workers in (1, 2):
            with local_cluster(workers) as cluster, Client(cluster) as client:
                client.wait_for_workers(workers)
                client.run(_warm)
                cpu = lambda: sum(client.run(time.process_time).values())  # noqa: E731 - the workers' CPU seconds
                seconds["simulate", workers], result = best_of(
                    args.repeat, lambda: evsnn.simulate(model, x, client=client, **run), cpu)
                assert same(untimed(result), untimed(reference)), "simulate on Dask differs from the serial run"
                seconds["sweep", workers], swept = best_of(
                    args.repeat, lambda: sweep(model, log=next(logs), client=client, **sweep_args), cpu)
                assert swept.table() == table.table() and swept.runs == table.runs, "the sweeps differ"
    load_after = os.getloadavg()

    runs = len(table.runs)
    print(f"Dask scaling: Diehl MLP 784-1200-1200-10 ({args.epochs} epochs, data-normalized), one thread per process, "
          f"best of {args.repeat}; dask {__import__('dask').__version__}, evsnn {evsnn.__version__}")
    print(f"simulate: {args.samples} samples x {run['steps']} steps, Poisson, batch {run['batch_size']}; "
          f"sweep: {runs} runs of {args.select} samples x 60 steps")
    print("wall seconds (cores obtained: CPU seconds of the computing processes / wall seconds)")
    print(f"{'':<10} {'serial':>14} {'1 worker':>14} {'2 workers':>14} {'2 vs 1 worker':>14} {'2 vs serial':>12}")
    for what in ("simulate", "sweep"):
        (s, s_cpu), (one, one_cpu), (two, two_cpu) = (seconds[what, k] for k in ("serial", 1, 2))
        cells = "".join(f"{w:>8.2f} ({c / w:.2f})" for w, c in ((s, s_cpu), (one, one_cpu), (two, two_cpu)))
        print(f"{what:<10} {cells} {one / two:>13.2f}x {s / two:>11.2f}x")
    print(f"cores: {os.cpu_count()}; load average (1, 5, 15 min) before {', '.join(f'{v:.2f}' for v in load_before)}, "
          f"after {', '.join(f'{v:.2f}' for v in load_after)}")
    print("identical: the Dask Results equal the serial one array for array, the sweeps' tables and runs are equal")


if __name__ == "__main__":
    main()
