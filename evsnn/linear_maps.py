"""Linear maps between populations, composed into one IR operator (the torch importer and the NIR importer).

A map is a :class:`~evsnn.ops.Conv2d` while composing convolutions stays exact,
otherwise a dense or CSR matrix; ``None`` is the identity. The importer folds
every linear layer between two ReLUs into one map and turns it into one IR
operator with :func:`_operator`.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .ops import Conv2d, Dense, Operator, Sparse

# A linear map from a source population to the current expression: ``None`` is the identity.
_Map = Conv2d | np.ndarray | sp.csr_array | None


def _compose(first: _Map, then: Conv2d | np.ndarray) -> _Map:
    """The map ``then ∘ first``: a convolution when exact, otherwise a (dense or CSR) matrix."""
    if first is None:
        return then
    if isinstance(first, Conv2d) and isinstance(then, Conv2d):
        if then.padding == (0, 0):
            return _compose_conv(first, then)
        if first.weight.shape[2:] == (1, 1) and first.stride == (1, 1) and first.padding == (0, 0):
            # a pointwise map sends zero padding to zero: mix the channels into ``then``'s kernel
            weight = np.einsum("omhw,mi->oihw", then.weight, first.weight[:, :, 0, 0])
            return Conv2d(weight.astype(np.result_type(first.weight, then.weight)), first.input_shape,
                          stride=then.stride, padding=then.padding)
    a = first.to_csr() if isinstance(first, Conv2d) else first
    if isinstance(then, np.ndarray):  # a Linear weight: keep it dense
        return np.ascontiguousarray(then @ a)
    return sp.csr_array(then.to_csr() @ a)


def _compose_conv(a: Conv2d, b: Conv2d) -> Conv2d:
    r"""One convolution equal to ``a`` followed by the unpadded ``b``.

    Kernel :math:`(K_b - 1) s_a + K_a`, stride :math:`s_a s_b`, padding of ``a``, and
    :math:`W[o, i, c, d] = \sum_{m,u,v} B[o, m, u, v]\, A[m, i, c - s_a u, d - s_a v]` per axis.
    """
    (sh, sw), (ah, aw), (bh, bw) = a.stride, a.weight.shape[2:], b.weight.shape[2:]
    dtype = np.result_type(a.weight, b.weight)
    weight = np.zeros((b.weight.shape[0], a.weight.shape[1], (bh - 1) * sh + ah, (bw - 1) * sw + aw), dtype=dtype)
    for u in range(bh):
        for v in range(bw):
            weight[:, :, u * sh:u * sh + ah, v * sw:v * sw + aw] += np.einsum(
                "om,mihw->oihw", b.weight[:, :, u, v], a.weight)
    return Conv2d(weight, a.input_shape, stride=(sh * b.stride[0], sw * b.stride[1]), padding=a.padding)


def _identity(in_shape: tuple[int, ...], out_shape: tuple[int, ...], dtype: np.dtype,
              scale: np.ndarray | None = None) -> Conv2d | sp.csr_array:
    """The identity from ``in_shape`` to ``out_shape`` (equal sizes), times ``scale`` per channel of ``out_shape``.

    A 1x1 convolution when both shapes are the same image shape, otherwise a diagonal CSR matrix.
    """
    n = math.prod(out_shape)
    scale = np.ones(out_shape[0]) if scale is None else scale
    if len(in_shape) == 3 and in_shape == out_shape:
        c = in_shape[0]
        weight = np.zeros((c, c, 1, 1), dtype=dtype)
        weight[np.arange(c), np.arange(c), 0, 0] = scale
        return Conv2d(weight, in_shape)
    return sp.csr_array(sp.diags(np.repeat(scale, n // scale.size).astype(dtype)).tocsr())


def _scale_outputs(m: _Map, scale: np.ndarray, in_shape: tuple[int, ...], shape: tuple[int, ...],
                   dtype: np.dtype) -> _Map:
    """``diag(scale) ∘ m``, with ``scale`` per channel (the first axis of ``shape``)."""
    if m is None:
        return _identity(in_shape, shape, dtype, scale)
    if isinstance(m, Conv2d):
        return Conv2d((m.weight * scale[:, None, None, None]).astype(m.weight.dtype), m.input_shape,
                      stride=m.stride, padding=m.padding)
    per_unit = np.repeat(scale, m.shape[0] // scale.size)
    if isinstance(m, np.ndarray):
        return (m * per_unit[:, None]).astype(m.dtype)
    return sp.csr_array(sp.diags(per_unit) @ m).astype(m.dtype)


def _operator(m: _Map, in_shape: tuple[int, ...], out_shape: tuple[int, ...], dtype: np.dtype) -> Operator:
    """The IR operator of a composed map from a population of shape ``in_shape``."""
    if m is None:
        m = _identity(in_shape, out_shape, dtype)
    if isinstance(m, Conv2d):
        return m
    if isinstance(m, np.ndarray):
        return Dense(np.ascontiguousarray(m))
    return Sparse.from_matrix(m)
