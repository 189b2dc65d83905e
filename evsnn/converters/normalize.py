r"""Weight normalization: rescale a converted model so that rates fit in one spike per step.

A converted IF neuron with threshold 1 fires at a rate equal to its ANN
activation only while that activation stays at or below 1 (one spike per
step). Each method divides a population's input weights and bias by a
positive factor, which a ReLU network passes through unchanged up to scaling:

- :func:`model_based` -- Diehl et al. (2015), Algorithm 1: the largest
  possible positive input of any neuron, from the weights alone;
- :func:`data_based` -- Diehl et al. (2015), Algorithm 2: the largest
  activation (or weight) seen on calibration data, chained across layers;
- :func:`percentile_based` -- Rueckauer et al. (2017): the p-th percentile of
  the non-zero activations, chained likewise, robust to outliers.

With :math:`\lambda_l` the factor of population ``l`` (:math:`\lambda = 1` for
the input), the chained methods set :math:`W_{k \to l} \leftarrow W_{k \to l}
\lambda_k / \lambda_l` for every projection into ``l`` (a residual population
has several) and :math:`b_l \leftarrow b_l / \lambda_l`, so that population
``l`` outputs :math:`a_l / \lambda_l`. Models are never modified: new ones
are returned. The functions expect an unnormalized import (thresholds 1,
``current`` input of scale 1), as :func:`evsnn.converters.convert` gives them.

References
----------
P. U. Diehl et al., "Fast-classifying, high-accuracy spiking deep networks through
weight and threshold balancing", IJCNN 2015.
B. Rueckauer et al., "Conversion of continuous-valued deep networks to efficient
event-driven networks for image classification", Front. Neurosci. 11:682, 2017.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from numbers import Real

import numpy as np

from ..errors import ConversionError
from ..model import INPUT, SpikingModel
from ..ops import Operator, Sparse
from ..settings import check_samples

__all__ = ["activations", "model_based", "data_based", "percentile_based", "rescale", "scale_op"]

_CHUNK = 256  # calibration samples per forward pass


def activations(model: SpikingModel, x: np.ndarray) -> dict[str, np.ndarray]:
    """The rate model's activations of every population on checked input ``x``, in chunks of samples.

    :meth:`SpikingModel.ann_forward` in float64, computed :data:`_CHUNK` samples at a
    time so that a convolution's im2col never holds the whole calibration set.
    """
    parts = [model.ann_forward(x[i:i + _CHUNK]) for i in range(0, x.shape[0], _CHUNK)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def model_based(model: SpikingModel) -> tuple[SpikingModel, dict[str, float]]:
    r"""Model-based normalization (Diehl et al. 2015, Algorithm 1).

    Each population's inputs are divided by :math:`\lambda_l`, the largest sum of
    positive input weights of any of its neurons over all projections into it (a
    convolution's border neurons have fewer inputs), so no input pattern of 0/1
    spikes can drive a neuron above threshold in one step. No factor carries
    over from the previous layer. A population without positive weights keeps
    :math:`\lambda_l = 1`.

    Returns
    -------
    model : SpikingModel
    factors : dict of str -> float
        :math:`\lambda_l` per population.
    """
    factors = {}
    for pop in model.populations:
        total = sum(_positive_input(pr.op) for pr in model.projections_into(pop.name))
        factors[pop.name] = _nonzero(float(np.max(total)))
    return rescale(model, factors, chained=False), factors


def data_based(model: SpikingModel, x: np.ndarray) -> tuple[SpikingModel, dict[str, float]]:
    r"""Data-based normalization (Diehl et al. 2015, Algorithm 2).

    :math:`\lambda_l = \max(\max(0, \max W_l), \max a_l)` with :math:`a_l` the
    activations of the unnormalized network on ``x`` (the output's raw logits
    clipped at 0) and :math:`\max W_l` over all projections into ``l``; weights
    are divided by :math:`\lambda_l / \lambda_{k}` and the bias by
    :math:`\lambda_l` (Rueckauer et al. 2017). A population that is silent and
    has no positive weight keeps :math:`\lambda_l = 1`.

    Parameters
    ----------
    model : SpikingModel
    x : array, shape (N, *input.shape)
        Calibration samples (typically a subset of the training set).

    Returns
    -------
    model : SpikingModel
    factors : dict of str -> float
        :math:`\lambda_l` per population.
    """
    acts = activations(model, check_samples(x, model, where="data_based", name="calibration samples"))
    factors = {}
    for pop in model.populations:
        max_weight = max(float(np.max(pr.op.weights, initial=0.0)) for pr in model.projections_into(pop.name))
        factors[pop.name] = _nonzero(max(max_weight, float(acts[pop.name].max(initial=0.0))))
    return rescale(model, factors), factors


def percentile_based(model: SpikingModel, x: np.ndarray, p: float = 99.9) -> tuple[SpikingModel, dict[str, float]]:
    r"""Percentile normalization (Rueckauer et al. 2017).

    :math:`\lambda_l` is the ``p``-th percentile of the non-zero activations of
    population ``l`` on ``x`` (the output's logits clipped at 0), as in
    snntoolbox; 1 for a population that is silent on ``x``. Scaling is chained
    as in :func:`data_based`, without the max-weight term.

    Parameters
    ----------
    model : SpikingModel
    x : array, shape (N, *input.shape)
    p : float in (0, 100], default=99.9

    Returns
    -------
    model : SpikingModel
    factors : dict of str -> float
        :math:`\lambda_l` per population.
    """
    if isinstance(p, bool) or not isinstance(p, Real) or not 0 < p <= 100:
        raise ConversionError(f"percentile_based: p must be a number in (0, 100], got {p!r}. The usual choice "
                              "is 99.9 or 99.99.")
    acts = activations(model, check_samples(x, model, where="percentile_based", name="calibration samples"))
    factors = {}
    for pop in model.populations:
        active = acts[pop.name][acts[pop.name] > 0]
        factors[pop.name] = float(np.percentile(active, p)) if active.size else 1.0
    return rescale(model, factors), factors


def rescale(model: SpikingModel, factors: Mapping[str, float], *, chained: bool = True) -> SpikingModel:
    r"""Divide each population's inputs by its factor :math:`\lambda_l`.

    Bias :math:`b_l / \lambda_l`; weights :math:`W_{k \to l}\,\lambda_k / \lambda_l`
    when ``chained`` (the source's factor undone, :math:`\lambda = 1` for the
    input), :math:`W_{k \to l} / \lambda_l` otherwise.
    """
    populations = []
    for pop in model.populations:
        bias = pop.bias
        if bias is not None:
            bias = (bias.astype(np.float64) / factors[pop.name]).astype(bias.dtype)
        populations.append(dataclasses.replace(pop, bias=bias))
    projections = []
    for pr in model.projections:
        source = factors.get(pr.source, 1.0) if chained and pr.source != INPUT else 1.0
        projections.append(dataclasses.replace(pr, op=scale_op(pr.op, source / factors[pr.target])))
    return model.replace(populations=populations, projections=projections)


def scale_op(op: Operator, factor: float | np.ndarray) -> Operator:
    """A new operator of the same kind with weights times ``factor``, in the same dtype.

    ``factor`` is a number, or one number per output unit (Dense, Sparse rows) or
    output channel (Conv2d).
    """
    factor = np.asarray(factor, dtype=np.float64)
    weights = op.weights.astype(np.float64)
    if factor.ndim == 0:
        scaled = weights * factor
    elif isinstance(op, Sparse):
        scaled = weights * np.repeat(factor, np.diff(op.indptr))
    else:
        scaled = weights * factor.reshape(-1, *([1] * (weights.ndim - 1)))
    return dataclasses.replace(op, **{"data" if isinstance(op, Sparse) else "weight": scaled.astype(op.weights.dtype)})


# --- helpers ------------------------------------------------------------------------------
def _positive_input(op: Operator) -> np.ndarray:
    """Sum of positive input weights of every target neuron of ``op``: its positive part applied to all-ones.

    For a convolution this counts only the taps that fall inside the input, so border neurons
    get their own (smaller) sums, without unrolling the convolution.
    """
    if isinstance(op, Sparse):  # duplicate entries add up to one weight before taking the positive part
        m = op.to_csr().astype(np.float64)
        m.sum_duplicates()
        m.data = np.maximum(m.data, 0)
        return m @ np.ones(op.n_in)
    positive = scale_op(op, 1.0)
    weights = positive.weights.astype(np.float64)
    np.maximum(weights, 0, out=weights)
    positive = dataclasses.replace(positive, weight=weights)
    return positive.forward(np.ones((1, op.n_in)))[0]


def _nonzero(factor: float) -> float:
    """``factor``, or 1 where it is 0 (nothing to normalize against)."""
    return factor if factor > 0 else 1.0
