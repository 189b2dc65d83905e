r"""Linear operators that carry spikes along a projection.

A projection maps the flattened (C-order) activity of its source population,
a vector of length ``n_in``, to input current of its target, length
``n_out``. Three operators cover every network evsnn converts:

- :class:`Dense` -- a weight matrix ``(n_out, n_in)``;
- :class:`Conv2d` -- a 2-D cross-correlation (PyTorch's ``Conv2d``) with
  stride and zero padding over a ``(C, H, W)`` source;
- :class:`Sparse` -- any matrix in CSR form (pooling folded into the next
  layer, pruned or hand-made connectivity).

Each operator knows its dense forward pass (used to check conversions), its
unrolled CSR connectivity ``(n_out, n_in)``, and the fan-out of every source
neuron (:meth:`Dense.fan_out`, the one SOP rule of every engine and count):
a *synapse* is a (pre, post) pair with a non-zero weight, a *connection* any
structural pair, zero weights included (both conventions are reported,
because papers use both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Union

import numpy as np
import scipy.sparse as sp

from .checks import check_array, check_pair, check_shape
from .equality import BitExact
from .errors import ModelError

__all__ = ["Dense", "Conv2d", "Sparse", "Operator", "OPERATORS", "conv2d_output_shape"]


def conv2d_output_shape(
    input_shape: tuple[int, int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[int, int]:
    """Spatial output size of a convolution (PyTorch's formula, no dilation)."""
    h, w = input_shape[1:]
    return (
        (h + 2 * padding[0] - kernel[0]) // stride[0] + 1,
        (w + 2 * padding[1] - kernel[1]) // stride[1] + 1,
    )


class _Operator(BitExact):
    """Shared behaviour; subclasses define ``in_shape``, ``out_shape``, ``to_csr`` and ``forward``."""

    kind: ClassVar[str]

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))  # type: ignore[attr-defined]

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))  # type: ignore[attr-defined]

    @property
    def dtype(self) -> np.dtype:
        return self.weights.dtype  # type: ignore[attr-defined]

    def n_synapses(self) -> int:
        """Number of (pre, post) pairs with a non-zero weight."""
        return int(self.fan_out()[0].sum())

    def n_connections(self) -> int:
        """Number of structural (pre, post) pairs, zero weights included."""
        return int(self.fan_out()[1].sum())

    def fan_out(self) -> tuple[np.ndarray, np.ndarray]:
        """Per source neuron (length ``n_in``): its synapses (non-zero weights) and its connections (zeros included).

        The one SOP rule of evsnn: a spike of source neuron ``j`` costs
        ``synapses[j]`` synaptic operations (``connections[j]`` nominal), in
        every engine, in validation and in the energy counts (the ANN's
        effective MACs use ``connections``). Computed once per operator
        without unrolling it (conv borders and strides exact) and cached;
        the arrays are read-only.
        """
        cached = self.__dict__.get("_fan_out_cache")
        if cached is None:
            cached = tuple(np.asarray(a, dtype=np.int64) for a in self._count_fan_out())  # type: ignore[attr-defined]
            for a in cached:
                a.flags.writeable = False
            object.__setattr__(self, "_fan_out_cache", cached)
        return cached

    def input_macs(self, x: np.ndarray) -> np.ndarray:
        """Multiply-accumulates of analog input ``x`` (batch, n_in) through this operator, per sample: each
        non-zero input value times its synapses (every engine's count for the ``current`` encoding, every step)."""
        return (np.asarray(x) != 0) @ self.fan_out()[0]


@dataclass(frozen=True, eq=False)
class Dense(_Operator):
    """Fully connected: ``I = W @ s`` with ``W`` of shape ``(n_out, n_in)``."""

    weight: np.ndarray
    kind: ClassVar[str] = "dense"

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", check_array(self.weight, where="Dense", name="weight", ndim=2))

    @property
    def weights(self) -> np.ndarray:
        return self.weight

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.weight.shape[1],)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.weight.shape[0],)

    @property
    def n_params(self) -> int:
        return int(self.weight.size)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch ``x`` of shape ``(batch, n_in)``."""
        return x @ self.weight.T

    def to_csr(self) -> sp.csr_array:
        """All ``n_out * n_in`` pairs, zero weights kept as explicit entries."""
        n_out, n_in = self.weight.shape
        return sp.csr_array(
            (self.weight.ravel(), np.tile(np.arange(n_in, dtype=np.int64), n_out),
             np.arange(0, n_out * n_in + 1, n_in, dtype=np.int64)),
            shape=(n_out, n_in),
        )

    def _count_fan_out(self) -> tuple[np.ndarray, np.ndarray]:
        n_out, n_in = self.weight.shape
        return np.count_nonzero(self.weight, axis=0), np.full(n_in, n_out)


@dataclass(frozen=True, eq=False)
class Conv2d(_Operator):
    r"""2-D cross-correlation with zero padding, as PyTorch's ``nn.Conv2d`` (no bias).

    .. math::

        I[o, y, x] = \sum_{c, i, j} W[o, c, i, j]\, s_{pad}[c, y s_h + i, x s_w + j]

    Parameters
    ----------
    weight : array, shape (C_out, C_in, kh, kw)
    input_shape : (C_in, H, W)
        Shape of the source population.
    stride, padding : int or (int, int)
    """

    weight: np.ndarray
    input_shape: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    kind: ClassVar[str] = "conv2d"

    def __post_init__(self) -> None:
        where = "Conv2d"
        w = check_array(self.weight, where=where, name="weight", ndim=4)
        shape = check_shape(self.input_shape, where=where, name="input_shape", ndim=3)
        stride = check_pair(self.stride, where=where, name="stride", minimum=1)
        padding = check_pair(self.padding, where=where, name="padding", minimum=0)
        if shape[0] != w.shape[1]:
            raise ModelError(
                f"{where}: input_shape must have {w.shape[1]} channels (weight.shape[1]), got {shape}."
            )
        oh, ow = conv2d_output_shape(shape, w.shape[2:], stride, padding)
        if oh < 1 or ow < 1:
            raise ModelError(
                f"{where}: kernel {w.shape[2:]} with padding {padding} does not fit input {shape[1:]}."
            )
        for name, value in (("weight", w), ("input_shape", shape), ("stride", stride), ("padding", padding)):
            object.__setattr__(self, name, value)

    @property
    def weights(self) -> np.ndarray:
        return self.weight

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.input_shape)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        oh, ow = conv2d_output_shape(self.input_shape, self.weight.shape[2:], self.stride, self.padding)
        return (self.weight.shape[0], oh, ow)

    @property
    def n_params(self) -> int:
        return int(self.weight.size)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch ``x`` of shape ``(batch, C_in*H*W)``; returns ``(batch, n_out)``."""
        c, h, w = self.input_shape
        (ph, pw), (sh, sw) = self.padding, self.stride
        kh, kw = self.weight.shape[2:]
        xp = np.pad(x.reshape(-1, c, h, w), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        out = np.einsum("bcyxij,ocij->boyx", win, self.weight, optimize=True)
        return out.reshape(x.shape[0], -1)

    def reach(self) -> tuple[np.ndarray, np.ndarray]:
        """Which kernel taps each input row and column reaches: bool arrays ``(H, kh)`` and ``(W, kw)``.

        Input row ``y`` meets kernel row ``ky`` at output row ``oy`` when
        ``oy * stride - pad + ky = y`` with ``0 <= oy < OH`` (one ``oy`` per
        ``ky`` at most); likewise for columns. An input pixel's synapses are
        the taps ``(ky, kx)`` with both true, times the output channels.
        """
        _, oh, ow = self.out_shape
        return (_axis_reach(self.input_shape[1], self.padding[0], self.weight.shape[2], self.stride[0], oh),
                _axis_reach(self.input_shape[2], self.padding[1], self.weight.shape[3], self.stride[1], ow))

    def _count_fan_out(self) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self.reach()
        nonzero = np.count_nonzero(self.weight, axis=0)  # (C_in, kh, kw): non-zero weights per tap
        synapses = np.einsum("yi,xj,cij->cyx", rows.astype(np.int64), cols.astype(np.int64), nonzero)
        per_pixel = np.outer(rows.sum(axis=1), cols.sum(axis=1)) * self.weight.shape[0]
        return synapses.reshape(-1), np.tile(per_pixel.reshape(-1), self.weight.shape[1])

    def to_csr(self) -> sp.csr_array:
        """The unrolled connectivity: one entry per (output, input) pair inside the borders."""
        co, ci, kh, kw = self.weight.shape
        _, h, w = self.input_shape
        _, oh, ow = self.out_shape
        (ph, pw), (sh, sw) = self.padding, self.stride
        iy = (np.arange(oh) * sh - ph)[:, None] + np.arange(kh)[None, :]  # (oh, kh)
        ix = (np.arange(ow) * sw - pw)[:, None] + np.arange(kw)[None, :]  # (ow, kw)
        # Broadcast to (co, ci, oh, ow, kh, kw).
        iy6 = iy[None, None, :, None, :, None]
        ix6 = ix[None, None, None, :, None, :]
        valid = (iy6 >= 0) & (iy6 < h) & (ix6 >= 0) & (ix6 < w)
        full = (co, ci, oh, ow, kh, kw)
        valid = np.broadcast_to(valid, full)
        o_idx = np.arange(co)[:, None, None, None, None, None]
        c_idx = np.arange(ci)[None, :, None, None, None, None]
        rows = (o_idx * oh + np.arange(oh)[None, None, :, None, None, None]) * ow + np.arange(ow)[
            None, None, None, :, None, None
        ]
        cols = (c_idx * h + iy6) * w + ix6
        vals = self.weight[:, :, None, None, :, :]
        rows, cols, vals = (np.broadcast_to(a, full)[valid] for a in (rows, cols, vals))
        m = sp.coo_array((vals, (rows.astype(np.int64), cols.astype(np.int64))), shape=(self.n_out, self.n_in))
        return _csr_keep_zeros(m)


@dataclass(frozen=True, eq=False)
class Sparse(_Operator):
    """Any connectivity in CSR form: row ``i`` (target neuron) lists its sources.

    The layout is scipy's (and anndata's ``csr_matrix``): ``data``,
    ``indices`` (column of each entry) and ``indptr`` (row ``i`` is
    ``indptr[i]:indptr[i+1]``), with ``shape = (n_out, n_in)``. Stored entries
    whose value is 0 count as connections but not as synapses.
    """

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple[int, int]
    kind: ClassVar[str] = "sparse"

    def __post_init__(self) -> None:
        where = "Sparse"
        shape = check_shape(self.shape, where=where, name="shape", ndim=2)
        data = check_array(self.data, where=where, name="data", ndim=1)
        indices = check_array(self.indices, where=where, name="indices", kind="int", ndim=1)
        indptr = check_array(self.indptr, where=where, name="indptr", kind="int", ndim=1)
        if indptr.shape[0] != shape[0] + 1:
            raise ModelError(f"{where}: indptr must have length n_out + 1 = {shape[0] + 1}, got {indptr.shape[0]}.")
        if indptr[0] != 0 or (np.diff(indptr) < 0).any():
            raise ModelError(f"{where}: indptr must start at 0 and never decrease, got {_head(indptr)}.")
        if indptr[-1] != data.shape[0] or indices.shape[0] != data.shape[0]:
            raise ModelError(
                f"{where}: indptr[-1], len(indices) and len(data) must be equal, got "
                f"{int(indptr[-1])}, {indices.shape[0]} and {data.shape[0]}."
            )
        if indices.size and (indices.min() < 0 or indices.max() >= shape[1]):
            raise ModelError(
                f"{where}: indices must lie in [0, {shape[1]}), got range "
                f"[{int(indices.min())}, {int(indices.max())}]."
            )
        for name, value in (("data", data), ("indices", indices), ("indptr", indptr), ("shape", shape)):
            object.__setattr__(self, name, value)

    @classmethod
    def from_matrix(cls, matrix: object) -> "Sparse":
        """Build from any scipy sparse matrix/array or dense 2-D array (explicit zeros kept)."""
        m = sp.csr_array(matrix)
        return cls(m.data, m.indices, m.indptr, m.shape)

    @property
    def weights(self) -> np.ndarray:
        return self.data

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.shape[1],)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.shape[0],)

    @property
    def n_params(self) -> int:
        return int(self.data.size)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply to a batch ``x`` of shape ``(batch, n_in)``."""
        return np.asarray((self.to_csr() @ x.T).T)

    def to_csr(self) -> sp.csr_array:
        return sp.csr_array((self.data, self.indices, self.indptr), shape=self.shape)

    def _count_fan_out(self) -> tuple[np.ndarray, np.ndarray]:
        n_in = self.shape[1]
        return np.bincount(self.indices[self.data != 0], minlength=n_in), np.bincount(self.indices, minlength=n_in)


def _axis_reach(size: int, pad: int, k: int, stride: int, n_out: int) -> np.ndarray:
    """``reach[y, ky]``: input position ``y`` is under kernel offset ``ky`` at some output ``0 <= o < n_out``."""
    rel = np.arange(size)[:, None] + pad - np.arange(k)[None, :]  # o * stride for that (y, ky)
    return (rel % stride == 0) & (rel >= 0) & (rel // stride < n_out)


def _csr_keep_zeros(m: sp.coo_array) -> sp.csr_array:
    """COO -> CSR with sorted indices, keeping explicit zeros (they are connections)."""
    order = np.lexsort((m.col, m.row))
    row, col, val = m.row[order], m.col[order], m.data[order]
    indptr = np.zeros(m.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=m.shape[0]), out=indptr[1:])
    return sp.csr_array((val, col.astype(np.int64), indptr), shape=m.shape)


def _head(a: np.ndarray, n: int = 6) -> str:
    items = ", ".join(str(v) for v in a[:n])
    return f"[{items}{', ...' if a.size > n else ''}]"


Operator = Union[Dense, Conv2d, Sparse]

#: Operator classes by their ``kind`` tag (used by the file readers).
OPERATORS: dict[str, type] = {cls.kind: cls for cls in (Dense, Conv2d, Sparse)}
