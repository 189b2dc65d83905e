"""Minimum latency (seed 004's question): CNNs trained directly at 2, 4 and 6 steps against the converted CNN.

    python examples/min_latency.py --threads 1   # about 20 minutes on one thread
    python examples/min_latency.py --quick       # smoke test

Seed 004 (Yao et al.) trains spiking networks directly at 2-6 time steps,
where converted networks need hundreds. On the bundled MNIST this script
takes Diehl et al.'s CNN (12c5-a2-64c5-a2-10, the architecture evsnn's
conversion examples use) three ways:

- **converted**: the ANN trained with ``train_diehl``'s recipe, converted
  with data-based normalization (IF neurons, reset by subtraction),
  evaluated at 8 to 100 steps;
- **direct**: the same architecture, torch's default initialisation, IF
  neurons (threshold 1, reset by subtraction), trained by BPTT with the
  arctan surrogate at T = 2, 4 and 6 steps (``evsnn.training.train_snn``:
  analog input every step, the 8,000 training images, 6 epochs, AdamW 5e-3);
- **condensed**: seed 004's dilated windows (``evsnn.training.CondensedNetwork``):
  the first convolution on the four 21x21 windows of the image with shared
  weights, recomposed by the weighted condense and the region threshold
  (the seed's Th_R = 0.1), then a2-64c5-a2-10; same neurons, surrogate and
  schedule, at T = 2, 4, 6; and once at T = 4 with Th_R = 1, where every
  median spike stays a graded event.

Every model runs on the 2,000 evaluation images with analog input: accuracy,
SOPs, input MACs (the first layer's product of the analog image, at every
step) and graded MACs per image (a graded event through a synapse: a
multiply-accumulate), and energy per inference from evsnn's report
(cmos45-fp32 preset: 0.9 pJ per SOP, 4.6 pJ per MAC). The converted and
direct models run on the event engine (``evsnn.energy_report``); each
direct-trained model is checked in float64 against the torch engine
(event = torch, spike for spike). The condensed networks run as themselves
(``CondensedNetwork.energy_report``); with Th_R = 0.1 each is exported to
the IR (``to_model``) and that model checked the same way.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import evsnn
from evsnn.energy import energy_report
from evsnn.io.datasets import mnist_split
from evsnn.training import diehl_cnn, train_condensed, train_diehl, train_snn


def measure(model: evsnn.SpikingModel, x: np.ndarray, y: np.ndarray, steps: int) -> dict:
    result = evsnn.simulate(model, x, steps=steps, encoding="current")
    return summary(energy_report(result, model), result.accuracy(y))


def summary(report, accuracy: float) -> dict:
    return {"accuracy": accuracy, "sops": float(report.ops_per_sample("sop").mean()),
            "macs": float(report.ops_per_sample("input_mac").mean()),
            "graded": float(report.ops_per_sample("graded_mac").mean()),
            "energy_pj": float(report.energy_per_sample().mean())}


def row(name: str, steps: int, m: dict, extra: str = "") -> str:
    return (f"{name:<32}{steps:>6}{100 * m['accuracy']:>11.2f}{m['sops']:>13,.0f}{m['macs']:>12,.0f}"
            f"{m['graded']:>12,.0f}{m['energy_pj'] / 1e6:>12.3f}  {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 500 images, 1 epoch, T = 2 only")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = mnist_split()
    n_train, n_eval, epochs = (500, 200, 1) if args.quick else (len(data.x_train), len(data.x_test), 6)
    latencies, conversion_steps = ((2,), (8, 32)) if args.quick else ((2, 4, 6), (8, 16, 32, 64, 100))
    x, y = data.x_train[:n_train], data.y_train[:n_train]
    x_eval, y_eval = data.x_test[:n_eval], data.y_test[:n_eval]
    print(f"Diehl CNN 12c5-a2-64c5-a2-10 on the bundled MNIST: {n_train} training images, {n_eval} evaluation "
          f"images, event engine, analog input; energy: cmos45-fp32 preset")
    print(f"{'model':<32}{'steps':>6}{'accuracy %':>11}{'SOP/image':>13}{'MAC/image':>12}{'graded MAC':>12}"
          f"{'energy µJ':>12}")

    start = time.perf_counter()
    ann, _ = train_diehl("cnn", x, y, seed=0, epochs=1 if args.quick else None)
    converted = evsnn.convert(ann, input_shape=(1, 28, 28), norm="data", calibration=x[:1000],
                              input_encoding="current")
    print(f"(ANN trained in {time.perf_counter() - start:.0f} s)")
    for steps in conversion_steps:
        print(row("converted (data-based)", steps, measure(converted, x_eval, y_eval, steps)), flush=True)

    architecture = evsnn.convert(diehl_cnn(dropout=0.0, seed=0), input_shape=(1, 28, 28), norm="none",
                                 input_encoding="current").with_neuron(evsnn.NeuronSpec("if"))
    for steps in latencies:
        start = time.perf_counter()
        trained, losses = train_snn(architecture, x, y, steps=steps, spike_fn="arctan", encoding="current",
                                    epochs=epochs, batch_size=32, lr=5e-3, seed=0, progress=True)
        seconds = time.perf_counter() - start
        same = evsnn.validate(trained, x_eval[:4], engines=("event", "torch"), steps=steps, encoding="current",
                              dtype="float64").identical
        print(row(f"direct (BPTT, T = {steps})", steps, measure(trained, x_eval, y_eval, steps),
                  f"trained in {seconds:.0f} s, loss {losses[-1]:.3f}, event = torch: {same}"), flush=True)

    for steps, th_r in [(t, 0.1) for t in latencies] + [(latencies[len(latencies) // 2], 1.0)]:
        start = time.perf_counter()
        net, losses = train_condensed(x, y, steps=steps, region_threshold=th_r, epochs=epochs, batch_size=32,
                                      lr=5e-3, seed=0, progress=True)
        seconds = time.perf_counter() - start
        report = net.energy_report(x_eval, y_eval)
        if th_r < 0.25:
            same = evsnn.validate(net.to_model(), x_eval[:4], engines=("event", "torch"), steps=steps,
                                  encoding="current", dtype="float64").identical
            export = f"exported, event = torch: {same}"
        else:
            export = "not exported (graded events)"
        print(row(f"condensed (Th_R = {th_r:g})", steps, summary(report, float(report.accuracy_curve[-1])),
                  f"trained in {seconds:.0f} s, loss {losses[-1]:.3f}, {export}"), flush=True)


if __name__ == "__main__":
    main()
