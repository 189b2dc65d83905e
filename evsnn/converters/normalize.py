r"""Weight normalization: rescale stages so that rates fit in one spike per step.

A converted IF neuron with threshold 1 fires at a rate equal to its ANN
activation only while that activation stays at or below 1 (one spike per
step). Each method divides a stage's weights and bias by a positive factor,
which a ReLU network passes through unchanged up to scaling:

- :func:`model_based` -- Diehl et al. (2015), Algorithm 1: the largest
  possible positive input of any neuron, from the weights alone;
- :func:`data_based` -- Diehl et al. (2015), Algorithm 2: the largest
  activation (or weight) seen on calibration data, chained across layers;
- :func:`percentile_based` -- Rueckauer et al. (2017): the p-th percentile of
  the non-zero activations, chained likewise, robust to outliers.

With :math:`\lambda_l` the factor of stage ``l`` (:math:`\lambda_0 = 1`), the
chained methods set :math:`W_l \leftarrow W_l \lambda_{l-1} / \lambda_l` and
:math:`b_l \leftarrow b_l / \lambda_l`, so that stage ``l`` outputs
:math:`a_l / \lambda_l`. Stages are never modified: new ones are returned.

References
----------
P. U. Diehl et al., "Fast-classifying, high-accuracy spiking deep networks through
weight and threshold balancing", IJCNN 2015.
B. Rueckauer et al., "Conversion of continuous-valued deep networks to efficient
event-driven networks for image classification", Front. Neurosci. 11:682, 2017.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from numbers import Real

import numpy as np

from ..errors import ConversionError
from ..ops import Dense, Operator, Sparse
from .torch_import import Stage

__all__ = ["stage_activations", "model_based", "data_based", "percentile_based", "scale_op"]

_CHUNK = 256  # calibration samples per forward pass


def stage_activations(stages: Sequence[Stage], x: np.ndarray) -> list[np.ndarray]:
    """ANN activations of every stage on calibration input ``x``.

    Parameters
    ----------
    stages : sequence of Stage
    x : array, shape (N, *input_shape)
        Finite calibration samples, N >= 1.

    Returns
    -------
    list of numpy.ndarray
        One float64 array ``(N, n)`` per stage: ``op(a_prev) + bias``, rectified
        where a ReLU follows (the output stage keeps its raw logits).
    """
    return _activations(stages, _calibration(stages, x, "stage_activations"))


def model_based(stages: Sequence[Stage]) -> tuple[list[Stage], list[float]]:
    r"""Model-based normalization (Diehl et al. 2015, Algorithm 1).

    Each stage is divided by :math:`\lambda_l`, the largest sum of positive
    input weights of any of its neurons (a convolution's border neurons have
    fewer inputs), so no input pattern of 0/1 spikes can drive a neuron above
    threshold in one step. No factor carries over from the previous stage.
    A stage without positive weights keeps :math:`\lambda_l = 1`.

    Returns
    -------
    stages : list of Stage
    factors : list of float
        :math:`\lambda_l` per stage.
    """
    factors = [_nonzero(_max_positive_input(stage.op)) for stage in stages]
    return [_scale_stage(s, 1 / lam, lam) for s, lam in zip(stages, factors)], factors


def data_based(stages: Sequence[Stage], x: np.ndarray) -> tuple[list[Stage], list[float]]:
    r"""Data-based normalization (Diehl et al. 2015, Algorithm 2).

    :math:`\lambda_l = \max(\max(0, \max W_l), \max a_l)` with :math:`a_l` the
    activations of the unnormalized network on ``x`` (the output's raw logits
    clipped at 0); weights are divided by :math:`\lambda_l / \lambda_{l-1}` and
    the bias by :math:`\lambda_l` (Rueckauer et al. 2017). A stage that is
    silent and has no positive weight keeps :math:`\lambda_l = 1`.

    Parameters
    ----------
    stages : sequence of Stage
    x : array, shape (N, *input_shape)
        Calibration samples (typically a subset of the training set).

    Returns
    -------
    stages : list of Stage
    factors : list of float
        :math:`\lambda_l` per stage.
    """
    acts = _activations(stages, _calibration(stages, x, "data_based"))
    factors = [_nonzero(max(_max_weight(s.op), float(a.max(initial=0.0)))) for s, a in zip(stages, acts)]
    return _chain(stages, factors), factors


def percentile_based(stages: Sequence[Stage], x: np.ndarray, p: float = 99.9) -> tuple[list[Stage], list[float]]:
    r"""Percentile normalization (Rueckauer et al. 2017).

    :math:`\lambda_l` is the ``p``-th percentile of the non-zero activations of
    stage ``l`` on ``x`` (the output's logits clipped at 0), as in snntoolbox;
    1 for a stage that is silent on ``x``. Scaling is chained as in
    :func:`data_based`, without the max-weight term.

    Parameters
    ----------
    stages : sequence of Stage
    x : array, shape (N, *input_shape)
    p : float in (0, 100], default=99.9

    Returns
    -------
    stages : list of Stage
    factors : list of float
        :math:`\lambda_l` per stage.
    """
    if isinstance(p, bool) or not isinstance(p, Real) or not 0 < p <= 100:
        raise ConversionError(f"percentile_based: p must be a number in (0, 100], got {p!r}. The usual choice "
                              "is 99.9 or 99.99.")
    factors = []
    for a in _activations(stages, _calibration(stages, x, "percentile_based")):
        active = a[a > 0]
        factors.append(float(np.percentile(active, p)) if active.size else 1.0)
    return _chain(stages, factors), factors


def scale_op(op: Operator, factor: float) -> Operator:
    """A new operator of the same kind with weights times ``factor``, in the same dtype."""
    weights = (op.weights.astype(np.float64) * factor).astype(op.weights.dtype)
    return dataclasses.replace(op, **{"data" if isinstance(op, Sparse) else "weight": weights})


# --- helpers ------------------------------------------------------------------------------
def _calibration(stages: Sequence[Stage], x: np.ndarray, where: str) -> np.ndarray:
    """Check ``x`` against the first stage and flatten it to float64 ``(N, n_in)``."""
    x = np.asarray(x)
    n_in = stages[0].op.n_in
    if x.dtype.kind not in "biuf":
        raise ConversionError(f"{where}: x must hold real numbers, got dtype {x.dtype}.")
    if x.ndim < 2 or x.shape[0] < 1 or int(np.prod(x.shape[1:])) != n_in:
        raise ConversionError(f"{where}: x must have shape (N, *input_shape) with N >= 1 samples of {n_in} values "
                              f"(the input size of stage {stages[0].name!r}), got shape {x.shape}.")
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(flat)))
    if bad:
        raise ConversionError(f"{where}: x must be finite, got {bad} NaN or infinite value(s). "
                              "Remove or replace them in the calibration set.")
    return flat


def _activations(stages: Sequence[Stage], flat: np.ndarray) -> list[np.ndarray]:
    """:func:`stage_activations` on checked, flattened input, in chunks of samples."""
    chunks = []
    for start in range(0, flat.shape[0], _CHUNK):
        a, acts = flat[start:start + _CHUNK], []
        for stage in stages:
            a = stage.op.forward(a)
            if stage.bias is not None:
                a = a + stage.bias.reshape(-1)
            if stage.relu:
                a = np.maximum(a, 0)
            acts.append(a)
        chunks.append(acts)
    return [np.concatenate(per_stage) for per_stage in zip(*chunks)]


def _max_positive_input(op: Operator) -> float:
    """Largest sum of positive input weights over the target neurons of ``op``."""
    if isinstance(op, Dense):
        return float(np.maximum(op.weight, 0).sum(axis=1, dtype=np.float64).max())
    m = op.to_csr().astype(np.float64)  # a copy: the operator's arrays stay untouched
    m.sum_duplicates()
    m.data = np.maximum(m.data, 0)
    return float(m.sum(axis=1).max())


def _max_weight(op: Operator) -> float:
    return float(np.max(op.weights, initial=0.0))


def _nonzero(factor: float) -> float:
    """``factor``, or 1 where it is 0 (nothing to normalize against)."""
    return factor if factor > 0 else 1.0


def _chain(stages: Sequence[Stage], factors: Sequence[float]) -> list[Stage]:
    """Apply chained factors: W_l * lambda_{l-1} / lambda_l and b_l / lambda_l."""
    previous = [1.0, *factors[:-1]]
    return [_scale_stage(s, prev / lam, lam) for s, prev, lam in zip(stages, previous, factors)]


def _scale_stage(stage: Stage, weight_factor: float, bias_divisor: float) -> Stage:
    bias = stage.bias
    if bias is not None:
        bias = (bias.astype(np.float64) / bias_divisor).astype(bias.dtype)
    return dataclasses.replace(stage, op=scale_op(stage.op, weight_factor), bias=bias)
