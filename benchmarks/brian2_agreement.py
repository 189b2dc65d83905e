"""Event engine against the Brian2 reference on the demo MLP and the Diehl CNN, spike for spike, in one run.

Run from the repository root (after installing evsnn):

    python benchmarks/brian2_agreement.py                 # trains both models first (seeded, a few minutes)
    python benchmarks/brian2_agreement.py --cache models  # keeps the trained models in ./models for re-runs
    python benchmarks/brian2_agreement.py --quick         # 5 samples x 30 steps, a smoke test

Models: the demo's MLP (784-1200-1200-10, the demo recipe, seed 0) and the
Diehl CNN (12c5-a2-64c5-a2-10, one epoch, seed 0), both converted with
data-based normalization on the 8,000 training images. Each runs in four
neuron variants: IF and LIF (beta 0.95), soft (subtract) and hard (to 0)
reset. Input: the models' analog current, and Poisson spikes (1000 Hz) for
IF/soft; the first 50 evaluation images, 100 steps. Brian2 runs once per
variant in float64 (numpy target); the event engine runs in float64 and in
float32 on the identical encoded input and is compared with that one
reference run (``evsnn.validation.compare``). IF/soft is also compared under
Brian2's default schedule (``propagation="next_step"``, one step per layer),
against the event engine on the equivalent model (every spike-carried delay
plus one).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import evsnn
from evsnn.encoding import encode
from evsnn.io.datasets import mnist_split
from evsnn.training import diehl_cnn, train_classifier, train_diehl
from evsnn.validation import compare, next_step_model


def trained_models(data, cache: Path | None) -> dict[str, evsnn.SpikingModel]:
    paths = {"MLP": cache / "mlp.h5", "CNN": cache / "cnn.h5"} if cache else {}
    if cache and all(p.exists() for p in paths.values()):
        return {name: evsnn.load(p) for name, p in paths.items()}
    torch.set_num_threads(2)
    mlp, _ = train_diehl("mlp", data.x_train, data.y_train, seed=0)
    cnn = diehl_cnn(seed=0)
    train_classifier(cnn, data.x_train, data.y_train, epochs=1, lr=3e-3, seed=0, progress=False)
    models = {name: evsnn.convert(net, input_shape=(1, 28, 28), norm="data", calibration=data.x_train)
              for name, net in (("MLP", mlp), ("CNN", cnn))}
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        for name, model in models.items():
            evsnn.save(model, paths[name])
    return models


def variant(model: evsnn.SpikingModel, kind: str, reset: str) -> evsnn.SpikingModel:
    neuron = evsnn.NeuronSpec(kind, reset=reset, beta=0.95 if kind == "lif" else 1.0)
    return model.replace(populations=[evsnn.Population(p.name, p.shape, neuron, p.bias) for p in model.populations])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 samples x 30 steps (smoke test)")
    parser.add_argument("--cache", type=Path, default=None, help="directory to keep/reuse the trained models")
    args = parser.parse_args()
    n, steps = (5, 30) if args.quick else (50, 100)
    data = mnist_split()
    models = trained_models(data, args.cache)
    x = data.x_test[:n]

    print(f"event engine vs Brian2 (numpy target, float64), first {n} evaluation images, {steps} steps; "
          "agreement = identical (sample, step, neuron) spikes / spikes in either\n")
    head = (f"{'model':<6}{'neuron':<13}{'input':<9}{'schedule':<11}{'event dtype':<12}{'brian2 spikes':>15}"
            f"{'identical':>12}{'agreement':>11}{'first div.':>12}{'predictions':>13}{'SOPs equal':>12}"
            f"{'brian2 s/sample':>17}")
    print(head)
    for name, base in models.items():
        for kind, reset in (("if", "subtract"), ("if", "zero"), ("lif", "subtract"), ("lif", "zero")):
            model = variant(base, kind, reset)
            runs = [("current", "same_step")]
            if (kind, reset) == ("if", "subtract"):
                runs += [("poisson", "same_step"), ("current", "next_step")]
            for encoding, schedule in runs:
                enc = encode(model, x, steps=steps, encoding=encoding, seed=0)
                start = time.perf_counter()
                ref = evsnn.simulate(model, enc, engine="brian2", dtype="float64", record="all",
                                     options={"brian2": {"propagation": schedule}})
                per_sample = (time.perf_counter() - start) / n
                event_model = model if schedule == "same_step" else next_step_model(model, spiking_input=enc.is_spiking)
                for dtype in ("float64", "float32"):
                    cand = evsnn.simulate(event_model, enc, dtype=dtype, record="all",
                                          options={"event": {"dense_above": 1.0}})
                    c = compare(cand, ref, model, propagation=schedule)
                    spikes = sum(p.spikes_b for p in c.populations)
                    same = sum(p.identical for p in c.populations)
                    first = "-" if c.first_divergence is None else str(c.first_divergence)
                    sops = np.mean([s.equal_fraction for s in c.sops])
                    print(f"{name:<6}{kind + '/' + reset:<13}{encoding:<9}{schedule:<11}{dtype:<12}{spikes:>15,}"
                          f"{same:>12,}{100 * c.spike_agreement:>10.4f}%{first:>12}"
                          f"{int(np.sum(c.predictions_a == c.predictions_b)):>8}/{n:<4}{100 * sops:>11.3f}%"
                          f"{per_sample:>17.2f}")


if __name__ == "__main__":
    main()
