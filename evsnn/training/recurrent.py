r"""Seed 004's spiking LSTM-style layer, and its operation counts (the seed's eq. 1).

Seed 004 (Yao et al., supplementary section 3.1) compares a spiking
convolution and a spiking LSTM in a window by their operation counts,
:math:`\Omega(LSNN\text{-}W) = 8 d_x d_h + d_h (8 d_h + 20)` (eq. 1), but does not
write the LSTM's equations. :class:`SpikingLSTM` computes, at each of the T
steps of a run, from :math:`c_0 = 0` and :math:`h_0 = 0`:

.. math::

    z_t = W_x s_t + W_h h_{t-1} + b \quad (4 d_h \text{ rows: } i, f, g, o), \qquad
    i_t, f_t, o_t = \sigma(z_i), \sigma(z_f), \sigma(z_o), \qquad g_t = \tanh(z_g),

    c_t = f_t \odot c_{t-1} + i_t \odot g_t, \qquad
    h_t = H(o_t \odot \tanh(c_t) - \theta),

with :math:`H` the engines' threshold rule (a spike where the value reaches
:math:`\theta`) forward and a surrogate gradient backward
(:mod:`evsnn.training.surrogate`). The input :math:`s_t` and the recurrent
state :math:`h_t` are spikes (0 or 1), so both products are accumulations of
weight columns; :math:`c_t` and the gates are analog.

What the seed leaves open and evsnn chose: the gates and the cell of the
standard LSTM with a forget gate (PyTorch's ``nn.LSTMCell``, gate order i, f,
g, o, initialised as it does: uniform in :math:`\pm 1/\sqrt{d_h}`, seeded); a
spike as the step of the LSTM's usual output :math:`o \odot \tanh(c)` at a
threshold :math:`\theta` (default 0.5; the output lies in (-1, 1)); no reset
at a spike (the spike reads the cell, the forget gate is what discards it);
one bias per gate (PyTorch keeps two, ``b_ih`` and ``b_hh``, whose sum is
this one); the recurrence runs over the T simulation steps, the seed's
latency.

The layer has no equivalent in evsnn's IR (populations of neurons joined by
linear projections): its gates multiply state by state and pass it through
sigmoids. Converting a network that contains it raises a
:class:`~evsnn.ConversionError` (:attr:`SpikingLSTM.ir_refusal`); such a
network is evaluated in torch, :func:`lstm_ops` counts its operations per step and
:func:`lstm_accumulates` the adds of weights a run's spikes need.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..checks import check_shape
from ..engines.neurons import NeuronParams, initial_state, neuron_step
from ..model import NeuronSpec, Population
from .surrogate import Surrogate, surrogate as make_surrogate

__all__ = ["SpikingLSTM", "SpikingLSTMClassifier", "lstm_ops", "lstm_accumulates"]


class _ThresholdRule(NamedTuple):
    """What a surrogate reads of a population (:meth:`Surrogate.__call__`): its threshold and whether it is
    strict."""

    threshold: float
    strict: bool = False


def _positive_int(value: object, *, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}.")
    return int(value)


class SpikingLSTM(nn.Module):
    """The spiking LSTM-style layer of the module docstring: spikes (steps, batch, ``in_features``) in, spikes
    (steps, batch, ``hidden``) out.

    Parameters
    ----------
    in_features, hidden : int
        :math:`d_x` and :math:`d_h`.
    threshold : float in (0, 1), default=0.5
        :math:`\\theta` of the output spikes.
    spike_fn : str or Surrogate, default="arctan"
        The surrogate (:func:`evsnn.training.surrogate`).
    seed : int
        Seeds the initial weights.
    """

    #: Why :func:`evsnn.convert` refuses a network containing this layer (read by the torch importer).
    ir_refusal = ("its gates multiply analog state by analog state (f⊙c, i⊙g, o⊙tanh(c)) and pass it through "
                  "sigmoid and tanh, and evsnn's IR has only spiking neurons joined by linear projections, so the "
                  "layer has no exact equivalent there and evsnn does not approximate it. Evaluate the network in "
                  "torch (its own forward pass); evsnn.training.recurrent.lstm_ops counts its operations.")

    def __init__(self, in_features: int, hidden: int, *, threshold: float = 0.5,
                 spike_fn: str | Surrogate = "arctan", seed: int = 0):
        super().__init__()
        self.in_features = _positive_int(in_features, where="SpikingLSTM", name="in_features")
        self.hidden = _positive_int(hidden, where="SpikingLSTM", name="hidden")
        if not isinstance(threshold, (int, float, np.floating)) or not 0 < threshold < 1:
            raise ValueError(f"SpikingLSTM: threshold must be a number in (0, 1) (the output o⊙tanh(c) lies in "
                             f"(-1, 1)), got {threshold!r}.")
        self.rule = _ThresholdRule(float(threshold))
        self.spike_fn = make_surrogate(spike_fn)
        generator = torch.Generator().manual_seed(seed)
        self.weight_x, self.weight_h, self.bias = (  # nn.LSTMCell's initialisation: uniform in ±1/sqrt(d_h)
            nn.Parameter((torch.rand(*shape, generator=generator) * 2 - 1) / np.sqrt(self.hidden))
            for shape in ((4 * self.hidden, self.in_features), (4 * self.hidden, self.hidden), (4 * self.hidden,)))

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        """The output spikes of a run on input spikes (steps, batch, ``in_features``)."""
        if spikes.dim() != 3 or spikes.shape[2] != self.in_features:
            raise ValueError(f"SpikingLSTM: input must have shape (steps, batch, {self.in_features}), got "
                             f"{tuple(spikes.shape)}.")
        if torch.any((spikes != 0) & (spikes != 1)):
            raise ValueError("SpikingLSTM: input must be spikes (every value 0 or 1); an analog input needs a "
                             "spiking layer before this one (e.g. SpikingLSTMClassifier's encoder).")
        steps, batch, _ = spikes.shape
        driven = spikes.to(self.weight_x.dtype) @ self.weight_x.T + self.bias  # W_x s_t + b, every step at once
        h = driven.new_zeros(batch, self.hidden)
        c = driven.new_zeros(batch, self.hidden)
        out = []
        for t in range(steps):
            z = driven[t] + h @ self.weight_h.T
            i, f, g, o = z.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = self.spike_fn(torch.sigmoid(o) * torch.tanh(c), self.rule)
            out.append(h)
        return torch.stack(out)

    def ops(self) -> dict[str, int]:
        """:func:`lstm_ops` of this layer."""
        return lstm_ops(self.in_features, self.hidden)


def lstm_accumulates(hidden: int, input_spikes: torch.Tensor, output_spikes: torch.Tensor) -> torch.Tensor:
    """Adds of weights a run of a :class:`SpikingLSTM` of ``hidden`` units needs per sample, event-driven: each
    input spike adds its column of :math:`W_x` (``4 hidden`` weights) at its step, each output spike its column of
    :math:`W_h` at the next step (those of the last step go nowhere). ``input_spikes``, ``output_spikes``: spikes
    per step and sample, (steps, batch). The dense count, ``steps * lstm_ops(...)["mac"]``, bounds it."""
    hidden = _positive_int(hidden, where="lstm_accumulates", name="hidden")
    if input_spikes.dim() != 2 or input_spikes.shape != output_spikes.shape:
        raise ValueError(f"lstm_accumulates: input_spikes and output_spikes must both have shape (steps, batch), "
                         f"got {tuple(input_spikes.shape)} and {tuple(output_spikes.shape)}.")
    return 4 * hidden * (input_spikes.sum(dim=0) + output_spikes[:-1].sum(dim=0))


def lstm_ops(in_features: int, hidden: int) -> dict[str, int]:
    r"""Every operation of one step of :class:`SpikingLSTM` for one sample, by kind, from its equations.

    With :math:`d_x` = ``in_features`` and :math:`d_h` = ``hidden``:

    - ``mac``: :math:`4 d_h (d_x + d_h)`, the products :math:`W_x s_t` and :math:`W_h h_{t-1}` (one
      multiply-accumulate per weight, the sum of the two products included: evsnn's convention, a MAC is one
      operation; eq. 1 counts two). With spiking input each is an add of a weight where its input spiked,
      so a run needs at most this many adds;
    - ``bias_add``: :math:`4 d_h`;
    - ``sigmoid``: :math:`3 d_h` (i, f, o); ``tanh``: :math:`2 d_h` (g, and c for the output);
    - ``mul``: :math:`3 d_h` (:math:`f \odot c`, :math:`i \odot g`, :math:`o \odot \tanh c`); ``add``:
      :math:`d_h` (the two terms of :math:`c_t`);
    - ``compare``: :math:`d_h` (the threshold of the output spikes).
    """
    d_x = _positive_int(in_features, where="lstm_ops", name="in_features")
    d_h = _positive_int(hidden, where="lstm_ops", name="hidden")
    return {"mac": 4 * d_h * (d_x + d_h), "bias_add": 4 * d_h, "sigmoid": 3 * d_h, "tanh": 2 * d_h,
            "mul": 3 * d_h, "add": d_h, "compare": d_h}


class SpikingLSTMClassifier(nn.Module):
    """An image classifier around :class:`SpikingLSTM`, run for ``steps`` steps: a dense layer of IF neurons
    reads the analog image at every step (the engines' IF step, :func:`~evsnn.engines.neurons.neuron_step`,
    threshold 1, reset by subtraction), its spikes drive the LSTM layer, and a linear read-out of the LSTM's
    spike counts gives the logits.

    Parameters
    ----------
    input_shape : tuple of int
        Of one sample, e.g. (1, 28, 28).
    steps : int
        T, the steps of a run.
    encoder, hidden, classes : int
        IF neurons, LSTM units (:math:`d_x`, :math:`d_h` of the LSTM layer) and classes.
    threshold, spike_fn : :class:`SpikingLSTM`'s (``spike_fn`` also trains the IF layer).
    seed : int
        Seeds every initial weight.
    """

    def __init__(self, input_shape: tuple[int, ...], *, steps: int, encoder: int = 128, hidden: int = 128,
                 classes: int = 10, threshold: float = 0.5, spike_fn: str | Surrogate = "arctan", seed: int = 0):
        super().__init__()
        self.steps = _positive_int(steps, where="SpikingLSTMClassifier", name="steps")
        self.input_shape = check_shape(input_shape, where="SpikingLSTMClassifier", name="input_shape")
        encoder = _positive_int(encoder, where="SpikingLSTMClassifier", name="encoder")
        hidden = _positive_int(hidden, where="SpikingLSTMClassifier", name="hidden")
        classes = _positive_int(classes, where="SpikingLSTMClassifier", name="classes")
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.encoder = nn.Linear(int(np.prod(self.input_shape)), encoder)
            self.readout = nn.Linear(hidden, classes)
        self.lstm = SpikingLSTM(encoder, hidden, threshold=threshold, spike_fn=spike_fn, seed=seed + 1)
        self.if_params = NeuronParams.from_population(Population("encoder", (encoder,), NeuronSpec("if")),
                                                      np.dtype("float32"), engine="torch", dt=1e-3)
        self.rates: dict[str, float] = {}
        self.spikes: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch ``x`` (N, *input_shape). ``rates`` holds the layers' spikes per neuron per step,
        ``spikes`` their spikes per step and sample, (steps, N), of this batch."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"SpikingLSTMClassifier: input must have shape (N, {', '.join(map(str, self.input_shape))}"
                             f"), got {tuple(x.shape)}.")
        n = x.shape[0]
        current = self.encoder(x.reshape(n, -1))  # the analog image's product, the same at every step
        params = self.if_params.to_torch(current.device)
        state = initial_state(params, n, current.shape[1], np.dtype("float32"))
        encoded = []
        for _ in range(self.steps):
            spiked, state = neuron_step(state, current, params, spike_fn=self.lstm.spike_fn)
            encoded.append(spiked)
        encoded = torch.stack(encoded)
        hidden = self.lstm(encoded)
        with torch.no_grad():
            self.rates = {"encoder": float(encoded.mean()), "lstm": float(hidden.mean())}
            self.spikes = {"encoder": encoded.sum(dim=2), "lstm": hidden.sum(dim=2)}
        return self.readout(hidden.sum(dim=0))
