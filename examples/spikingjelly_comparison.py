"""evsnn vs SpikingJelly's ann2snn converter on the same trained Diehl CNN, analog input, 2,000 evaluation images.

    pip install -c constraints.txt --no-deps spikingjelly==2.0.0 && pip install -c constraints.txt loguru requests
    python examples/spikingjelly_comparison.py [--samples 2000]

(SpikingJelly declares torchvision/torchaudio/tensorboard dependencies that
would pull another torch; its ann2snn converter needs only loguru and
requests, hence ``--no-deps``.) Without SpikingJelly the script says so and
exits with status 1: nothing was compared.

The CNN is trained on training images 0-6,999 (seed 0, the demo recipe).
SpikingJelly converts it with its rate-coding recipe (ReLU -> scale, IF neuron
with threshold 1 and soft reset, scale back; calibration on training images
0-999, modes "Max" and "99.9%"), and is run as its documentation does: the
analog image every step, the network's analog output summed over steps. evsnn
converts it with data-based and percentile (99.9) normalization on the same
calibration images and runs the event engine with analog ("current") input,
reading out output spikes (``count``, every layer spiking) or the output
membrane (``membrane``, like SpikingJelly's summed output).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

import evsnn
from evsnn.encoding import encode
from evsnn.io.datasets import mnist_split
from evsnn.training import accuracy, train_diehl

STEPS = (10, 25, 50, 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 epoch, 50 images")
    args = parser.parse_args()
    try:
        import spikingjelly  # noqa: F401
    except ImportError as err:
        sys.exit(f"spikingjelly_comparison.py: error: SpikingJelly cannot be imported ({err}); install it with the "
                 "two commands at the top of this file. Nothing was compared.")
    samples, epochs = (50, 1) if args.quick else (args.samples, None)
    data = mnist_split()
    net, _ = train_diehl("cnn", data.x_train[:7000], data.y_train[:7000], seed=0, epochs=epochs)
    x, y = data.x_test[:samples], data.y_test[:samples]
    calibration = data.x_train[:1000]
    print(f"Diehl CNN, ANN accuracy {100 * accuracy(net, x, y):.2f}% on {samples} evaluation images; "
          "analog input; accuracy (%) after each number of steps")
    print(f"{'converter':<38}" + "".join(f"{s:>7}" for s in STEPS))
    for mode in ("Max", "99.9%"):
        curve = (spikingjelly_predictions(spikingjelly_convert(net, calibration, mode), x, max(STEPS)) == y).mean(1)
        print(f"{f'SpikingJelly 2.0.0 ann2snn, mode={mode}':<38}" + "".join(f"{100 * curve[s - 1]:>7.2f}" for s in STEPS))
    for norm in ("data", "percentile"):
        for readout in ("count", "membrane"):
            model = evsnn.convert(net, input_shape=(1, 28, 28), norm=norm, calibration=calibration, readout=readout)
            curve = evsnn.simulate(model, encode(model, x, steps=max(STEPS))).accuracy_over_time(y)
            print(f"{f'evsnn {norm}, readout={readout}':<38}" + "".join(f"{100 * curve[s - 1]:>7.2f}" for s in STEPS))


def spikingjelly_convert(net, calibration, mode: str):
    """SpikingJelly's ann2snn conversion of ``net``: rate-coding recipe, calibrated on ``calibration`` by 100s."""
    import copy

    from spikingjelly.activation_based.ann2snn import Converter
    from spikingjelly.activation_based.ann2snn.recipes import RateCodingRecipe

    batches = [torch.as_tensor(calibration[i:i + 100]) for i in range(0, len(calibration), 100)]
    return Converter(RateCodingRecipe(batches, mode=mode), device="cpu").convert(copy.deepcopy(net).eval())


def spikingjelly_predictions(snn, x, steps: int, batch: int = 250) -> np.ndarray:
    """Class predicted after each step (argmax of the output summed so far), shape (steps, N).

    Run as SpikingJelly's documentation does: the analog image every step, the
    network reset between batches.
    """
    from spikingjelly.activation_based import functional

    predictions = np.zeros((steps, len(x)), dtype=np.int64)
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.as_tensor(x[i:i + batch])
            functional.reset_net(snn)
            out = 0
            for t in range(steps):
                out = out + snn(xb)
                predictions[t, i:i + batch] = out.argmax(1).numpy()
    return predictions


if __name__ == "__main__":
    main()
