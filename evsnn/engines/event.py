"""The event-driven engine: a scipy.sparse event queue with exact SOP counts.

Per step ``t`` and population, in topological order (DESIGN.md, "Time and
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
  weights' size;
- ``sparse``: ``S @ W.T`` with both in CSR.

SOPs are counted from the spikes, never from the kernel that delivered them:
each spike of neuron ``j`` through projection ``p`` adds the number of
non-zero-weight synapses ``j`` has in ``p`` (conv borders and strides exact),
and separately its nominal fan-out (zeros included).

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
from .neurons import NeuronParams, NeuronState, initial_state, integrate, neuron_step

__all__ = ["EventEngine"]


class _DenseDelivery:
    """``out += S @ W.T`` for a dense weight matrix."""

    def __init__(self, op: Dense, dtype: np.dtype, dense_above: float):
        self.wt = np.ascontiguousarray(op.weight.T, dtype=dtype)  # (n_in, n_out)
        self.fan_out = np.count_nonzero(op.weight, axis=0).astype(np.int64)
        self.fan_out_nominal = np.full(op.n_in, op.n_out, dtype=np.int64)
        self.dense_above = dense_above

    def deliver(self, s: sp.csr_array, out: np.ndarray) -> None:
        batch, n_in = s.shape
        if batch >= 8 and s.nnz > self.dense_above * batch * n_in:
            out += s.toarray() @ self.wt
        else:
            out += s @ self.wt


class _SparseDelivery:
    """``out += S @ W.T`` for a CSR weight matrix."""

    def __init__(self, op: Sparse, dtype: np.dtype):
        csr = op.to_csr()
        self.wt = sp.csr_array(csr.T.astype(dtype))  # (n_in, n_out)
        nonzero = csr.data != 0
        self.fan_out = np.bincount(csr.indices[nonzero], minlength=op.n_in).astype(np.int64)
        self.fan_out_nominal = np.bincount(csr.indices, minlength=op.n_in).astype(np.int64)

    def deliver(self, s: sp.csr_array, out: np.ndarray) -> None:
        out += (s @ self.wt).toarray()


class _ConvDelivery:
    """Event scatter of a convolution kernel, without unrolling it.

    For every input pixel the table lists the (kernel tap, output position)
    pairs it reaches. A step's spikes (b, c, pixel) expand to rows
    ``(b, position)`` x columns ``(c, tap)`` of a 0/1 CSR matrix ``M``; then
    ``M @ K`` with ``K[(c, tap), o] = W[o, c, tap]`` gives the output current
    channel-last, one length-``C_out`` axpy per (spike, tap) pair.
    """

    def __init__(self, op: Conv2d, dtype: np.dtype):
        c_out, c_in, kh, kw = op.weight.shape
        _, h, w = op.input_shape
        _, oh, ow = op.out_shape
        (ph, pw), (sh, sw) = op.padding, op.stride
        self.c_out, self.hw, self.ohw, self.taps = c_out, h * w, oh * ow, kh * kw
        # Output rows/cols each input row/col reaches, per kernel row/col: oy = (y + ph - ky) / sh.
        def reach(size: int, pad: int, k: int, stride: int, n_out: int) -> list[list[tuple[int, int]]]:
            table = []
            for y in range(size):
                pairs = []
                for ky in range(k):
                    num = y + pad - ky
                    if num % stride == 0 and 0 <= num // stride < n_out:
                        pairs.append((ky, num // stride))
                table.append(pairs)
            return table

        rows, cols = reach(h, ph, kh, sh, oh), reach(w, pw, kw, sw, ow)
        tap, pos, length = [], [], []
        for y in range(h):
            for x in range(w):
                pairs = [(ky * kw + kx, oy * ow + ox) for ky, oy in rows[y] for kx, ox in cols[x]]
                tap += [p[0] for p in pairs]
                pos += [p[1] for p in pairs]
                length.append(len(pairs))
        self.tap = np.asarray(tap, dtype=np.int64)
        self.pos = np.asarray(pos, dtype=np.int64)
        self.length = np.asarray(length, dtype=np.int64)
        self.start = np.concatenate([[0], np.cumsum(self.length)[:-1]]).astype(np.int64)
        # K[(c, tap), o] = W[o, c, ky, kx]
        self.kernel = np.ascontiguousarray(op.weight.reshape(c_out, c_in * kh * kw).T, dtype=dtype)
        nonzero_per_tap = np.count_nonzero(op.weight, axis=0).reshape(c_in, kh * kw)  # (c_in, taps)
        pix_of = np.repeat(np.arange(h * w), self.length)
        fan = np.zeros((c_in, h * w), dtype=np.int64)
        for c in range(c_in):
            fan[c] = np.bincount(pix_of, weights=nonzero_per_tap[c, self.tap], minlength=h * w)
        self.fan_out = fan.reshape(-1)
        self.fan_out_nominal = np.tile(self.length * c_out, c_in)

    def deliver(self, s: sp.csr_array, out: np.ndarray) -> None:
        batch = s.shape[0]
        b = np.repeat(np.arange(batch, dtype=np.int64), np.diff(s.indptr))
        c, pix = np.divmod(s.indices.astype(np.int64), self.hw)
        lengths = self.length[pix]
        total = int(lengths.sum())
        if total == 0:
            return
        spike = np.repeat(np.arange(b.size), lengths)
        first = np.cumsum(lengths) - lengths  # where each spike's pairs start in the expanded arrays
        entry = np.arange(total) - np.repeat(first - self.start[pix], lengths)
        rows = b[spike] * self.ohw + self.pos[entry]
        cols = c[spike] * self.taps + self.tap[entry]
        m = sp.csr_array((np.ones(total, dtype=self.kernel.dtype), (rows, cols)),
                         shape=(batch * self.ohw, self.kernel.shape[0]))
        current = m @ self.kernel  # (batch * positions, c_out), channel-last
        out += current.reshape(batch, self.ohw, self.c_out).transpose(0, 2, 1).reshape(batch, -1)


def _delivery(pr: Projection, dtype: np.dtype, dense_above: float):
    op = pr.op
    if isinstance(op, Dense):
        return _DenseDelivery(op, dtype, dense_above)
    if isinstance(op, Conv2d):
        return _ConvDelivery(op, dtype)
    return _SparseDelivery(op, dtype)


def _spike_matrix(rows: np.ndarray, cols: np.ndarray, batch: int, n: int, dtype: np.dtype) -> sp.csr_array:
    """CSR (batch x n) of ones from row-major sorted spike coordinates."""
    indptr = np.zeros(batch + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=batch), out=indptr[1:])
    return sp.csr_array((np.ones(rows.size, dtype=dtype), cols, indptr), shape=(batch, n))


class EventEngine(Engine):
    """Event-driven simulation of a :class:`~evsnn.SpikingModel` (registered as ``"event"``).

    Parameters
    ----------
    model : SpikingModel
    dtype : {"float32", "float64"}, default="float32"
        Precision of potentials and weights.
    dense_above : float, default=0.1
        Spike density (fraction of batch x neurons) above which dense
        projections use a BLAS product instead of the CSR event loop, at
        batch >= 8. ``1.0`` disables it.
    """

    name = "event"

    def __init__(self, model: SpikingModel, *, dtype: str = "float32", dense_above: float = 0.1):
        super().__init__(model, dtype=dtype)
        self.dense_above = float(dense_above)
        self.params = [NeuronParams.from_population(p, self.dtype, engine=self.name) for p in model.populations]
        self.index = {p.name: i for i, p in enumerate(model.populations)}
        self.deliveries = {pr.name: _delivery(pr, self.dtype, self.dense_above) for pr in model.projections}
        self.ring_length = 1 + max((pr.delay for pr in model.projections), default=0)
        self.outgoing = {name: [pr for pr in model.projections if pr.source == name]
                         for name in [INPUT, *self.index]}
        self.output_index = self.index[model.output]
        self.membrane = model.readout == "membrane"
        # Populations that cannot change without spikes arriving (unless fed analog input, see run_batch).
        self.quiet_without_input = [p.neuron.kind == "if" and p.bias is None
                                    and not (self.membrane and i == self.output_index)
                                    for i, p in enumerate(model.populations)]
        self.bias = [None if p.bias is None else p.bias.reshape(-1).astype(self.dtype) for p in model.populations]

    @property
    def settings(self) -> dict:
        return {**super().settings, "dense_above": self.dense_above}

    def run_batch(self, encoded: EncodedInput, start: int, stop: int, record: frozenset[str]) -> BatchOutput:
        model, dtype = self.model, self.dtype
        batch, steps = stop - start, encoded.steps
        pops = model.populations
        sizes = [p.size for p in pops]
        out = BatchOutput.empty(model, encoded, batch, record)
        states = [initial_state(p, batch, n, dtype) for p, n in zip(self.params, sizes)]
        ring = [np.zeros((self.ring_length, batch, n), dtype=dtype) for n in sizes]
        pending = np.zeros((len(pops), self.ring_length), dtype=bool)
        may_fire = [bool((st.v >= p.threshold).any()) for st, p in zip(states, self.params)]

        analog = [None] * len(pops)
        analog_targets = set() if encoded.is_spiking else {pr.target for pr in self.outgoing[INPUT]}
        skippable = [quiet and p.name not in analog_targets for quiet, p in zip(self.quiet_without_input, pops)]
        if encoded.is_spiking:
            in_spikes = encoded.spikes(start, stop).astype(dtype)
        else:
            x = encoded.current(start, stop)
            for pr in self.outgoing[INPUT]:
                i = self.index[pr.target]
                current = pr.op.forward(x.astype(dtype)).astype(dtype)
                analog[i] = current if analog[i] is None else analog[i] + current
                macs = (x != 0) @ self.deliveries[pr.name].fan_out  # per sample, the same every step
                out.input_macs[pr.name][:] = macs[:, None]

        def emit(source: str, rows: np.ndarray, cols: np.ndarray, n: int, t: int) -> None:
            if rows.size == 0:
                return
            s = _spike_matrix(rows, cols, batch, n, dtype)
            for pr in self.outgoing[source]:
                d = self.deliveries[pr.name]
                j = self.index[pr.target]
                slot = (t + pr.delay) % self.ring_length
                d.deliver(s, ring[j][slot])
                pending[j, slot] = True
                out.sops[pr.name][:, t] = np.bincount(rows, weights=d.fan_out[cols], minlength=batch)
                out.sops_nominal[pr.name][:, t] = np.bincount(rows, weights=d.fan_out_nominal[cols],
                                                              minlength=batch)

        for t in range(steps):
            slot = t % self.ring_length
            if encoded.is_spiking:
                lo, hi = in_spikes.indptr[t * batch], in_spikes.indptr[(t + 1) * batch]
                counts = np.diff(in_spikes.indptr[t * batch:(t + 1) * batch + 1])
                emit(INPUT, np.repeat(np.arange(batch), counts), in_spikes.indices[lo:hi].astype(np.int64),
                     encoded.n_inputs, t)
            for i, pop in enumerate(pops):
                if skippable[i] and not pending[i, slot] and not may_fire[i]:
                    continue  # IF, no bias, no input, all below threshold: nothing can happen
                current = ring[i][slot]
                if analog[i] is not None:
                    current += analog[i]
                if self.bias[i] is not None:
                    current += self.bias[i]
                if self.membrane and i == self.output_index:
                    states[i] = integrate(states[i], current, self.params[i])
                    out.output[:, t] = states[i].v
                else:
                    spiked, states[i] = neuron_step(states[i], current, self.params[i])
                    rows, cols = np.nonzero(spiked)
                    out.spike_counts[pop.name][:, t] = np.bincount(rows, minlength=batch)
                    if i == self.output_index:
                        out.output[:, t] = spiked
                    if pop.name in out.rasters:
                        out.rasters[pop.name].append((rows + start, np.full(rows.size, t), cols))
                    emit(pop.name, rows, cols, sizes[i], t)
                    if skippable[i]:
                        may_fire[i] = bool((states[i].v >= self.params[i].threshold).any())
                current[...] = 0
                pending[i, slot] = False
        return out


register_engine("event", EventEngine)
