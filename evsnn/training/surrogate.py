r"""Spike functions with surrogate gradients: the Heaviside step forward, a smooth pseudo-derivative backward.

A surrogate is the ``spike_fn`` of :func:`evsnn.engines.neurons.neuron_step`:
``spike_fn(v, params)`` returns the spikes as 0 and 1 in ``v``'s dtype,
exactly where the engines' threshold rule fires (``v >= θ``, or ``v > θ`` for a
strict threshold), so a network trained with it computes in its forward pass
what the engines compute. Backward, the derivative of the step is replaced by
:math:`\rho(u)` of :math:`u = v - \theta`:

- ``slayer`` (SLAYER, Shrestha & Orchard 2018; seed 003 eq. 10):
  :math:`\rho(u) = \frac{1}{\alpha} e^{-\beta |u|}`, with seed 003's Table 1
  values :math:`\alpha = \beta = 10` as defaults (there with :math:`\theta =
  10`);
- ``fast_sigmoid`` (SuperSpike, Zenke & Ganguli 2018; snnTorch's default):
  :math:`\rho(u) = 1 / (1 + k|u|)^2`, :math:`k` = ``slope`` (default 25);
- ``arctan`` (SpikingJelly's ``ATan``): :math:`\rho(u) = \frac{a/2}{1 + (\frac{\pi}{2} a u)^2}`,
  :math:`a` = ``alpha`` (default 2).

The gradient reaches the threshold too (with the opposite sign), where the
threshold is a trainable tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

__all__ = ["Surrogate", "SURROGATES", "surrogate"]


def _slayer(u: torch.Tensor, alpha: float = 10.0, beta: float = 10.0) -> torch.Tensor:
    return torch.exp(-beta * u.abs()) / alpha


def _fast_sigmoid(u: torch.Tensor, slope: float = 25.0) -> torch.Tensor:
    return 1.0 / (1.0 + slope * u.abs()) ** 2


def _arctan(u: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * u) ** 2)


#: The pseudo-derivatives by name, each a function of ``u = v - θ`` and its keyword parameters.
SURROGATES: dict[str, Callable[..., torch.Tensor]] = {"slayer": _slayer, "fast_sigmoid": _fast_sigmoid,
                                                      "arctan": _arctan}


class _Spike(torch.autograd.Function):
    """Heaviside forward (the engines' comparison, not a subtraction), the surrogate backward."""

    @staticmethod
    def forward(ctx, v, threshold, strict, derivative):
        ctx.save_for_backward(v, threshold)
        ctx.derivative = derivative
        return (v > threshold if strict else v >= threshold).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        v, threshold = ctx.saved_tensors
        g = grad * ctx.derivative(v - threshold)
        g_threshold = None
        if ctx.needs_input_grad[1]:  # summed over what broadcasting repeated
            g_threshold = -g.sum_to_size(threshold.shape) if threshold.dim() else -g.sum()
        return g, g_threshold, None, None


@dataclass(frozen=True)
class Surrogate:
    """A spike function for :func:`~evsnn.engines.neurons.neuron_step`: the step forward, ``SURROGATES[name]``
    (with ``params``) backward."""

    name: str
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in SURROGATES:
            raise ValueError(f"Surrogate: name must be one of {', '.join(map(repr, SURROGATES))}, got {self.name!r}.")

    def derivative(self, u: torch.Tensor) -> torch.Tensor:
        """The pseudo-derivative at ``u = v - θ``."""
        return SURROGATES[self.name](u, **self.params)

    def __call__(self, v: torch.Tensor, p) -> torch.Tensor:
        threshold = torch.as_tensor(p.threshold, dtype=v.dtype, device=v.device)
        return _Spike.apply(v, threshold, p.strict, self.derivative)


def surrogate(spec: str | Surrogate, **params) -> Surrogate:
    """A :class:`Surrogate` from a name (``"slayer"``, ``"fast_sigmoid"``, ``"arctan"``) and its parameters, or
    one given."""
    return spec if isinstance(spec, Surrogate) else Surrogate(str(spec), dict(params))
