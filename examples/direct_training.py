"""Spiking networks trained directly with surrogate gradients, then run on the engines: IF, LIF and SRM neurons.

    python examples/direct_training.py            # about a minute
    python examples/direct_training.py --quick    # smoke test

A 784-100-10 network (torch's default initialisation, seed 0, a bias on the
hidden layer) is made spiking with each neuron kind (IF; LIF with beta 0.9;
SRM with seed 003's kernels, tau_s = tau_r = 1 ms and the refractory kernel
-2 theta e^(-t/tau_r)) and trained by backpropagation through time on the
torch engine's step function (``evsnn.training.train_snn``: analog input,
10 steps, the first 4,000 training images, 5 epochs, AdamW at 5e-3), with
each surrogate gradient (SLAYER's exponential with seed 003's alpha = beta =
10, the fast sigmoid, the arctan). Every trained model is then run by the
event engine on the 2,000 evaluation images (accuracy, SOPs per image) and
checked in float64 against the torch engine and Brian2 on 4 images.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import evsnn
from evsnn.io.datasets import mnist_split
from evsnn.training import train_snn

NEURONS = {
    "IF": evsnn.NeuronSpec("if"),
    "LIF beta 0.9": evsnn.NeuronSpec("lif", beta=0.9),
    "SRM (seed 003)": evsnn.NeuronSpec("srm", tau_syn=1e-3, tau_refr=1e-3, refractory_amplitude=2.0),
}
SURROGATES = ("slayer", "fast_sigmoid", "arctan")


def untrained(neuron: evsnn.NeuronSpec) -> evsnn.SpikingModel:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ann = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10, bias=False))
    return evsnn.convert(ann, input_shape=(1, 28, 28), norm="none").with_neuron(neuron)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 500 images, 1 epoch, one surrogate")
    args = parser.parse_args()
    n_train, epochs, steps = (500, 1, 10) if args.quick else (4000, 5, 10)
    surrogates = SURROGATES[-1:] if args.quick else SURROGATES
    torch.set_num_threads(1)
    data = mnist_split()
    x, y = data.x_train[:n_train], data.y_train[:n_train]
    x_eval, y_eval = data.x_test, data.y_test
    print(f"784-100-10, trained on {n_train} training images for {epochs} epochs, {steps} steps, analog input; "
          f"evaluated by the event engine on {len(x_eval)} evaluation images")
    print(f"{'neuron':<16}{'surrogate':<14}{'loss first':>11}{'loss last':>10}{'accuracy %':>11}{'SOP/image':>11}"
          f"{'train s':>9}{'float64 event = torch = brian2':>32}")
    for name, neuron in NEURONS.items():
        for spike_fn in surrogates:
            start = time.perf_counter()
            model, losses = train_snn(untrained(neuron), x, y, steps=steps, spike_fn=spike_fn, epochs=epochs,
                                      lr=5e-3, seed=0)
            seconds = time.perf_counter() - start
            result = evsnn.simulate(model, x_eval, steps=steps, encoding="current")
            same = all(evsnn.validate(model, x_eval[:4], engines=("event", other), steps=steps,
                                      encoding="current").identical for other in ("torch", "brian2"))
            print(f"{name:<16}{spike_fn:<14}{losses[0]:>11.3f}{losses[-1]:>10.3f}"
                  f"{100 * result.accuracy(y_eval):>11.2f}{result.total_sops().mean():>11,.0f}{seconds:>9.2f}"
                  f"{str(same):>32}", flush=True)
    before = evsnn.simulate(untrained(NEURONS["IF"]), x_eval, steps=steps, encoding="current").accuracy(y_eval)
    print(f"(the untrained IF network: {100 * before:.2f}%)")


if __name__ == "__main__":
    main()
