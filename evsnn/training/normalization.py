r"""Normalization for directly trained spiking networks: seed 003's PSP normalization and BN on the membrane input.

Both compute their statistics over a layer's whole run (all ``T`` steps), so
:class:`~evsnn.training.SpikingNetwork` runs a normalized network one
population at a time (:meth:`~evsnn.engines.timestep.TimestepNetwork.run_layerwise`).
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
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["NORMS", "channels_of", "PSPNorm", "InputBatchNorm"]

#: The normalizations :class:`~evsnn.training.SpikingNetwork` offers (``norm=``).
NORMS = ("psp-bn", "psp-ln", "bn")


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
    """Batch normalization of a population's summed synaptic input over (W, H, N, T) per channel, with an affine
    :math:`\\gamma, \\beta`: the membrane-potential BN baseline of seed 003's Table 2.

    Parameters
    ----------
    shape : tuple
        The population's shape.
    eps, momentum : float
        As torch's BatchNorm (the running variance is the biased one, as used in the normalization).
    """

    def __init__(self, shape: tuple[int, ...], *, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.channels, self.positions = channels_of(shape)
        self.eps, self.momentum = float(eps), float(momentum)
        self.gamma = nn.Parameter(torch.ones(self.channels))
        self.beta = nn.Parameter(torch.zeros(self.channels))
        self.register_buffer("running_mean", torch.zeros(self.channels, dtype=torch.float64))
        self.register_buffer("running_var", torch.ones(self.channels, dtype=torch.float64))

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """``current`` (steps, batch, n) normalized."""
        steps, batch, n = current.shape
        x = current.reshape(steps, batch, self.channels, self.positions)
        if self.training:
            mean = x.mean(dim=(0, 1, 3))
            var = (x - mean[:, None]).pow(2).mean(dim=(0, 1, 3))
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach().double())
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var.detach().double())
        else:
            mean, var = self.running_mean.to(current.dtype), self.running_var.to(current.dtype)
        gain = self.gamma.to(current.dtype) * torch.rsqrt(var + self.eps)
        shift = self.beta.to(current.dtype) - gain * mean
        return (x * gain[:, None] + shift[:, None]).reshape(steps, batch, n)

    def fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The inference transform ``gain * current + shift`` per neuron (float64): ``gain`` scales the incoming
        weights' rows, ``shift`` adds to the bias."""
        with torch.no_grad():
            gain = self.gamma.double() * torch.rsqrt(self.running_var + self.eps)
            shift = self.beta.double() - gain * self.running_mean
        return gain.repeat_interleave(self.positions), shift.repeat_interleave(self.positions)
