"""Direct training of spiking networks: backpropagation through time with surrogate gradients.

:class:`SpikingNetwork` makes a :class:`~evsnn.SpikingModel` trainable: the
weights of its dense and convolutional projections and its biases become
``torch.nn.Parameter``\\ s of the torch engine's own
:class:`~evsnn.engines.timestep.TimestepNetwork`, whose step function runs
under autograd with a surrogate spike function
(:mod:`evsnn.training.surrogate`). There is no second copy of the dynamics:
the forward pass of training is the torch engine's, and
:meth:`SpikingNetwork.to_model` writes the trained weights back into the IR,
which then runs unchanged on the event engine, the torch engine and Brian2.

The input is encoded by :func:`evsnn.encode` (the model's encoding: analog
``current``, or Poisson spikes drawn from a generator seeded by ``seed``).
The logits are the output population's spike counts over the run (``count``
read-out) or its potential at the last step (``membrane`` read-out): what
the engines' predictions are the argmax of. Sparse projections are kept
fixed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from ..encoding import encode
from ..engines.timestep import TimestepNetwork, check_device
from ..model import SpikingModel
from ..ops import Conv2d, Dense
from .ann import train_classifier
from .surrogate import Surrogate, surrogate as make_surrogate

__all__ = ["SpikingNetwork", "train_snn"]


class SpikingNetwork(nn.Module):
    """A :class:`~evsnn.SpikingModel` with trainable weights and biases, run for ``steps`` steps per sample.

    Parameters
    ----------
    model : SpikingModel
        The architecture and the initial weights (e.g. ``evsnn.convert(ann, norm="none")`` with SRM neurons
        from :meth:`~evsnn.SpikingModel.with_neuron`).
    steps : int
        Simulation steps per sample.
    spike_fn : str or Surrogate, default="slayer"
        The surrogate spike function (:func:`evsnn.training.surrogate.surrogate`).
    encoding : str, optional
        ``current``, ``poisson`` or ``regular``; default the model's.
    seed : int
        Seeds the Poisson input drawn for each batch.
    dtype, device
        Of the parameters and the run.
    """

    def __init__(self, model: SpikingModel, *, steps: int, spike_fn: str | Surrogate = "slayer",
                 encoding: str | None = None, seed: int = 0, dtype: str = "float32", device: object = "cpu"):
        super().__init__()
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"SpikingNetwork: steps must be a positive integer, got {steps!r}.")
        self.model, self.steps, self.seed = model, steps, seed
        self.encoding = encoding or model.input.encoding
        self.spike_fn = make_surrogate(spike_fn)
        self.network = TimestepNetwork(model, dtype=np.dtype(dtype), device=check_device(device))
        self.weights = nn.ParameterList()
        for pr in model.projections:
            product = self.network.products[pr.name]
            if isinstance(pr.op, Dense):
                product.weight_t = nn.Parameter(product.weight_t)
                self.weights.append(product.weight_t)
            elif isinstance(pr.op, Conv2d):
                product.weight = nn.Parameter(product.weight)
                self.weights.append(product.weight)
        self.biases = nn.ParameterList()
        for i, bias in enumerate(self.network.bias):
            if bias is not None:
                self.network.bias[i] = nn.Parameter(bias)
                self.biases.append(self.network.bias[i])
        self._rng = np.random.default_rng(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch ``x`` (N, *input shape): the output's spike counts, or its last potential."""
        net = self.network
        n = x.shape[0]
        encoded = encode(self.model, x.detach().cpu().numpy(), steps=self.steps, encoding=self.encoding,
                         seed=int(self._rng.integers(2 ** 62)))
        raster = analog = None
        if encoded.is_spiking:
            raster = torch.as_tensor(encoded.raster(0, n), device=net.device)
        else:
            analog = net.analog_input(torch.as_tensor(encoded.current(0, n), device=net.device).to(net.torch_dtype))
        state, logits = net.initial_state(n), 0
        for t in range(self.steps):
            spikes = None if raster is None else raster[t].to(net.torch_dtype)
            state, emitted = net.step(state, t, spikes, analog, spike_fn=self.spike_fn)
            logits = emitted[net.output_index] if net.membrane else logits + emitted[net.output_index]
        return logits

    def to_model(self, **provenance) -> SpikingModel:
        """The model with the trained weights and biases (in the network's dtype); ``provenance`` is recorded
        under ``provenance["training"]``."""
        projections = []
        for pr in self.model.projections:
            product = self.network.products[pr.name]
            if isinstance(pr.op, Dense):
                op = Dense(product.weight_t.detach().cpu().numpy().T.copy())
            elif isinstance(pr.op, Conv2d):
                weight = product.weight.detach().cpu().numpy()
                if product.pooled:  # the folded kernel: each tap of the pooled one over its s x s block
                    (sh, sw) = pr.op.stride
                    weight = np.repeat(np.repeat(weight, sh, axis=2), sw, axis=3)
                op = dataclasses.replace(pr.op, weight=weight)
            else:
                op = pr.op
            projections.append(dataclasses.replace(pr, op=op))
        populations = [p if b is None else dataclasses.replace(p, bias=b.detach().cpu().numpy().reshape(p.shape))
                       for p, b in zip(self.model.populations, self.network.bias)]
        record = {"steps": self.steps, "surrogate": self.spike_fn.name, **self.spike_fn.params,
                  "encoding": self.encoding, **provenance}
        return self.model.replace(projections=projections, populations=populations,
                                  provenance={**self.model.provenance, "training": record})


def train_snn(model: SpikingModel, x: np.ndarray, y: np.ndarray, *, steps: int, spike_fn: str | Surrogate = "slayer",
              encoding: str | None = None, epochs: int = 5, batch_size: int = 64, lr: float = 1e-3,
              max_shift: int = 0, seed: int = 0, progress: bool = False) -> tuple[SpikingModel, list[float]]:
    """Train ``model`` on images ``x`` and labels ``y`` by BPTT with a surrogate gradient; return the trained
    model and the mean loss per epoch.

    The loop is :func:`evsnn.training.train_classifier`'s (AdamW, warm-up and cosine decay, cross-entropy of
    the logits of :class:`SpikingNetwork`, random shifts up to ``max_shift`` pixels), seeded by ``seed``.
    """
    net = SpikingNetwork(model, steps=steps, spike_fn=spike_fn, encoding=encoding, seed=seed)
    losses = train_classifier(net, x, y, epochs=epochs, batch_size=batch_size, lr=lr, max_shift=max_shift,
                              seed=seed, progress=progress)
    return net.to_model(trainer="evsnn.training.train_snn", epochs=epochs, batch_size=batch_size, lr=lr,
                        seed=seed, samples=int(len(x))), losses
