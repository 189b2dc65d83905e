"""``evsnn demo``: train the Diehl et al. MLP on the bundled MNIST split, convert, save, simulate it.

Every number it prints is computed in the run; the same seed gives the same
numbers on the same machine and library versions.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ._version import __version__
from .checks import check_output_path
from .converters import convert
from .energy import energy_report
from .errors import InputError
from .io.datasets import mnist_split
from .io.hdf5 import load, save
from .result import format_summary
from .simulation import simulate
from .training import RECIPE, accuracy, train_diehl

def run_demo(*, out: str = "model.h5", epochs: int | None = None, seed: int = 0, progress: bool = True,
             n_train: int = 8000, steps: int = 100, threads: int | None = None) -> dict:
    """Run the demo and print its report; return the numbers it printed.

    Parameters
    ----------
    out : str
        Path of the saved HDF5 model.
    epochs : int, optional
        Training epochs; default the recipe's.
    seed : int
        Seeds weight initialisation, dropout, shuffling and augmentation.
    progress : bool
        Show progress bars.
    n_train : int
        Training images taken from the start of the 8,000-image training split
        (fewer makes a quick smoke test).
    steps : int
        Simulation steps of the spiking run.
    threads : int, optional
        Cores the simulations use (the ``threads`` run setting; default all).

    Raises
    ------
    InputError
        A bad ``epochs``, ``steps``, ``seed`` or ``n_train``, or an ``out`` that
        cannot be written; checked before anything is trained.
    """
    for name, value, low, high in (("epochs", epochs, 1, None), ("steps", steps, 1, None), ("seed", seed, 0, None),
                                   ("n_train", n_train, 1, 8000)):
        if value is None and name == "epochs":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or \
                (high is not None and value > high):
            need = f"an integer >= {low}" + ("" if high is None else f" and <= {high}")
            raise InputError(f"run_demo: {name} must be {need}, got {value!r}.")
    check_output_path(out, what="run_demo: out")
    recipe = {**RECIPE, "epochs": RECIPE["epochs"] if epochs is None else epochs}
    data = mnist_split()
    x_train, y_train = data.x_train[:n_train], data.y_train[:n_train]
    print(f"evsnn {__version__} demo: Diehl et al. (2015) MLP 784-1200-1200-10 (ReLU, no bias, dropout)")
    print(f"data: bundled MNIST test set, {len(x_train)} training / {len(data.x_test)} evaluation images")

    start = time.perf_counter()
    net, losses = train_diehl("mlp", x_train, y_train, seed=seed, epochs=recipe["epochs"], progress=progress)
    train_s = time.perf_counter() - start
    ann_acc = accuracy(net, data.x_test, data.y_test)
    print(f"trained {recipe['epochs']} epochs in {train_s:.1f} s (final loss {losses[-1]:.4f}, seed {seed})")
    print(f"ANN accuracy on the {len(data.x_test)} evaluation images: {100 * ann_acc:.2f}%")

    model = convert(net, input_shape=(1, 28, 28), norm="data", calibration=x_train)
    factors = model.provenance["normalization_factors"]
    print(f"converted with data-based normalization (Diehl et al. 2015), calibrated on the {len(x_train)} "
          "training images: λ = " + ", ".join(f"{k} {v:.3g}" for k, v in factors.items()))
    provenance = dict(model.provenance)
    provenance["training"] = {**recipe, "seed": seed, "train_images": len(x_train),
                              "dataset": "MNIST t10k (bundled): first 8000 train, last 2000 evaluation",
                              "ann_test_accuracy": ann_acc}
    model = model.replace(provenance=provenance)

    # The IR's rate model must reproduce the network it came from, up to the output's factor.
    with torch.no_grad():
        logits = net(torch.as_tensor(data.x_test)).numpy()
    rates = model.ann_forward(data.x_test)[model.output] * factors[model.output]
    max_diff = float(np.abs(rates - np.maximum(logits, 0)).max())
    print(f"check: the IR's rate model times λ_{model.output} matches the ANN's ReLU(logits) within {max_diff:.2e}")

    save(model, out)
    print(f"saved {out}\n")
    saved = load(out)
    print(saved.summary())

    print(f"\nrunning the saved model on the event engine: {len(data.x_test)} evaluation images, "
          f"{steps} steps, {saved.input.encoding} input")
    result = simulate(saved, data.x_test, steps=steps, threads=threads, progress=progress)
    summary = {"model": out, **result.summary(data.y_test)}
    print(format_summary(summary))
    print(f"\nANN accuracy {100 * ann_acc:.2f}%, SNN accuracy {100 * summary['accuracy']:.2f}% after {steps} steps, "
          f"{summary['sops_per_sample_total']['mean']:,.0f} SOPs per sample")
    energy = energy_report(result, saved, x=data.x_test, labels=data.y_test, ann=net, source=out)
    print(energy.brief() + f"\n(full report: evsnn report {out} --steps {steps})")

    from .validation import validate  # the event engine checked against the Brian2 reference

    check = validate(saved, data.x_test[:20], steps=steps, dtype="float64", threads=threads,
                     progress=progress).comparisons[0]
    print(f"cross-validation, event engine vs Brian2 (float64, {check.samples} images, {steps} steps): "
          f"{100 * check.spike_agreement:.3f}% of spikes identical, {100 * check.prediction_agreement:.0f}% of "
          f"predictions (`evsnn validate {out} --against brian2 --steps {steps}`)")
    return {"ann_accuracy": ann_acc, "train_seconds": train_s, "losses": losses, "max_forward_diff": max_diff,
            "model": out, "snn": summary, "energy": energy.to_dict(), "cross_validation": check.to_dict()}
