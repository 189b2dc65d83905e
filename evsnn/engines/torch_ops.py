"""The IR's operators as torch products, in one place: what the torch timestep engine runs at every step, and
what the event engine runs on a step dense enough for BLAS (docs/design.md, "Engines").

A convolution that is an average pooling folded into the conv after it (what the converters produce) is
computed pooled first (:func:`pool_factorization`): a quarter of the folded conv's multiply-adds for a 2x2
pool. The IR, the event scatter and the SOP count keep the folded operator.

Torch is imported on first use, so that ``import evsnn`` stays light.
"""

from __future__ import annotations

import numpy as np

from ..ops import Conv2d, Dense, Sparse

__all__ = ["pool_factorization", "dense_macs", "TorchOperator", "sum_pool"]


def pool_factorization(op: Conv2d) -> bool:
    """Whether ``op`` is an average pooling (window = stride) folded into a convolution after it: stride ``s > 1``
    on an axis, a kernel size that is a multiple of ``s``, and the kernel constant over each ``s x s`` block.

    Then ``op(x) = conv(sum_pool_s(pad(x)), W[:, :, ::s, ::s])`` at stride 1, with ``1 / s`` of the taps per
    axis (the converters fold ``AvgPool2d`` followed by ``Conv2d`` into exactly this; docs/design.md,
    "Engines"): every window of ``op`` covers whole blocks of the padded input, which the floor pooling keeps.
    """
    (sh, sw) = op.stride
    _, _, kh, kw = op.weight.shape
    if (sh, sw) == (1, 1) or kh % sh or kw % sw:
        return False
    block = np.repeat(np.repeat(op.weight[:, :, ::sh, ::sw], sh, axis=2), sw, axis=3)
    return bool(np.array_equal(block, op.weight))


def dense_macs(op: Dense | Conv2d) -> int:
    """Multiply-adds of one sample's dense product as :class:`TorchOperator` computes it (padding included; a
    folded pooling's smaller conv plus the pooling's adds)."""
    if isinstance(op, Dense):
        return op.n_in * op.n_out
    _, c_in, kh, kw = op.weight.shape
    if pool_factorization(op):
        (sh, sw) = op.stride
        return op.n_out * c_in * (kh // sh) * (kw // sw) + op.n_in
    return op.n_out * c_in * kh * kw


class TorchOperator:
    """An operator's product ``(batch, n_in) -> (batch, n_out)`` on torch tensors of one device and dtype.

    ``Dense``: ``x @ W.T``; ``Conv2d``: ``conv2d`` (pooled first where :func:`pool_factorization`);
    ``Sparse``: a sparse (COO) matrix product. The weights are copied once, at construction; on the CPU in the
    operator's own dtype they share memory with writable copies of the IR's arrays.
    """

    def __init__(self, op: Dense | Conv2d | Sparse, *, device: object = "cpu", dtype: object = None):
        import torch

        self.op = op
        self.dtype = dtype or torch.float32

        def tensor(array: np.ndarray) -> "torch.Tensor":
            return torch.as_tensor(np.array(array, order="C"), device=device).to(self.dtype)

        if isinstance(op, Dense):
            self.weight_t = tensor(op.weight.T)  # (n_in, n_out)
        elif isinstance(op, Conv2d):
            self.pooled = pool_factorization(op)
            (sh, sw) = op.stride
            self.weight = tensor(op.weight[:, :, ::sh, ::sw] if self.pooled else op.weight)
        else:
            coo = op.to_csr().tocoo()
            indices = torch.as_tensor(np.stack([coo.row, coo.col]).astype(np.int64))
            self.matrix = torch.sparse_coo_tensor(indices, tensor(coo.data), size=coo.shape, device=device,
                                                  check_invariants=True).coalesce()

    @property
    def weights(self) -> "torch.Tensor":
        """The tensor the product multiplies by (``weight_t``, ``weight`` or the sparse ``matrix``)."""
        return self.weight_t if isinstance(self.op, Dense) else self.weight if isinstance(self.op, Conv2d) else self.matrix

    def __call__(self, x: "torch.Tensor", out: "torch.Tensor | None" = None) -> "torch.Tensor":
        """The product of ``x`` (batch, n_in); ``out``: a ``Dense`` operator's result buffer (no allocation)."""
        import torch
        import torch.nn.functional as F

        op = self.op
        if isinstance(op, Dense):
            return torch.mm(x, self.weight_t, out=out)
        if isinstance(op, Sparse):
            return torch.sparse.mm(self.matrix, x.T).T
        batch = x.shape[0]
        x = x.reshape(batch, *op.input_shape)
        if not self.pooled:
            y = F.conv2d(x, self.weight, stride=op.stride, padding=op.padding)
        else:  # sum pooling of the padded input (exact for spike counts), then one tap per block at stride 1
            (ph, pw) = op.padding
            padded = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
            y = F.conv2d(sum_pool(padded, op.stride), self.weight)
        return y.reshape(batch, -1)


def sum_pool(x: "torch.Tensor", stride: tuple[int, int]) -> "torch.Tensor":
    """Sums over non-overlapping ``stride`` blocks of ``x`` (batch, C, H, W), the last partial rows and columns
    dropped (floor): strided adds, about 5x faster on the CPU than ``avg_pool2d(divisor_override=1)``."""
    sh, sw = stride
    b, c, h, w = x.shape
    x = x[:, :, :h - h % sh, :w - w % sw]
    h, w = h // sh, w // sw
    cols = x.reshape(b, c, h * sh, w, sw)
    x = cols[..., 0]
    for k in range(1, sw):
        x = x + cols[..., k]
    rows = x.reshape(b, c, h, sh, w)
    x = rows[:, :, :, 0]
    for k in range(1, sh):
        x = x + rows[:, :, :, k]
    return x
