"""The event-driven engine: a scipy.sparse event queue with exact SOP counts.

Per step ``t`` and population, in topological order (docs/design.md, "Time and
update order"):

1. take the input due at ``t`` from the population's ring buffer (slot
   ``t mod L``, ``L = max delay + 1``), add the analog input current and the
   bias;
2. integrate, threshold and reset (:func:`~evsnn.engines.neurons.neuron_step`);
3. turn the spikes into a sparse matrix (batch x neurons) and push it through
   every outgoing projection into the target's slot ``(t + delay) mod L``.

Delivery reads only the synapses of neurons that spiked, so its work grows
with spikes x fan-out, not with neurons x steps:

- ``dense``: ``S @ W.T`` with ``S`` in CSR (scipy's compiled row-axpy loop);
  at batch >= 8 and a spike density above ``dense_above`` the dense BLAS
  product is faster and is used instead (same sums, see Notes);
- ``conv2d``: an event scatter of the kernel. Each spike at (c, y, x) adds
  kernel slices ``W[:, c, ky, kx]`` at the output positions it reaches; the
  (tap, position) pairs of every input pixel are tabulated once per model,
  so the engine never unrolls the convolution and its memory stays near the
  weights' size (above ``dense_above`` at batch >= 8: im2col and one BLAS
  product);
- ``sparse``: ``S @ W.T`` with both in CSR (scipy's sparse product).

SOPs are counted from the spikes, never from the kernel that delivered them:
each spike of neuron ``j`` through projection ``p`` adds the number of
non-zero-weight synapses ``j`` has in ``p`` (conv borders and strides exact),
and separately its nominal fan-out (zeros included), both from
:meth:`~evsnn.ops.Dense.fan_out`, the rule every engine shares.

Notes
-----
A population that is IF (no leak), has no bias, no analog input and no
pending input, and whose potentials are all below threshold, is skipped: it
cannot spike and its state does not change. Dense BLAS and the CSR loop add
the same terms in a different order, so in float32 they may differ in the last
bit; pass ``dense_above=1.0`` (never dense) for bit-reproducible runs across
batch sizes.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..encoding import EncodedInput
from ..model import INPUT, Projection, SpikingModel
from ..ops import Conv2d, Dense, Sparse
from . import register_engine
from .base import BatchOutput, Engine
from .neurons import NeuronParams, initial_state, integrate, neuron_step

__all__ = ["EventEngine"]

#: Neuron kinds the event engine integrates (SRM: Brian2 only, until its recursive filters land here).
EVENT_KINDS = ("if", "lif", "cuba_lif", "li", "cuba_li", "i", "threshold")


try:  # scipy's compiled kernels, called without building a sparse matrix object per step
    from scipy.sparse._sparsetools import coo_matmat_dense as _coo_matmat_dense
    from scipy.sparse._sparsetools import csr_matvecs as _csr_matvecs
except ImportError:  # pragma: no cover - other scipy versions: the public API does the same
    _coo_matmat_dense = _csr_matvecs = None


def csr_accumulate(indptr: np.ndarray, indices: np.ndarray, n_cols: int, rows_of: np.ndarray,
                   out: np.ndarray) -> None:
    """``out += A @ rows_of`` for a 0/1 CSR matrix ``A`` (one row of ``out`` per CSR row)."""
    ones = np.ones(indices.size, dtype=rows_of.dtype)
    if _csr_matvecs is not None:
        _csr_matvecs(out.shape[0], n_cols, rows_of.shape[1], indptr, indices, ones, rows_of.ravel(), out.ravel())
    else:
        out += sp.csr_array((ones, indices, indptr), shape=(out.shape[0], n_cols)) @ rows_of


def coo_accumulate(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, rows_of: np.ndarray,
                   out: np.ndarray) -> None:
    """``out[rows[i]] += values[i] * rows_of[cols[i]]`` for every i (duplicates add up)."""
    if _coo_matmat_dense is not None:
        _coo_matmat_dense(rows.size, rows_of.shape[1], rows, cols, values, rows_of.ravel(), out.ravel())
    else:
        out += sp.coo_array((values, (rows, cols)), shape=(out.shape[0], rows_of.shape[0])) @ rows_of


def _expand(start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ranges ``start[i] : start[i] + length[i]``; return (owner i, position) per element."""
    owner = np.repeat(np.arange(length.size), length)
    first = np.cumsum(length) - length  # where each range begins in the output
    return owner, np.arange(int(length.sum())) - np.repeat(first - start, length)


class _DenseDelivery:
    """Rows of ``W.T`` for each spike, added by scipy's compiled CSR loop (or BLAS when dense)."""

    def __init__(self, op: Dense, dtype: np.dtype, dense_above: float):
        self.wt = np.ascontiguousarray(op.weight.T, dtype=dtype)  # (n_in, n_out)
        self.dense_above = dense_above

    def deliver(self, rows: np.ndarray, cols: np.ndarray, indptr: np.ndarray, out: np.ndarray) -> None:
        batch, n_in = out.shape[0], self.wt.shape[0]
        if batch >= 8 and cols.size > self.dense_above * batch * n_in:
            spikes = np.zeros((batch, n_in), dtype=self.wt.dtype)
            spikes[rows, cols] = 1
            out += spikes @ self.wt
        else:
            csr_accumulate(indptr, cols, n_in, self.wt, out)


class _SparseDelivery:
    """``out += S @ W.T`` with both in CSR (scipy's sparse product reads only the spiking rows)."""

    def __init__(self, op: Sparse, dtype: np.dtype):
        self.wt = sp.csr_array(op.to_csr().T.astype(dtype))  # (n_in, n_out): row j lists neuron j's targets

    def deliver(self, rows: np.ndarray, cols: np.ndarray, indptr: np.ndarray, out: np.ndarray) -> None:
        spikes = sp.csr_array((np.ones(cols.size, dtype=self.wt.dtype), cols, indptr),
                              shape=(out.shape[0], self.wt.shape[0]))
        out += (spikes @ self.wt).toarray()


class _ConvDelivery:
    """Event scatter of a convolution kernel, without unrolling it.

    For every input pixel a table lists the (kernel tap, output position)
    pairs it reaches. A spike at (b, c, pixel) adds the kernel slice
    ``W[:, c, tap]`` (length ``C_out``) at output ``(b, position)`` for each of
    its pixel's pairs: one compiled axpy per (spike, tap) pair, into a
    channel-last buffer that is then added to the target's input.
    """

    def __init__(self, op: Conv2d, dtype: np.dtype, dense_above: float):
        self.op, self.dense_above = op, dense_above
        c_out, c_in, kh, kw = op.weight.shape
        _, h, w = op.input_shape
        _, oh, ow = op.out_shape
        (ph, pw), (sh, sw) = op.padding, op.stride
        self.c_out, self.hw, self.ohw, self.taps = c_out, h * w, oh * ow, kh * kw
        rows, cols = op.reach()
        # (pixel y, pixel x, ky, kx) of every pair, in that order; the output position follows from the tap
        y, x, ky, kx = np.nonzero(rows[:, None, :, None] & cols[None, :, None, :])
        self.length = np.bincount(y * w + x, minlength=h * w).astype(np.int64)
        self.start = (np.cumsum(self.length) - self.length).astype(np.int64)
        self.tap = (ky * kw + kx).astype(np.int64)
        self.pos = (((y + ph - ky) // sh) * ow + (x + pw - kx) // sw).astype(np.int64)
        # kernel[(c, tap), o] = W[o, c, ky, kx]
        self.kernel = np.ascontiguousarray(op.weight.reshape(c_out, c_in * kh * kw).T, dtype=dtype)

    def deliver(self, rows: np.ndarray, cols: np.ndarray, indptr: np.ndarray, out: np.ndarray) -> None:
        batch = out.shape[0]
        if batch >= 8 and cols.size > self.dense_above * batch * self.op.n_in:
            current = self._dense(rows, cols, batch)
        else:
            current = self._scatter(rows, cols, batch)
        out += current.reshape(batch, self.ohw, self.c_out).transpose(0, 2, 1).reshape(batch, -1)

    def _dense(self, rows: np.ndarray, cols: np.ndarray, batch: int) -> np.ndarray:
        """Many spikes: im2col of the dense spike array, then one BLAS product (channel-last result)."""
        c, h, w = self.op.input_shape
        (ph, pw), (sh, sw) = self.op.padding, self.op.stride
        kh, kw = self.op.weight.shape[2:]
        spikes = np.zeros((batch, c, h + 2 * ph, w + 2 * pw), dtype=self.kernel.dtype)
        channel, pixel = np.divmod(cols, self.hw)
        spikes[rows, channel, pixel // w + ph, pixel % w + pw] = 1
        windows = np.lib.stride_tricks.sliding_window_view(spikes, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        patches = windows.transpose(0, 2, 3, 1, 4, 5).reshape(batch * self.ohw, -1)  # rows (b, y, x)
        return patches @ self.kernel

    def _scatter(self, rows: np.ndarray, cols: np.ndarray, batch: int) -> np.ndarray:
        """Few spikes: one axpy of a kernel slice per (spike, tap) pair (channel-last result)."""
        current = np.zeros((batch * self.ohw, self.c_out), dtype=self.kernel.dtype)
        channel, pixel = np.divmod(cols, self.hw)
        spike, entry = _expand(self.start[pixel], self.length[pixel])
        dst = rows[spike] * self.ohw + self.pos[entry]
        src = channel[spike] * self.taps + self.tap[entry]
        coo_accumulate(dst, src, np.ones(entry.size, dtype=self.kernel.dtype), self.kernel, current)
        return current


def _delivery(pr: Projection, dtype: np.dtype, dense_above: float):
    op = pr.op
    if isinstance(op, Dense):
        return _DenseDelivery(op, dtype, dense_above)
    if isinstance(op, Conv2d):
        return _ConvDelivery(op, dtype, dense_above)
    return _SparseDelivery(op, dtype)


class EventEngine(Engine):
    """Event-driven simulation of a :class:`~evsnn.SpikingModel` (registered as ``"event"``).

    Parameters
    ----------
    model : SpikingModel
    dtype : {"float32", "float64"}, default="float32"
        Precision of potentials and weights.
    dense_above : float, default=0.1
        Spike density (fraction of batch x neurons) above which dense and
        conv2d projections use a BLAS product instead of the event loop, at
        batch >= 8. ``1.0`` disables it.
    """

    name = "event"

    def __init__(self, model: SpikingModel, *, dtype: str = "float32", dense_above: float = 0.1):
        super().__init__(model, dtype=dtype)
        self.dense_above = float(dense_above)
        self.params = [NeuronParams.from_population(p, self.dtype, engine=self.name, dt=model.dt,
                                                    kinds=EVENT_KINDS) for p in model.populations]
        self.index = {p.name: i for i, p in enumerate(model.populations)}
        self.check_tables()
        self.deliveries = {pr.name: _delivery(pr, self.dtype, self.dense_above) for pr in model.projections}
        self.ring_length = 1 + max((pr.delay for pr in model.projections), default=0)
        self.outgoing = {name: [pr for pr in model.projections if pr.source == name]
                         for name in [INPUT, *self.index]}
        self.output_index = self.index[model.output]
        self.membrane = model.readout == "membrane"
        # Populations that cannot change without spikes arriving (unless fed analog input, see run_batch).
        self.quiet_without_input = [p.neuron.kind in ("if", "threshold") and p.bias is None
                                    and self.params[i].leak is None
                                    and not (self.membrane and i == self.output_index)
                                    for i, p in enumerate(model.populations)]
        self.bias = [None if p.bias is None else p.bias.reshape(-1).astype(self.dtype) for p in model.populations]

    @property
    def settings(self) -> dict:
        return {**super().settings, "dense_above": self.dense_above}

    def table_bytes(self) -> int:
        size = self.dtype.itemsize
        total = 0
        for pr in self.model.projections:
            op = pr.op
            total += 16 * op.n_in  # the operator's fan-out (non-zero and nominal)
            if isinstance(op, Dense):
                total += op.n_in * op.n_out * size  # W.T
            elif isinstance(op, Sparse):
                total += 3 * op.data.size * (size + 8) + 2 * op.n_in * 8  # to_csr, its transpose, the cast
            else:
                rows, cols = op.reach()
                c_out, c_in, kh, kw = op.weight.shape
                pairs = int(rows.sum()) * int(cols.sum())
                # the (pixel, tap) mask, its nonzero() and the tap / position / pixel tables; the kernel copy
                total += rows.shape[0] * cols.shape[0] * kh * kw + 7 * 8 * pairs + c_out * c_in * kh * kw * size
        return total

    def batch_bytes(self, batch: int, steps: int, spiking: bool) -> int:
        size = self.dtype.itemsize
        total = 0
        for p in self.model.populations:
            # potentials and the temporaries of a step, the ring buffer, spike indices
            total += batch * p.size * (4 * size + 1 + 16) + self.ring_length * batch * p.size * size
        for pr in self.model.projections:
            op = pr.op
            if pr.source == INPUT and not spiking:  # the projected current, held for the run
                total += batch * (op.n_in + 2 * op.n_out) * size
                continue
            if isinstance(op, Conv2d):
                c_out, c_in, kh, kw = op.weight.shape
                _, h, w = op.input_shape
                (ph, pw) = op.padding
                ohw = op.n_out // c_out
                rows, cols = op.reach()
                pairs = int(rows.sum()) * int(cols.sum()) * c_in  # (spike, tap) pairs if every neuron spikes
                share = self.dense_above if batch >= 8 else 1.0
                total += max(  # dense path (padded spikes, im2col patches, result and its transposes) or scatter
                    batch * (c_in * (h + 2 * ph) * (w + 2 * pw) + ohw * c_in * kh * kw + 3 * op.n_out) * size,
                    int(share * batch * pairs) * 5 * 8 + 3 * batch * op.n_out * size)
            elif isinstance(op, Dense):
                total += batch * (op.n_in + 2 * op.n_out) * size
            else:
                total += batch * op.n_in * (size + 8) + batch * op.n_out * (2 * size + 8)
        return total

    def run_batch(self, encoded: EncodedInput, start: int, stop: int, record: frozenset[str]) -> BatchOutput:
        model, dtype = self.model, self.dtype
        batch, steps = stop - start, encoded.steps
        pops = model.populations
        sizes = [p.size for p in pops]
        out = BatchOutput.empty(model, encoded, batch, record)
        states = [initial_state(p, batch, n, dtype) for p, n in zip(self.params, sizes)]
        ring = [np.zeros((self.ring_length, batch, n), dtype=dtype) for n in sizes]
        held_input = [np.zeros((batch, n), dtype=dtype) if p.ode else None for p, n in zip(self.params, sizes)]
        pending = np.zeros((len(pops), self.ring_length), dtype=bool)
        may_fire = [bool((st.v >= p.threshold).any()) for st, p in zip(states, self.params)]

        analog: list[list[tuple[int, np.ndarray]]] = [[] for _ in pops]  # (delay, current) per population
        analog_targets = set() if encoded.is_spiking else {pr.target for pr in self.outgoing[INPUT]}
        skippable = [quiet and p.name not in analog_targets for quiet, p in zip(self.quiet_without_input, pops)]
        if encoded.is_spiking:
            in_spikes = encoded.spikes(start, stop)
        else:
            x = encoded.current(start, stop)
            for pr in self.outgoing[INPUT]:
                i = self.index[pr.target]
                current = pr.op.forward(x.astype(dtype)).astype(dtype)
                analog[i].append((pr.delay, current))  # reaches the target from step `delay` on
                macs = (x != 0) @ pr.op.fan_out()[0]  # per sample, the same every step
                out.input_macs[pr.name][:] = macs[:, None]

        def emit(source: str, rows: np.ndarray, cols: np.ndarray, t: int) -> None:
            if rows.size == 0:
                return
            indptr = np.zeros(batch + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=batch), out=indptr[1:])
            for pr in self.outgoing[source]:
                j = self.index[pr.target]
                slot = (t + pr.delay) % self.ring_length
                self.deliveries[pr.name].deliver(rows, cols, indptr, ring[j][slot])
                pending[j, slot] = True
                synapses, connections = pr.op.fan_out()
                out.sops[pr.name][:, t] = np.bincount(rows, weights=synapses[cols], minlength=batch)
                out.sops_nominal[pr.name][:, t] = np.bincount(rows, weights=connections[cols], minlength=batch)

        for t in range(steps):
            slot = t % self.ring_length
            if encoded.is_spiking:
                lo, hi = in_spikes.indptr[t * batch], in_spikes.indptr[(t + 1) * batch]
                counts = np.diff(in_spikes.indptr[t * batch:(t + 1) * batch + 1])
                emit(INPUT, np.repeat(np.arange(batch), counts), in_spikes.indices[lo:hi].astype(np.int64), t)
            for i, pop in enumerate(pops):
                if skippable[i] and not pending[i, slot] and not may_fire[i]:
                    continue  # IF, no bias, no input, all below threshold: nothing can happen
                current = ring[i][slot]
                # the discrete form adds analog input and bias to the spikes; the ODE form holds them over the step
                held = None
                if self.params[i].ode and (analog[i] or self.bias[i] is not None):
                    held = held_input[i]
                    held[...] = 0
                into = current if held is None else held
                for delay, analog_current in analog[i]:
                    if t >= delay:
                        into += analog_current
                if self.bias[i] is not None:
                    into += self.bias[i]
                if self.membrane and i == self.output_index:
                    states[i] = integrate(states[i], current, self.params[i], held)
                    out.output[:, t] = states[i].v
                else:
                    spiked, states[i] = neuron_step(states[i], current, self.params[i], held)
                    rows, cols = np.nonzero(spiked)
                    out.spike_counts[pop.name][:, t] = np.bincount(rows, minlength=batch)
                    if i == self.output_index:
                        out.output[:, t] = spiked
                    if pop.name in out.rasters:
                        out.rasters[pop.name].append((rows + start, np.full(rows.size, t), cols))
                    emit(pop.name, rows, cols, t)
                    if skippable[i]:
                        may_fire[i] = bool((states[i].v >= self.params[i].threshold).any())
                current[...] = 0
                pending[i, slot] = False
        return out


register_engine("event", EventEngine)
