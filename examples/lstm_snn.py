"""Seed 004's spiking LSTM-style layer in an MNIST classifier at T = 2, 4 and 6 steps, and its operation counts
against the seed's eq. 1.

    python examples/lstm_snn.py            # about 1.5 minutes on one thread
    python examples/lstm_snn.py --quick    # smoke test

The classifier (``evsnn.training.SpikingLSTMClassifier``): a dense layer of
128 IF neurons reads the analog image at every step, its spikes drive a
spiking LSTM layer of 128 units (``evsnn.training.SpikingLSTM``, threshold
0.5; equations in docs/training.md), and a linear read-out of the LSTM's
spike counts gives the logits. Trained by BPTT with the arctan surrogate
(``evsnn.training.train_classifier``: AdamW 5e-3, batch 64, random shifts
of up to 1 pixel, 10 epochs) on the 8,000 bundled training images at each
T with seeds 0, 1 and 2 (initial weights, shuffling, shifts); evaluated on
the 2,000 evaluation images in torch, as the layer has no equivalent in
evsnn's IR (the script shows ``evsnn.convert``'s refusal). Each row gives
the mean over the seeds (accuracy also per seed); firing rates are spikes
per neuron per step on the evaluation images, and "LSTM adds" the adds of
weights per evaluation image that the LSTM layer's input and recurrent
spikes need, event-driven (``evsnn.training.lstm_accumulates``), beside
the dense count of its products (T times ``lstm_ops``' MACs).

The operation counts are the LSTM layer's per step and image
(``evsnn.training.lstm_ops``), and seed 004's Ω(LSNN-W) for the same d_x
and d_h beside evsnn's count in the seed's convention (2 operations per
MAC, no bias).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import evsnn
from evsnn.io.datasets import mnist_split
from evsnn.training import SpikingLSTMClassifier, accuracy, lstm_accumulates, lstm_ops, train_classifier

ENCODER, HIDDEN, THRESHOLD = 128, 128, 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 500 images, 1 epoch, T = 2 only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = mnist_split()
    n_train, n_eval, epochs = (500, 200, 1) if args.quick else (len(data.x_train), len(data.x_test), 10)
    latencies, seeds = ((2,), (0,)) if args.quick else ((2, 4, 6), (0, 1, 2))
    x, y = data.x_train[:n_train], data.y_train[:n_train]
    x_eval, y_eval = data.x_test[:n_eval], data.y_test[:n_eval]
    print(f"784-{ENCODER} IF - spiking LSTM {HIDDEN} (threshold {THRESHOLD}) - 10 on the bundled MNIST: {n_train} "
          f"training images ({epochs} epoch{'s' * (epochs > 1)}, AdamW 5e-3, batch 64, shifts of 1 pixel, arctan surrogate), {n_eval} "
          f"evaluation images, evaluated in torch; seeds {', '.join(map(str, seeds))} (the mean, then each); "
          f"1 torch thread")
    dense = lstm_ops(ENCODER, HIDDEN)["mac"]
    print(f"{'steps':>5}{'accuracy %':>12}{'(per seed)':>24}{'loss last':>11}{'IF rate':>9}{'LSTM rate':>11}"
          f"{'LSTM adds':>11}{'(dense)':>11}{'train s':>9}")
    for steps in latencies:
        runs = []
        for seed in seeds:
            net = SpikingLSTMClassifier((1, 28, 28), steps=steps, encoder=ENCODER, hidden=HIDDEN,
                                        threshold=THRESHOLD, spike_fn="arctan", seed=seed)
            start = time.perf_counter()
            losses = train_classifier(net, x, y, epochs=epochs, batch_size=64, lr=5e-3, max_shift=1, seed=seed,
                                      progress=True)
            seconds = time.perf_counter() - start
            acc = accuracy(net, x_eval, y_eval)
            with torch.no_grad():
                net(torch.as_tensor(np.asarray(x_eval), dtype=torch.float32))  # the rates of the evaluation images
            adds = float(lstm_accumulates(HIDDEN, net.spikes["encoder"], net.spikes["lstm"]).double().mean())
            runs.append((100 * acc, losses[-1], net.rates["encoder"], net.rates["lstm"], adds, seconds))
        acc, loss, rate_if, rate_lstm, adds, seconds = np.mean(runs, axis=0)
        per_seed = " ".join(f"{r[0]:.2f}" for r in runs)
        print(f"{steps:>5}{acc:>12.2f}{per_seed:>24}{loss:>11.3f}{rate_if:>9.3f}{rate_lstm:>11.3f}{adds:>11,.0f}"
              f"{steps * dense:>11,}{seconds:>9.0f}", flush=True)
    try:
        evsnn.convert(net, input_shape=(1, 28, 28))
    except evsnn.ConversionError as err:
        print(f"\nexport: evsnn.convert refuses it: {err}")

    ops = lstm_ops(ENCODER, HIDDEN)
    elementwise = sum(ops[k] for k in ("sigmoid", "tanh", "mul", "add", "compare"))
    omega = ENCODER * HIDDEN * 8 + HIDDEN * (HIDDEN * 8 + 20)
    print(f"\nLSTM layer (d_x = {ENCODER}, d_h = {HIDDEN}), per step and image: "
          + ", ".join(f"{v:,} {k}" for k, v in ops.items()))
    print(f"seed 004 eq. 1: Omega(LSNN-W) = {omega:,}; evsnn's count in its convention (2 per MAC, no bias): "
          f"2 x {ops['mac']:,} + {elementwise:,} = {2 * ops['mac'] + elementwise:,} "
          f"(Omega - {omega - 2 * ops['mac'] - elementwise:,} = Omega - {(omega - 2 * ops['mac'] - elementwise) // HIDDEN} d_h)")


if __name__ == "__main__":
    main()
