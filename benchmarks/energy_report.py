"""Energy reports: SOPs against a brute-force recount from rasters, and the report's cost against the simulation's.

Run from the repository root (after installing evsnn with its plot extra):

    python benchmarks/energy_report.py                 # trains both models (seeded, ~1 min), then measures
    python benchmarks/energy_report.py --samples 500   # a smaller overhead run on slow or shared machines

Models: the demo's Diehl MLP (784-1200-1200-10, the demo's recipe) and the
Diehl CNN (12c5-a2-64c5-a2-10, 2 epochs), trained on the bundled split and
converted with data-based normalization, as the demo does.

1. Cross-check, per model and encoding (analog current and Poisson spikes):
   record every population's spikes, recount the SOPs of every projection,
   sample and step as recorded spikes x the per-neuron fan-out of the unrolled
   CSR (``evsnn.energy.sops_from_rasters``, independent of the engine's
   counters), and compare with the report; analog-input MACs likewise from the
   input pixels. Then the same for a Brian2 run (``engine="brian2"``, float64)
   of the first ``--brian2-samples`` images, against the float64 event engine
   on the same encoded input: the report of each, and Brian2's own rasters
   recounted.
2. Overhead, on the CNN: one simulation of ``--samples`` evaluation images x
   ``--steps`` steps (event engine, the model's analog input, batch 64), then
   the report of that run, timed in the same process: counting and ANN MACs
   (from the torch network, and from the IR), text + JSON + CSV, and the PNG
   figure, each as a fraction of the simulation's wall time.

Everything runs on one core (BLAS and torch limited to one thread) after training.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core for numpy's BLAS; must precede the numpy import

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import evsnn  # noqa: E402
from evsnn.training import train_diehl  # noqa: E402
from evsnn.encoding import encode  # noqa: E402
from evsnn.energy import energy_report, sops_from_rasters  # noqa: E402
from evsnn.io.datasets import mnist_split  # noqa: E402
from evsnn.training import diehl_cnn, train_classifier  # noqa: E402


def sop_totals(result, model) -> np.ndarray:
    """Per-sample SOPs summed over projections, as a report of ``result`` states them."""
    return sum(s.per_sample for s in energy_report(result, model).snn if s.op == "sop")


def brian2_check(name: str, model, x, steps: int, encoding: str) -> str:
    """Report SOPs of a float64 Brian2 run vs the float64 event engine and Brian2's raster recount."""
    enc = encode(model, x, steps=steps, encoding=encoding, seed=0)
    event = evsnn.simulate(model, enc, dtype="float64")
    brian = evsnn.simulate(model, enc, engine="brian2", dtype="float64", record="all")
    events = enc.spike_events(0, len(x)) if encoding == "poisson" else None
    brute = sum(b.sum(1) for b in sops_from_rasters(model, brian.rasters, n_samples=len(x), steps=steps,
                                                    input_events=events).values())
    sops, event_sops = sop_totals(brian, model), sop_totals(event, model)
    same = np.array_equal(sops, event_sops) and np.array_equal(sops, brute)
    return (f"  {name:<24}{encoding:<9}{len(x):>8}{steps:>6}{sops.mean():>16,.0f}{brute.mean():>16,.0f}"
            f"{'identical' if same else 'DIFFERENT':>11}   event engine float64: {event_sops.mean():,.0f}")


def cross_check(name: str, net, model, x, steps: int) -> None:
    for encoding in ("current", "poisson"):
        enc = encode(model, x, steps=steps, encoding=encoding, seed=0)
        result = evsnn.simulate(model, enc, record="all")
        report = energy_report(result, model, x=x, ann=net)
        events = enc.spike_events(0, len(x)) if encoding == "poisson" else None
        brute = sops_from_rasters(model, result.rasters, n_samples=len(x), steps=steps, input_events=events)
        reported = {s.item: s for s in report.snn if s.op == "sop"}
        same = set(brute) == set(reported) and all(
            np.array_equal(brute[k], result.sops[k]) and np.array_equal(brute[k].sum(1), reported[k].per_sample)
            for k in brute)
        sops_report = sum(s.per_sample for s in reported.values()).mean()
        sops_brute = sum(b.sum(1) for b in brute.values()).mean()
        line = (f"  {name:<24}{encoding:<9}{len(x):>8}{steps:>6}{sops_report:>16,.0f}{sops_brute:>16,.0f}"
                f"{'identical' if same else 'DIFFERENT':>11}")
        if encoding == "current":
            first = model.projections[0]
            csr = first.op.to_csr()
            fan = np.bincount(csr.indices[csr.data != 0], minlength=first.op.n_in)
            macs = (x.reshape(len(x), -1) != 0) @ fan * steps
            (series,) = [s for s in report.snn if s.op == "input_mac"]
            line += f"   input MACs {series.per_sample.mean():,.0f}, recount identical: " \
                    f"{np.array_equal(series.per_sample, macs)}"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="evaluation images of the overhead run")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--check-samples", type=int, default=100, help="images of the raster cross-check")
    parser.add_argument("--check-steps", type=int, default=100)
    parser.add_argument("--brian2-samples", type=int, default=10, help="images of the Brian2 cross-check")
    args = parser.parse_args()

    data = mnist_split()
    torch.set_num_threads(2)
    print("training the models (seeded) ...", flush=True)
    mlp_net, _ = train_diehl("mlp", data.x_train, data.y_train, seed=0)
    cnn_net = diehl_cnn(seed=0)
    train_classifier(cnn_net, data.x_train, data.y_train, epochs=2, lr=3e-3, seed=0, progress=False)
    torch.set_num_threads(1)
    nets = {"MLP 784-1200-1200-10": mlp_net, "CNN 12c5-a2-64c5-a2-10": cnn_net}
    models = {name: evsnn.convert(net, input_shape=(1, 28, 28), norm="data", calibration=data.x_train)
              for name, net in nets.items()}

    print(f"\n1. SOPs of the report vs a recount from recorded rasters x fan-out (per projection, sample and step)")
    print(f"  {'model':<24}{'encoding':<9}{'samples':>8}{'steps':>6}{'SOPs/sample':>16}{'recount':>16}"
          f"{'':>11}")
    x_check = data.x_test[:args.check_samples]
    for name, net in nets.items():
        cross_check(name, net, models[name], x_check, args.check_steps)
    print(f"\n   SOPs of the report on a Brian2 run (float64, numpy target) vs its own rasters and the event engine")
    print(f"  {'model':<24}{'encoding':<9}{'samples':>8}{'steps':>6}{'SOPs/sample':>16}{'recount':>16}")
    for name in nets:
        for encoding in ("current", "poisson"):
            print(brian2_check(name, models[name], x_check[:args.brian2_samples], args.check_steps, encoding),
                  flush=True)

    name = "CNN 12c5-a2-64c5-a2-10"
    model, net = models[name], nets[name]
    x, y = data.x_test[:args.samples], data.y_test[:args.samples]
    print(f"\n2. report overhead: {name}, {len(x)} samples x {args.steps} steps, {model.input.encoding} input, "
          "event engine, batch 64, one core", flush=True)
    start = time.perf_counter()
    result = evsnn.simulate(model, x, steps=args.steps, batch_size=64)
    t_sim = time.perf_counter() - start

    start = time.perf_counter()
    report = energy_report(result, model, x=x, labels=y, ann=net, source="CNN")
    t_torch = time.perf_counter() - start
    start = time.perf_counter()
    energy_report(result, model, x=x, labels=y, source="CNN")
    t_ir = time.perf_counter() - start
    start = time.perf_counter()
    text, js, table = report.format(), report.to_json(), report.to_csv()
    t_out = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report.plot(Path(tmp) / "report.png")
        t_plot = time.perf_counter() - start

    def row(what: str, seconds: float) -> str:
        return f"  {what:<58}{seconds:>9.2f} s{100 * seconds / t_sim:>9.2f}%"

    print(f"  {'':<58}{'time':>11}{'of sim.':>10}")
    print(row("simulation (evsnn.simulate, set-up included)", t_sim))
    print(row("report: counts + ANN MACs from the torch network", t_torch))
    print(row("report: counts + ANN MACs from the IR (no torch network)", t_ir))
    print(row(f"text + JSON + CSV ({len(text) + len(js) + len(table):,} characters)", t_out))
    print(row("PNG figure (matplotlib)", t_plot))
    print(row("report (torch ANN) + text + JSON + CSV", t_torch + t_out))
    print(row("report (torch ANN) + text + JSON + CSV + PNG", t_torch + t_out + t_plot))
    print(f"\n{report.brief()}")


if __name__ == "__main__":
    main()
