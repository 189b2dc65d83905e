r"""L4-norm weight adjustment of converted layers (Allred & Roy, arXiv 2111.09446).

A spiking neuron's membrane potential fluctuates around its mean with a
standard deviation that grows with the L4 norm of its weights (the variance is
a sum of :math:`w^2`-weighted input variances, so its square root scales like
:math:`\lVert w \rVert_4^2`, see the paper's Sec. 3). Neurons with peaky
weight vectors therefore cross threshold more often than their mean input
predicts. The adjustment moves each neuron's effective threshold by its L4 norm
relative to the layer, and applies it as a weight scale so that the layer keeps
one threshold.

The paper's equations were lost in the extraction of the seed text; this is
the reconstruction of its Sec. 4 given in evsnn's issue 5. For neuron ``i`` of
a layer with threshold :math:`\theta` (a convolution's "neuron" is an output
channel, its weights the whole kernel):

.. math::

    \ell_i = \lVert w_i \rVert_4,\quad \bar\ell = \operatorname{mean}_i \ell_i,\quad
    \tilde\ell_i = \frac{\ell_i + \alpha \bar\ell}{1 + \alpha},\quad
    \theta'_i = \mu_i + (\theta - \mu_i)\,\frac{\tilde\ell_i}{\bar\ell},\quad
    s_i = \frac{\theta}{\theta'_i},\quad \tilde s_i = \frac{s_i + \alpha}{1 + \alpha}

with :math:`\mu_i` the mean pre-activation (input current per step) of neuron
``i`` on one calibration batch, averaged over positions for a convolution.
The weights and bias of neuron ``i`` are multiplied by :math:`\tilde s_i`
(equivalent to a threshold :math:`\theta / \tilde s_i`; the paper scales
"the weights", and the networks it converts have no bias). Where
:math:`\theta'_i \le 0` or is not finite, the neuron is left unscaled
(:math:`\tilde s_i = 1`) and counted. Finally, as the paper's Sec. 4.2 says,
the whole layer is rescaled so that its mean absolute weight is unchanged
(``rescale=True``; the issue's reconstruction leaves this step out, so it can
be switched off).
"""

from __future__ import annotations

import dataclasses
from numbers import Real

import numpy as np

from ..errors import ConversionError
from ..model import INPUT, SpikingModel
from ..ops import Conv2d, Sparse
from ..settings import check_samples
from .normalize import activations, scale_op

__all__ = ["l4_adjust", "LAYERS"]

#: Which populations :func:`l4_adjust` adjusts.
LAYERS = ("first", "all")


def l4_adjust(model: SpikingModel, x: np.ndarray, *, alpha: float = 1.0, layers: str = "first",
              rescale: bool = True) -> tuple[SpikingModel, dict]:
    r"""Apply the L4-norm adjustment to the first population (or to every population).

    Parameters
    ----------
    model : SpikingModel
        A converted (normally already weight-normalized) model with one scalar
        threshold per population and one projection into each adjusted population.
    x : array, shape (N, *input.shape)
        One calibration batch (training images), for the mean pre-activations.
    alpha : float >= 0, default=1
        Smoothing ratio :math:`\alpha`: 0 applies the full correction, larger
        values pull every neuron towards the layer mean (no change as
        :math:`\alpha \to \infty`).
    layers : {"first", "all"}, default="first"
        ``"all"`` adjusts the populations in order, each one's :math:`\mu` measured
        on the rate model of the already adjusted ones before it.
    rescale : bool, default=True
        Restore each adjusted layer's mean absolute weight afterwards (paper, Sec. 4.2).

    Returns
    -------
    model : SpikingModel
    info : dict
        Per adjusted population: ``l4_norm`` (:math:`\ell_i`), ``mean_preactivation``
        (:math:`\mu_i`), ``scale`` (:math:`\tilde s_i`, before the layer rescale),
        ``skipped`` (neurons left unscaled by the guard), ``rescale_factor``; and
        ``alpha``, ``layers``, ``rescale``, ``calibration_size``. Ready for provenance.

    Raises
    ------
    ConversionError
        For a bad ``alpha`` or ``layers``, a population with several input
        projections or per-neuron thresholds.
    InputError
        For bad calibration samples.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not (0 <= alpha < np.inf):
        raise ConversionError(f"l4_adjust: alpha must be a finite number >= 0, got {alpha!r}.")
    if layers not in LAYERS:
        raise ConversionError(f"l4_adjust: layers must be one of {', '.join(map(repr, LAYERS))}, got {layers!r}.")
    x = check_samples(x, model, where="l4_adjust", name="calibration samples")
    targets = [model.populations[0].name] if layers == "first" else [p.name for p in model.populations]
    if model.readout == "membrane" and model.output in targets and len(targets) > 1:
        targets.remove(model.output)  # a non-spiking readout has no threshold to balance
    info: dict = {"alpha": float(alpha), "layers": layers, "rescale": bool(rescale), "calibration_size": x.shape[0],
                  "populations": {}}
    for name in targets:
        model, info["populations"][name] = _adjust_population(model, name, x, float(alpha), rescale)
    return model, info


def _adjust_population(model: SpikingModel, name: str, x: np.ndarray, alpha: float,
                       rescale: bool) -> tuple[SpikingModel, dict]:
    where = f"l4_adjust: population {name!r}"
    incoming = model.projections_into(name)
    if len(incoming) != 1:
        raise ConversionError(f"{where}: must have exactly one input projection, got {len(incoming)} "
                              f"({', '.join(pr.name for pr in incoming)}). Adjust only the first layer "
                              "(layers='first') of a network with residual connections.")
    pr, pop = incoming[0], model.population(name)
    theta = pop.neuron.threshold
    if isinstance(theta, np.ndarray):
        raise ConversionError(f"{where}: threshold must be one number per layer, got per-neuron thresholds.")
    op = pr.op
    groups = _groups(op)  # output unit -> neuron group (row, or channel of a convolution)
    n_groups = int(groups.max()) + 1
    w = op.weights.astype(np.float64)
    per_weight_group = (np.repeat(groups, np.diff(op.indptr)) if isinstance(op, Sparse)
                        else np.repeat(np.arange(n_groups), w.size // n_groups))
    l4 = np.bincount(per_weight_group, weights=w.ravel() ** 4, minlength=n_groups) ** 0.25
    source = x.reshape(x.shape[0], -1) if pr.source == INPUT else activations(model, x)[pr.source]
    pre = op.forward(source)
    if pop.bias is not None:
        pre = pre + pop.bias.reshape(-1)
    mu = np.bincount(groups, weights=pre.mean(axis=0), minlength=n_groups) / np.bincount(groups, minlength=n_groups)

    l4_mean = float(l4.mean())
    if not l4_mean > 0:
        raise ConversionError(f"{where}: its weights are all zero; there is nothing to adjust.")
    smoothed = (l4 + alpha * l4_mean) / (1 + alpha)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        theta_new = mu + (theta - mu) * smoothed / l4_mean
        s = theta / theta_new
    bad = ~(np.isfinite(theta_new) & (theta_new > 0) & np.isfinite(s))
    s_smooth = np.where(bad, 1.0, (s + alpha) / (1 + alpha))
    new_op = scale_op(op, s_smooth if not isinstance(op, Sparse) else s_smooth[groups])
    factor = 1.0
    if rescale:
        new_mean = float(np.abs(new_op.weights.astype(np.float64)).mean())
        factor = float(np.abs(w).mean()) / new_mean if new_mean > 0 else 1.0
        new_op = scale_op(new_op, factor)
    bias = pop.bias
    if bias is not None:
        b = bias.astype(np.float64).reshape(-1) * s_smooth[groups] * factor
        bias = b.reshape(bias.shape).astype(bias.dtype)
    model = model.replace(
        populations=[dataclasses.replace(p, bias=bias) if p.name == name else p for p in model.populations],
        projections=[dataclasses.replace(q, op=new_op) if q.name == pr.name else q for q in model.projections],
    )
    return model, {"l4_norm": l4, "mean_preactivation": mu, "scale": s_smooth, "skipped": int(bad.sum()),
                   "rescale_factor": factor}


def _groups(op) -> np.ndarray:
    """For each output unit of ``op`` (flat, C-order), the neuron group it belongs to."""
    if isinstance(op, Conv2d):
        c, h, w = op.out_shape
        return np.repeat(np.arange(c), h * w)
    return np.arange(op.n_out)
