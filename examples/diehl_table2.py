"""Diehl et al. (2015) Table 2 on the bundled MNIST split: MLP and CNN, every normalization, accuracy vs time.

    python examples/diehl_table2.py [--samples 2000] [--steps 500] [--select 300]

Trains the Diehl MLP (784-1200-1200-10) and CNN (12c5-a2-64c5-a2-10), bias-free
with ReLU, dropout and average pooling, on training images 0-6,999 (seed 0, the
demo recipe). Then converts each one five ways and runs the event engine on the
first ``--samples`` evaluation images, with Poisson input (as in Diehl et al.)
and with analog current input (as in SpikingJelly):

- baseline, θ = 1: weights copied, threshold 1;
- baseline, best θ: weights copied, the threshold chosen from a grid by accuracy
  on ``--select`` held-out training images (7,000 onwards) at the last step;
- model-based, data-based (calibration: training images 0-999) and
  percentile (99.9) normalization, threshold 1.

It prints the ANN accuracy, the SNN accuracy after 10 ... ``--steps`` steps, and
the step from which on each SNN stays within 1 percentage point of its ANN,
which is how the seed's claim (data-based normalization converges fastest) is
tested here. Evaluation images are never used to choose anything.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import evsnn
from evsnn.encoding import encode
from evsnn.io.datasets import mnist_split
from evsnn.training import accuracy, train_diehl

THRESHOLDS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
CHECKPOINTS = (10, 25, 50, 100, 200, 300, 500)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="evaluation images (default 2000: all)")
    parser.add_argument("--steps", type=int, default=500, help="simulated steps (default 500)")
    parser.add_argument("--select", type=int, default=300, help="held-out training images for choosing θ")
    parser.add_argument("--nets", default="mlp,cnn", help="which networks (default mlp,cnn)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 epoch, 50 images, 30 steps")
    args = parser.parse_args()
    epochs = 1 if args.quick else None
    samples, steps, select = (50, 30, 50) if args.quick else (args.samples, args.steps, args.select)

    data = mnist_split()
    x_train, y_train = data.x_train[:7000], data.y_train[:7000]
    x_sel, y_sel = data.x_train[7000:7000 + select], data.y_train[7000:7000 + select]
    x_eval, y_eval = data.x_test[:samples], data.y_test[:samples]
    calibration = data.x_train[:1000]
    marks = [s for s in CHECKPOINTS if s < steps] + [steps]
    print(f"Diehl et al. (2015) Table 2 on bundled MNIST: train 0-6999, θ chosen on {select} held-out training "
          f"images, evaluated on {samples} evaluation images, event engine, float32, seed 0")
    for kind in args.nets.split(","):
        start = time.perf_counter()
        net, _ = train_diehl(kind, x_train, y_train, seed=0, epochs=epochs)
        ann = accuracy(net, x_eval, y_eval)
        print(f"\n{kind.upper()}: ANN accuracy {100 * ann:.2f}% (trained in {time.perf_counter() - start:.0f} s)")
        for encoding in ("poisson", "current"):
            models = {
                "baseline θ=1": evsnn.convert(net, input_shape=(1, 28, 28), input_encoding=encoding),
                "model-based": evsnn.convert(net, input_shape=(1, 28, 28), norm="model", input_encoding=encoding),
                "data-based": evsnn.convert(net, input_shape=(1, 28, 28), norm="data", calibration=calibration,
                                            input_encoding=encoding),
                "percentile 99.9": evsnn.convert(net, input_shape=(1, 28, 28), norm="percentile",
                                                 calibration=calibration, input_encoding=encoding),
            }
            theta, sel_acc = best_threshold(models["baseline θ=1"], x_sel, y_sel, steps)
            baseline = models.pop("baseline θ=1")
            models = {"baseline θ=1": baseline, f"baseline θ={theta:g}": with_threshold(baseline, theta), **models}
            encoded = encode(models["data-based"], x_eval, steps=steps, seed=0)
            print(f"\n  {encoding} input (best baseline θ from {THRESHOLDS}: {theta:g}, "
                  f"{100 * sel_acc:.1f}% on the held-out images)")
            print("  " + f"{'conversion':<18}" + "".join(f"{s:>7}" for s in marks)
                  + f"{'within 1 pp':>13}{'SOPs/sample':>14}")
            for name, model in models.items():
                result = evsnn.simulate(model, encoded)
                curve = result.accuracy_over_time(y_eval)
                below = np.flatnonzero(curve < ann - 0.01)  # from the step after the last of these on, within 1 pp
                when = ("from 1" if not below.size else "never" if below[-1] == steps - 1
                        else f"from {below[-1] + 2}")
                print("  " + f"{name:<18}" + "".join(f"{100 * curve[s - 1]:>7.2f}" for s in marks)
                      + f"{when:>13}{result.total_sops().mean():>14,.0f}")


def with_threshold(model: evsnn.SpikingModel, theta: float) -> evsnn.SpikingModel:
    """``model`` with every population's threshold set to ``theta``."""
    neuron = evsnn.NeuronSpec(threshold=theta)
    return model.with_neuron(neuron)


def best_threshold(model: evsnn.SpikingModel, x: np.ndarray, y: np.ndarray, steps: int) -> tuple[float, float]:
    """The threshold of :data:`THRESHOLDS` with the best accuracy on ``(x, y)`` after ``steps`` (first on ties)."""
    encoded = encode(model, x, steps=steps, seed=1)
    scores = [evsnn.simulate(with_threshold(model, t), encoded).accuracy(y) for t in THRESHOLDS]
    best = int(np.argmax(scores))
    return THRESHOLDS[best], scores[best]


if __name__ == "__main__":
    main()
