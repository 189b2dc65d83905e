"""The L4-norm study (Allred & Roy) on the Diehl CNN: leak × reset grid, baseline vs L4, 75 steps.

    python examples/l4_study.py --out l4_study [--select 200] [--samples 2000]

CIFAR-10 and VGG-5 are not available offline, so the Diehl CNN on the bundled
MNIST split stands in. The CNN is trained on training images 0-6,999 (seed 0,
the demo recipe) and converted with data-based normalization (calibration:
training images 0-999). In every cell of five leak factors × soft/hard reset,
the threshold scale (0.4-1.2) and, for L4, α (0.5-4), on the grid of
``evsnn.sweep``, are chosen by accuracy on ``--select`` held-out training
images (7,000 onwards) at the last step, ties going to the higher accuracy
averaged over the steps (``evsnn.sweep.CHOICE``); the chosen configuration
is then run once on the first ``--samples`` evaluation images. Poisson
input, as in the paper.

The sweep log (``<out>/sweep.jsonl``) makes the run resumable: run the same
command again after an interruption and finished runs are skipped. It also
writes ``sweep.csv``, ``summary.json`` and, with matplotlib, ``sweep.png``.
``--out`` has no default, so that a resumable log is never left somewhere by
accident (a stale log would silently skip the runs of a changed study).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import evsnn
from evsnn.io.datasets import mnist_split
from evsnn.sweep import plot_sweep, sweep
from evsnn.training import accuracy, train_diehl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory (sweep.jsonl, the resumable log, and results)")
    parser.add_argument("--select", type=int, default=200, help="held-out training images for the choice")
    parser.add_argument("--samples", type=int, default=2000, help="evaluation images (default 2000: all)")
    parser.add_argument("--steps", type=int, default=75)
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 epoch, 2 leaks, 30 images")
    args = parser.parse_args()
    quick = args.quick
    data = mnist_split()
    net, _ = train_diehl("cnn", data.x_train[:7000], data.y_train[:7000], seed=0, epochs=1 if quick else None)
    select, samples = (30, 30) if quick else (args.select, args.samples)
    steps = 20 if quick else args.steps
    x_eval, y_eval = data.x_test[:samples], data.y_test[:samples]
    calibration = data.x_train[:1000]
    base = evsnn.convert(net, input_shape=(1, 28, 28), norm="data", calibration=calibration)
    grid = dict(leaks=(1.0, 0.9), thresholds=(0.8, 1.0), alphas=(1.0,)) if quick else {}  # {}: the sweep's grid
    out = Path(args.out)
    result = sweep(base, x_select=data.x_train[7000:7000 + select], y_select=data.y_train[7000:7000 + select],
                   calibration=calibration, x_eval=x_eval, y_eval=y_eval, log=out / "sweep.jsonl",
                   steps=steps, encoding="poisson", seed=0, progress=False,
                   describe={"network": "Diehl CNN, train 0-6999, seed 0", "calibration": "train 0-999",
                             "select": f"train 7000-{7000 + select - 1}", "eval": f"evaluation 0-{samples - 1}"},
                   **grid)
    print(f"Diehl CNN: ANN accuracy {100 * accuracy(net, x_eval, y_eval):.2f}% on {samples} evaluation images; "
          f"SNN: data-based normalization, {steps} steps, Poisson input, event engine, seed 0")
    print(f"θ from {result.settings['thresholds']}, α from {result.settings['alphas']}, chosen on {select} "
          "held-out training images (select); eval: the chosen configuration on the evaluation images\n")
    print(result.table())
    best = {(b["leak"], b["reset"], b["method"]): b for b in result.best()}
    print()
    for key, what in (("eval_accuracy", f"at step {steps}"), ("eval_mean_accuracy", "averaged over the steps")):
        gains = [best[(leak, reset, "l4")][key] - best[(leak, reset, "baseline")][key]
                 for leak in result.settings["leaks"] for reset in result.settings["resets"]]
        print(f"L4 minus baseline, eval accuracy {what} (percentage points): "
              + " ".join(f"{100 * g:+.2f}" for g in gains)
              + f"; L4 better in {sum(g > 0 for g in gains)}, equal in {sum(g == 0 for g in gains)}, "
              f"worse in {sum(g < 0 for g in gains)} of {len(gains)} cells")
    (out / "sweep.csv").write_text(result.to_csv())
    (out / "summary.json").write_text(json.dumps(result.to_json(), indent=1))
    try:
        plot_sweep(result, out / "sweep.png")
    except evsnn.InputError as err:  # matplotlib missing
        print(f"(no plot: {err})")


if __name__ == "__main__":
    main()
