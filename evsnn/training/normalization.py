r"""Normalization for directly trained spiking networks: seed 003's PSP normalization and BN (tdBN, BNTT) of the
membrane input.

They compute their statistics over a layer's whole run (all ``T`` steps;
BNTT over each step's inputs), so :class:`~evsnn.training.SpikingNetwork`
runs a normalized network one population at a time (:meth:`~evsnn.engines.timestep.TimestepNetwork.run_layerwise`).
Statistics are per *channel*: the first axis of a ``(C, H, W)`` population,
each neuron of a flat one.

**PSP normalization** (Ikegawa et al., seed 003, eqs. 19-20) divides the
postsynaptic potential :math:`a = \varepsilon * s` of the spikes entering a
projection by the square root of its second raw moment plus :math:`\lambda`
(no mean subtracted, no affine parameters: eq. 17 merges :math:`\gamma` into
the weights):

.. math:: \hat a = a / \sqrt{\mathbb{E}_X[a^2] + \lambda}

PSP-BN takes :math:`\mathbb{E}` over ``X = W x H x N x T`` per channel
(running estimates for inference, as BN keeps them); PSP-LN over ``X = W x H
x C x T`` per sample. As the divisor is constant over the run,
:math:`W \hat a = \varepsilon * (W s / \sqrt{\cdot})`: scaling the *spikes*
by it before the product is exact, which is how the engines' SRM neurons
(that filter their summed input with :math:`\varepsilon`) apply it, and how
PSP-BN's inference statistics fold into the weights (eq. 17). PSP-LN's
divisor depends on the whole sample, future steps included: it is not
causal and cannot be exported.

**BN** (the baseline seed 003 compares against, "BN as is" applied to the
membrane input): the summed synaptic input of a population is normalized
with its mean and variance per channel over ``W x H x N x T`` and given an
affine :math:`\gamma, \beta`; inference statistics fold into the incoming
weights (:math:`\gamma / \sigma` per output channel) and the bias
(:math:`\beta - \gamma \mu / \sigma`).

**tdBN** (Zheng et al. 2021) is this BN with the normalized value scaled by
:math:`\alpha V_{th}` before the affine, :math:`\gamma (\alpha V_{th} \hat x)
+ \beta`: the same function of a trainable :math:`\gamma' = \gamma \alpha
V_{th}`, so it is BN with :math:`\gamma` initialised to :math:`\alpha \theta`,
and folds as BN does (the optimizer steps :math:`\gamma'` where the paper's
steps :math:`\gamma`: the same at :math:`\alpha \theta = 1`).

**BNTT** (Kim & Panda 2021) keeps statistics, running statistics and
:math:`\gamma` per time step (statistics per channel over ``W x H x N`` at
each step) and has no :math:`\beta` (its code sets BatchNorm's bias to
None; its eps is 1e-4). Its per-step gains have no equivalent in the IR's
time-invariant weights, and it is defined for its training run's number of
steps only.

All three are :class:`InputBatchNorm` (:func:`input_norm` configures it).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..model import Population

__all__ = ["NORMS", "INPUT_NORMS", "channels_of", "PSPNorm", "InputBatchNorm", "input_norm"]

#: The normalizations :class:`~evsnn.training.SpikingNetwork` offers (``norm=``).
NORMS = ("psp-bn", "psp-ln", "bn", "tdbn", "bntt")
#: Those that normalize a population's summed synaptic input (:class:`InputBatchNorm`).
INPUT_NORMS = ("bn", "tdbn", "bntt")


def channels_of(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(channels, positions per channel)`` of a population or input shape: ``(C, H*W)`` for ``(C, H, W)``, one
    channel per neuron otherwise (a flat layer's statistics are per neuron, as BatchNorm1d's)."""
    if len(shape) == 3:
        return shape[0], shape[1] * shape[2]
    return math.prod(shape), 1


class PSPNorm(nn.Module):
    """The divisor of seed 003's PSP normalization for one projection, as a factor on its input spikes.

    Parameters
    ----------
    shape : tuple
        The source's shape (its channels: :func:`channels_of`).
    over : "batch" or "layer"
        PSP-BN or PSP-LN.
    lam : float
        :math:`\\lambda` of eq. 19.
    momentum : float
        Of PSP-BN's running second moment (``running = (1 - m) running + m batch``, as torch's BatchNorm).
    """

    def __init__(self, shape: tuple[int, ...], *, over: str, lam: float, momentum: float):
        super().__init__()
        if over not in ("batch", "layer"):
            raise ValueError(f"PSPNorm: over must be 'batch' or 'layer', got {over!r}.")
        if not lam > 0:
            raise ValueError(f"PSPNorm: lam must be positive, got {lam!r}.")
        self.channels, self.positions = channels_of(shape)
        self.over, self.lam, self.momentum = over, float(lam), float(momentum)
        if over == "batch":
            self.register_buffer("running_moment", torch.ones(self.channels, dtype=torch.float64))

    def forward(self, psp: torch.Tensor) -> torch.Tensor:
        """The factor :math:`1 / \\sqrt{E[a^2] + \\lambda}` for a PSP ``psp`` (steps, batch, n): shape (n,) for
        PSP-BN, (1, batch, 1) for PSP-LN. PSP-BN uses the batch's moment in training (and updates the running
        one), the running moment in eval mode."""
        steps, batch, _ = psp.shape
        if self.over == "layer":
            moment = psp.pow(2).mean(dim=(0, 2))
            return torch.rsqrt(moment + self.lam).reshape(1, batch, 1)
        if self.training:
            moment = psp.pow(2).reshape(steps, batch, self.channels, self.positions).mean(dim=(0, 1, 3))
            with torch.no_grad():
                self.running_moment.mul_(1 - self.momentum).add_(self.momentum * moment.detach().double())
        else:
            moment = self.running_moment.to(psp.dtype)
        return torch.rsqrt(moment + self.lam).repeat_interleave(self.positions)

    def fold_factor(self) -> torch.Tensor:
        """PSP-BN's inference factor per input neuron (float64), the column scale eq. 17 folds into the weights."""
        if self.over != "batch":
            raise ValueError("PSPNorm.fold_factor: PSP-LN has no inference statistics to fold.")
        return torch.rsqrt(self.running_moment + self.lam).repeat_interleave(self.positions)


class InputBatchNorm(nn.Module):
    """Batch normalization of a population's summed synaptic input per channel, with a trainable :math:`\\gamma`
    (and :math:`\\beta`): the membrane-potential BN baseline of seed 003's Table 2, tdBN, and BNTT.

    Parameters
    ----------
    shape : tuple
        The population's shape.
    eps, momentum : float
        As torch's BatchNorm (the running variance is the biased one, as used in the normalization).
    gamma : float or array, default=1.0
        The initial :math:`\\gamma`, one value or one per channel (tdBN: :math:`\\alpha \\theta`).
    steps : int, optional
        None: statistics over (W, H, N, T), one :math:`\\gamma` and :math:`\\beta` per channel (BN, tdBN). An
        integer: BNTT, for runs of exactly ``steps`` steps: statistics over (W, H, N) and :math:`\\gamma` per step
        and channel, running statistics per step, no :math:`\\beta`.
    """

    def __init__(self, shape: tuple[int, ...], *, eps: float = 1e-5, momentum: float = 0.1,
                 gamma: float | np.ndarray = 1.0, steps: int | None = None):
        super().__init__()
        self.channels, self.positions = channels_of(shape)
        self.eps, self.momentum, self.steps = float(eps), float(momentum), steps
        stats = (self.channels,) if steps is None else (steps, self.channels)
        initial = np.broadcast_to(np.asarray(gamma, dtype=np.float32), (self.channels,))
        self.gamma = nn.Parameter(torch.tensor(np.broadcast_to(initial, stats)))
        self.beta = nn.Parameter(torch.zeros(self.channels)) if steps is None else None
        self.register_buffer("running_mean", torch.zeros(stats, dtype=torch.float64))
        self.register_buffer("running_var", torch.ones(stats, dtype=torch.float64))

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """``current`` (steps, batch, n) normalized."""
        steps, batch, n = current.shape
        if self.steps is not None and steps != self.steps:
            raise ValueError(f"InputBatchNorm: BNTT has statistics and gains for each of its {self.steps} steps; "
                             f"this run has {steps} steps. Run the network for {self.steps} steps, or train it "
                             f"for {steps}.")
        x = current.reshape(steps, batch, self.channels, self.positions)
        axes = (0, 1, 3) if self.steps is None else (1, 3)
        per_channel = (-1, 1, self.channels, 1)  # (C,) or (T, C) against x's (T, N, C, H*W)
        if self.training:
            mean = x.mean(dim=axes)
            var = (x - mean.reshape(per_channel)).pow(2).mean(dim=axes)
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach().double())
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var.detach().double())
        else:
            mean, var = self.running_mean.to(current.dtype), self.running_var.to(current.dtype)
        gain = self.gamma.to(current.dtype) * torch.rsqrt(var + self.eps)
        shift = -gain * mean if self.beta is None else self.beta.to(current.dtype) - gain * mean
        return (x * gain.reshape(per_channel) + shift.reshape(per_channel)).reshape(steps, batch, n)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Say, beside torch's size mismatch, that a BNTT state is for another number of steps."""
        gamma = state_dict.get(prefix + "gamma")
        if self.steps is not None and gamma is not None and gamma.ndim == 2 and len(gamma) != self.steps:
            error_msgs.append(f"{prefix}gamma: BNTT's gains and statistics are per step; the state is for "
                              f"{len(gamma)} steps, this network runs {self.steps}: build it with "
                              f"steps={len(gamma)}.")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The inference transform ``gain * current + shift`` per neuron (float64): ``gain`` scales the incoming
        weights' rows, ``shift`` adds to the bias. BN and tdBN only (BNTT's transform changes with the step)."""
        if self.steps is not None:
            raise ValueError("InputBatchNorm.fold: BNTT's gain and shift differ per step; no weights express them.")
        with torch.no_grad():
            gain = self.gamma.double() * torch.rsqrt(self.running_var + self.eps)
            shift = self.beta.double() - gain * self.running_mean
        return gain.repeat_interleave(self.positions), shift.repeat_interleave(self.positions)


def input_norm(norm: str, population: Population, *, steps: int, alpha: float, momentum: float) -> InputBatchNorm:
    """The :class:`InputBatchNorm` of ``norm`` ("bn", "tdbn" or "bntt") for ``population``'s input, in a network
    run for ``steps`` steps. tdBN's initial :math:`\\gamma` is ``alpha`` times the population's threshold (one per
    channel: a per-neuron threshold must be constant within each channel); BNTT takes its code's eps, 1e-4."""
    if norm == "bn":
        return InputBatchNorm(population.shape, momentum=momentum)
    if norm == "bntt":
        return InputBatchNorm(population.shape, eps=1e-4, momentum=momentum, steps=steps)
    if norm != "tdbn":
        raise ValueError(f"input_norm: norm must be one of {', '.join(map(repr, INPUT_NORMS))}, got {norm!r}.")
    if not alpha > 0:
        raise ValueError(f"input_norm: tdBN's alpha must be positive, got {alpha!r}.")
    channels, positions = channels_of(population.shape)
    theta = np.broadcast_to(np.asarray(population.neuron.threshold, dtype=np.float64),
                            population.shape).reshape(channels, positions)
    if not (theta == theta[:, :1]).all():
        raise ValueError(f"input_norm: tdBN scales each channel by alpha times its threshold, but population "
                         f"{population.name!r} has different thresholds within a channel.")
    return InputBatchNorm(population.shape, momentum=momentum, gamma=alpha * theta[:, 0])
