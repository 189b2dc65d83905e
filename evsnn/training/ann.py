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
import os
import tempfile
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..checks import check_output_path

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
    checkpoint: str | os.PathLike | None = None,
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
    checkpoint : path, optional
        After each epoch the module, optimizer, schedule and random states are written there (atomically: a
        crash never leaves a torn file); a run given an existing checkpoint resumes after its last epoch and
        ends with the same weights as an uninterrupted run. Its settings must be this call's.

    Returns
    -------
    list of float
        Mean training loss per epoch.
    """
    if epochs < 1:
        raise ValueError(f"train_classifier: epochs must be >= 1, got {epochs}.")
    if checkpoint is not None:  # before any training: a bad path must not cost the first epoch
        checkpoint = check_output_path(checkpoint, what="train_classifier: checkpoint")
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    rng = np.random.default_rng(seed)
    steps = -(-len(xt) // batch_size)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(_one_cycle, total=epochs * steps))
    losses: list[float] = []
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "max_shift": max_shift, "seed": seed,
                "samples": len(xt)}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        start = 0
        if checkpoint is not None and os.path.exists(checkpoint):
            start, losses = _resume(checkpoint, settings, module, optimizer, schedule, rng)
        module.train()
        with tqdm(total=epochs * steps, initial=start * steps, desc="training", unit="batch",
                  disable=not progress, leave=False) as bar:
            for epoch in range(start, epochs):
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
                if checkpoint is not None:
                    _save_checkpoint(checkpoint, {"epoch": epoch + 1, "settings": settings, "losses": losses,
                                                  "module": module.state_dict(), "optimizer": optimizer.state_dict(),
                                                  "schedule": schedule.state_dict(), "rng": rng.bit_generator.state,
                                                  "torch_rng": torch.get_rng_state()})
    module.eval()
    return losses


def _save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".checkpoint-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _resume(path, settings: dict, module: nn.Module, optimizer, schedule, rng: np.random.Generator
            ) -> tuple[int, list[float]]:
    """Restore a :func:`train_classifier` checkpoint; return the epochs it had done and their losses."""
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:
        raise ValueError(f"train_classifier: checkpoint {os.fspath(path)!r} cannot be read ({exc}).") from exc
    if not isinstance(state, dict) or state.get("settings") != settings:
        found = state.get("settings") if isinstance(state, dict) else None
        raise ValueError(f"train_classifier: checkpoint {os.fspath(path)!r} was written by a run with other "
                         f"settings ({found}; this run: {settings}); remove it or pass another path.")
    try:
        module.load_state_dict(state["module"])
    except RuntimeError as exc:
        raise ValueError(f"train_classifier: checkpoint {os.fspath(path)!r} holds another network's parameters "
                         f"({str(exc).splitlines()[0]}); remove it or pass another path.") from exc
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    return int(state["epoch"]), list(state["losses"])


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
