"""Small, deterministic training of the reference ANNs that evsnn converts.

The architectures are those of Diehl et al. (2015), "Fast-classifying,
high-accuracy spiking deep networks through weight and threshold balancing":
bias-free ReLU networks with dropout (and average pooling for the CNN), the
constraints under which their normalization methods hold.

Every random draw (initialisation, dropout, shuffling, augmentation) comes
from the ``seed`` argument; torch's global random state is left as it was.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

__all__ = ["diehl_mlp", "diehl_cnn", "train_diehl", "RECIPE", "train_classifier", "accuracy", "random_shift"]

#: The tuned recipe of :func:`train_diehl` (chosen for the MLP on held-out training images, never on the
#: evaluation split).
RECIPE = {"epochs": 10, "batch_size": 128, "lr": 3e-3, "dropout": 0.3, "max_shift": 1}


def diehl_mlp(*, dropout: float = 0.3, seed: int = 0) -> nn.Sequential:
    """The 784-1200-1200-10 MLP: ReLU, no biases, dropout after each hidden layer."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 1200, bias=False), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(1200, 1200, bias=False), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(1200, 10, bias=False),
        )


def diehl_cnn(*, dropout: float = 0.3, seed: int = 0) -> nn.Sequential:
    """The 12c5-a2-64c5-a2-10 CNN: 5x5 convolutions, 2x2 average pooling, no biases."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 12, 5, bias=False), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(12, 64, 5, bias=False), nn.ReLU(), nn.AvgPool2d(2), nn.Dropout(dropout),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 10, bias=False),
        )


def random_shift(x: torch.Tensor, max_shift: int, rng: np.random.Generator) -> torch.Tensor:
    """Shift each image of ``x`` (N, C, H, W) by whole pixels in [-max_shift, max_shift], zero fill."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    padded = F.pad(x, (max_shift,) * 4)
    out = torch.empty_like(x)
    for dy in range(-max_shift, max_shift + 1):  # one slice per shift, not per image
        for dx in range(-max_shift, max_shift + 1):
            rows = torch.from_numpy(np.flatnonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx)))
            if len(rows):
                out[rows] = padded[rows, :, max_shift - dy: max_shift - dy + h, max_shift - dx: max_shift - dx + w]
    return out


def train_diehl(kind: str, x: np.ndarray, y: np.ndarray, *, seed: int = 0, epochs: int | None = None,
                progress: bool = False) -> tuple[nn.Sequential, list[float]]:
    """The Diehl et al. ``"mlp"`` or ``"cnn"`` trained on ``(x, y)`` with :data:`RECIPE`.

    ``epochs`` overrides the recipe's. Returns the network (in eval mode) and its
    mean training loss per epoch.
    """
    builders = {"mlp": diehl_mlp, "cnn": diehl_cnn}
    if kind not in builders:
        raise ValueError(f"train_diehl: kind must be 'mlp' or 'cnn', got {kind!r}.")
    net = builders[kind](dropout=RECIPE["dropout"], seed=seed)
    losses = train_classifier(net, x, y, epochs=RECIPE["epochs"] if epochs is None else epochs,
                              batch_size=RECIPE["batch_size"], lr=RECIPE["lr"], max_shift=RECIPE["max_shift"],
                              seed=seed, progress=progress)
    return net, losses


def train_classifier(
    module: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    max_shift: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Train ``module`` in place with AdamW, a warm-up/cosine schedule and random shifts.

    Parameters
    ----------
    module : torch.nn.Module
        Left in eval mode on return.
    x : array, shape (N, C, H, W), values in [0, 1]
    y : array of int, shape (N,)
    epochs, batch_size, lr : training schedule (linear warm-up over the first quarter of the
        batches to ``lr``, then cosine decay to 0)
    max_shift : int
        Data augmentation: random whole-pixel shifts up to this many pixels.
    seed : int
        Seeds dropout, shuffling and augmentation.
    progress : bool
        Show a progress bar over the batches.

    Returns
    -------
    list of float
        Mean training loss per epoch.
    """
    if epochs < 1:
        raise ValueError(f"train_classifier: epochs must be >= 1, got {epochs}.")
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    rng = np.random.default_rng(seed)
    steps = -(-len(xt) // batch_size)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(_one_cycle, total=epochs * steps))
    losses = []
    with torch.random.fork_rng(), tqdm(total=epochs * steps, desc="training", unit="batch",
                                       disable=not progress, leave=False) as bar:
        torch.manual_seed(seed)
        module.train()
        for epoch in range(epochs):
            order = torch.from_numpy(rng.permutation(len(xt)))
            total = 0.0
            for i in range(steps):
                idx = order[i * batch_size:(i + 1) * batch_size]
                loss = F.cross_entropy(module(random_shift(xt[idx], max_shift, rng)), yt[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item() * len(idx)
                bar.update()
            losses.append(total / len(xt))
            bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}")
    module.eval()
    return losses


def _one_cycle(step: int, *, total: int) -> float:
    """Learning-rate factor: linear warm-up over a quarter of ``total`` steps, then cosine decay."""
    warm = max(1, total // 4)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


@torch.no_grad()
def accuracy(module: nn.Module, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1000) -> float:
    """Fraction of ``x`` that ``module`` (in eval mode) classifies as ``y``."""
    was_training = module.training
    module.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = torch.as_tensor(np.asarray(x[i:i + batch_size]), dtype=torch.float32)
        correct += int((module(xb).argmax(1).numpy() == np.asarray(y[i:i + batch_size])).sum())
    module.train(was_training)
    return correct / len(x)
