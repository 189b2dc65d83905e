"""Seed 003's experiments at CPU scale: PSP normalization against none and BN, tau_s and lambda, residual blocks.

    python examples/psp_norm.py                      # about 45 minutes on 2 cores
    python examples/psp_norm.py --out runs/psp       # keep checkpoints and results: a rerun resumes
    python examples/psp_norm.py --quick              # smoke test (under a minute)
    python examples/psp_norm.py --surrogate slayer --sections table2   # Table 2 with SLAYER (5 minutes)
    python examples/psp_norm.py --sections table2 --methods tdbn,bntt  # Table 2's rows for tdBN and BNTT

Ikegawa et al. (seed 003) train SRM networks with SLAYER on N-MNIST and
Fashion-MNIST for 100 epochs at 100-300 steps on a GPU. This script keeps
their protocol and scales it to the bundled MNIST and a 2-core CPU (every
scaled value is printed with the tables):

- Table 2 / Figs. 6-7: the 12-conv network 16c3-{32c3}x5-32c3-{64c3}x5-10
  (seed 003's F-MNIST widths; 3x3 convolutions with padding 1, stride 2 at
  the first and seventh so that 28x28 becomes 14x14 and 7x7), without
  normalization, with BN of the membrane input, with PSP-BN and with PSP-LN
  (``--methods`` also offers tdBN, alpha = 1, and BNTT): accuracy on the
  2,000 evaluation images, firing rate per layer and in total;
- Fig. 8: tau_s in {1, 2, 5, 10} steps for each method (2: Table 2);
- Fig. 9: PSP-BN's lambda in {1e-5, 1e-3, 1e-1, 1};
- Table 3: pre- against post-activation residual networks (16 channels,
  14x14) at the depth the CPU allows, with PSP-BN and PSP-LN.

SRM neurons with tau_s = tau_r = 2 steps (dt = 1 ms) and seed 003's
refractory kernel -2 theta e^(-t/tau_r); threshold 1 with torch's default
initialisation (seed 003's threshold 10 with weights x 10 is the same
network with every potential x 10); analog input over 16 steps; the arctan
surrogate by default (--surrogate slayer: seed 003's); AdamW, batch 32,
learning rate 5e-3 with warm-up and cosine decay; the first 2,000 training
images. Accuracy of a PSP-LN or BNTT network is its own forward pass (they
cannot be exported); the others are also exported with their statistics folded in and
run on the event engine (accuracy and SOPs per image on the evaluation
images).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

import evsnn
from evsnn.io.datasets import mnist_split
from evsnn.training import SURROGATES, SpikingNetwork, train_classifier
from evsnn.training.networks import IDENTITY_PREFIX, plain_cnn, residual_cnn

METHODS = (None, "bn", "psp-bn", "psp-ln")  # the default --methods; also "tdbn" and "bntt"
SECTIONS = ("table2", "tau", "lambda", "table3")
PLAIN = {"channels": (16, 32, 32, 32, 32, 32, 32, 64, 64, 64, 64, 64), "strides": (2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1)}


def srm(tau_steps: float) -> evsnn.NeuronSpec:
    return evsnn.NeuronSpec("srm", tau_syn=tau_steps * 1e-3, tau_refr=tau_steps * 1e-3, refractory_amplitude=2.0)


class Runner:
    """Trains and evaluates one configuration at a time; results are kept in ``results.json`` under ``out``
    (a rerun skips what is there) and each run's checkpoint beside it."""

    def __init__(self, out: str, data, n_train: int, n_eval: int, steps: int, lr: float, batch_size: int,
                 surrogate: str):
        self.out, self.steps, self.lr, self.batch_size, self.surrogate = out, steps, lr, batch_size, surrogate
        self.x, self.y = data.x_train[:n_train], data.y_train[:n_train]
        self.x_eval, self.y_eval = data.x_test[:n_eval], data.y_test[:n_eval]
        self.path = os.path.join(out, "results.json")
        self.results = json.load(open(self.path)) if os.path.exists(self.path) else {}

    def run(self, key: str, model: evsnn.SpikingModel, *, norm: str | None, epochs: int, lam: float = 1e-3,
            fixed: tuple = (), export: bool = True) -> dict:
        key = key if self.surrogate == "arctan" else f"{self.surrogate}_{key}"
        if key in self.results:
            return self.results[key]
        net = SpikingNetwork(model, steps=self.steps, spike_fn=self.surrogate, encoding="current", norm=norm,
                             norm_lambda=lam, fixed=fixed)
        start = time.perf_counter()
        losses = train_classifier(net, self.x, self.y, epochs=epochs, batch_size=self.batch_size, lr=self.lr,
                                  max_shift=0, seed=0, progress=True, checkpoint=os.path.join(self.out, f"{key}.pt"))
        seconds = time.perf_counter() - start
        correct, rates = 0, {}
        with torch.no_grad():
            for i in range(0, len(self.x_eval), 250):
                xb = torch.as_tensor(self.x_eval[i:i + 250])
                correct += int((net(xb).argmax(1).numpy() == self.y_eval[i:i + 250]).sum())
                for name, r in net.rates.items():
                    rates[name] = rates.get(name, 0.0) + r * len(xb) / len(self.x_eval)
        sizes = {p.name: p.size for p in model.populations}
        total = sum(rates[n] * sizes[n] for n in rates) / sum(sizes[n] for n in rates)
        record = {"loss_first": losses[0], "loss_last": losses[-1], "accuracy": correct / len(self.x_eval),
                  "rates": rates, "total_rate": total, "train_s": seconds}
        if export and norm not in ("psp-ln", "bntt"):
            exported = net.to_model()
            result = evsnn.simulate(exported, self.x_eval, steps=self.steps, encoding="current")
            record.update(event_accuracy=result.accuracy(self.y_eval), sop_per_image=float(result.total_sops().mean()),
                          identical=evsnn.validate(exported, self.x_eval[:2], engines=("event", "torch"),
                                                   steps=self.steps, encoding="current", dtype="float64").identical)
        self.results[key] = record
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.results, f, indent=1)
        os.replace(tmp, self.path)
        return record


def name_of(norm: str | None) -> str:
    return {None: "None", "bn": "BN", "psp-bn": "PSP-BN", "psp-ln": "PSP-LN", "tdbn": "tdBN", "bntt": "BNTT"}[norm]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny networks, 128 images, one epoch")
    parser.add_argument("--out", help="folder for checkpoints and results (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--blocks", type=int, default=16, help="residual blocks for Table 3 (default 16)")
    parser.add_argument("--surrogate", choices=sorted(SURROGATES), default="arctan",
                        help="the surrogate gradient (default arctan; seed 003 used slayer)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"which experiments, comma-separated (default all: {','.join(SECTIONS)})")
    parser.add_argument("--methods", default=",".join(map(str, METHODS)),
                        help="normalizations of Table 2 and Fig. 8, comma-separated, from None, bn, psp-bn, psp-ln, "
                             "tdbn, bntt (default: None,bn,psp-bn,psp-ln)")
    args = parser.parse_args()
    names = {str(norm): norm for norm in (*METHODS, "tdbn", "bntt")}
    unknown = sorted(set(args.methods.split(",")) - set(names))
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(names)}")
    methods = [names[m] for m in args.methods.split(",")]
    sections = args.sections.split(",")
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    torch.set_num_threads(args.threads)
    data = mnist_split()
    if args.quick:
        n_train, n_eval, steps, epochs = 128, 100, 6, 1
        plain = {"channels": (4, 4, 8), "strides": (2, 1, 2)}
        blocks, taus, lams = 2, (1, 2), (1e-3, 1e-1)
    else:
        n_train, n_eval, steps, epochs = 2000, 2000, 16, 3
        plain, blocks, taus, lams = PLAIN, args.blocks, (1, 2, 5, 10), (1e-5, 1e-3, 1e-1, 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        os.makedirs(out, exist_ok=True)
        runner = Runner(out, data, n_train, n_eval, steps, lr=5e-3, batch_size=32, surrogate=args.surrogate)
        widths = "-".join(f"{c}c3" + ("s2" if s == 2 else "") for c, s in zip(plain["channels"], plain["strides"]))
        print(f"bundled MNIST: {n_train} training images, {n_eval} evaluation images; SRM tau_s = tau_r = 2 steps "
              f"unless said, {steps} steps, analog input, {args.surrogate} surrogate, AdamW 5e-3, batch 32, "
              f"{args.threads} torch threads")

        if "table2" in sections:
            print(f"\nTable 2 (and Figs. 6-7): {widths}-10, {epochs} epochs")
            layers = [f"conv{k}" for k in range(1, len(plain["channels"]) + 1)] + ["fc"]
            print(f"{'method':<8}{'loss last':>10}{'accuracy %':>11}{'event %':>9}{'SOP/image':>12}{'total rate':>11}"
                  f"{'train s':>9}  {'event = torch':<14}")
            table2 = {}
            for norm in methods:
                model = plain_cnn(plain["channels"], srm(2), strides=plain["strides"])
                r = table2[norm] = runner.run(f"table2_{norm}", model, norm=norm, epochs=epochs)
                event = (f"{100 * r['event_accuracy']:>9.2f}{r['sop_per_image']:>12,.0f}" if "event_accuracy" in r
                         else f"{'-':>9}{'-':>12}")
                print(f"{name_of(norm):<8}{r['loss_last']:>10.3f}{100 * r['accuracy']:>11.2f}{event}"
                      f"{r['total_rate']:>11.4f}{r['train_s']:>9.0f}  {str(r.get('identical', '-')):<14}", flush=True)
            print("firing rate per layer (spikes per neuron per step; Fig. 6)")
            print(f"{'method':<8}" + "".join(f"{name:>8}" for name in layers))
            for norm, r in table2.items():
                print(f"{name_of(norm):<8}" + "".join(f"{r['rates'][name]:>8.4f}" for name in layers))

        if "tau" in sections:
            print(f"\nFig. 8: accuracy % against tau_s (= tau_r, in steps), {epochs} epochs")
            print(f"{'method':<8}" + "".join(f"{'tau ' + str(t):>10}" for t in taus))
            for norm in methods:
                row = [runner.run(f"table2_{norm}" if t == 2 else f"tau{t}_{norm}_e{epochs}",
                                  plain_cnn(plain["channels"], srm(t), strides=plain["strides"]), norm=norm,
                                  epochs=epochs, export=t == 2)["accuracy"] for t in taus]
                print(f"{name_of(norm):<8}" + "".join(f"{100 * a:>10.2f}" for a in row), flush=True)

        if "lambda" in sections:
            print(f"\nFig. 9: PSP-BN accuracy % against lambda, {epochs} epochs")
            print("".join(f"{'lambda ' + format(lam, 'g'):>14}" for lam in lams))
            row = [runner.run("table2_psp-bn" if lam == 1e-3 else f"lambda{lam:g}_e{epochs}",
                              plain_cnn(plain["channels"], srm(2), strides=plain["strides"]), norm="psp-bn", lam=lam,
                              epochs=epochs, export=lam == 1e-3)["accuracy"] for lam in lams]
            print("".join(f"{100 * a:>14.2f}" for a in row), flush=True)

        if "table3" in sections:
            width = 4 if args.quick else 16
            print(f"\nTable 3: residual networks, {blocks} blocks of two {width}c3 (stem {width}c3s2, {2 * blocks + 2} "
                  f"weight layers), {epochs} epochs")
            print(f"{'method':<8}{'block':<10}{'accuracy %':>11}{'loss last':>10}{'total rate':>11}{'train s':>9}")
            for norm in ("psp-bn", "psp-ln"):
                for kind in ("post", "pre"):
                    model = residual_cnn(kind, blocks, width, srm(2))
                    fixed = tuple(pr.name for pr in model.projections if pr.name.startswith(IDENTITY_PREFIX))
                    r = runner.run(f"table3_{norm}_{kind}_{blocks}", model, norm=norm, epochs=epochs, fixed=fixed,
                                   export=False)
                    print(f"{name_of(norm):<8}{kind + '-act':<10}{100 * r['accuracy']:>11.2f}{r['loss_last']:>10.3f}"
                          f"{r['total_rate']:>11.4f}{r['train_s']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
