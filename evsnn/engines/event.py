"""The event-driven engine: compiled event delivery with exact SOP counts.

Per step ``t`` and population, in topological order (docs/design.md, "Time and
update order"):

1. take the input due at ``t`` from the population's ring buffer (slot
   ``t mod L``, ``L = max delay + 1``), add the analog input current and the
   bias;
2. integrate, threshold, reset and emit in one compiled pass
   (:func:`evsnn.engines.kernels.neuron_step`, the formulas of
   :mod:`evsnn.engines.neurons`), which writes each row's spike indices;
3. push the spikes through every outgoing projection into the target's slot
   ``(t + delay) mod L``.

Delivery reads only the synapses of neurons that spiked, so its work grows
with spikes x fan-out, not with neurons x steps (:mod:`evsnn.engines.kernels`):

- ``dense``: row ``j`` of ``W.T`` added for each spike of ``j``;
- ``conv2d``: an event scatter of the kernel. Each spike at (c, y, x) adds
  kernel slices ``W[:, c, ky, kx]`` at the output positions it reaches; the
  (tap, position) pairs of every input pixel are tabulated once per model,
  so the engine never unrolls the convolution and its memory stays near the
  weights' size;
- ``sparse``: the CSR rows of ``W.T`` of the spiking neurons.

Where a step's spikes are dense enough, dense and conv2d projections use
torch's matmul / conv2d of the dense spike array instead: above the
projection's crossover (:func:`blas_cost_ratio` times its dense MACs per
connection), or above ``dense_above`` at batch >= 8 when that is given. A
conv2d that is an average pooling folded into the conv after it
(:func:`~evsnn.engines.torch_ops.pool_factorization`) pools first there, with a quarter of the MACs
for a 2x2 pool.

SOPs are counted from the spikes, never from the kernel that delivered them:
each spike of neuron ``j`` through projection ``p`` adds the number of
non-zero-weight synapses ``j`` has in ``p`` (conv borders and strides exact),
and separately its nominal fan-out (zeros included), both from
:meth:`~evsnn.ops.Dense.fan_out`, the rule every engine shares.

Notes
-----
One compiled call (:func:`evsnn.engines.kernels.run_steps`) runs these steps for a whole batch; it hands a
step back to Python only for a recorded population's raster and for spikes that go to a dense product. Where
no step goes dense and nothing is recorded, a batch on several threads runs with its rows apart instead
(:func:`~evsnn.engines.kernels.run_rows`: each thread its share of the rows through every step, so the threads
meet once per batch): chosen where the input's spikes stay below their dense limits and the previous batch's
populations' did; a batch in which a step turns out to be above a limit is run again step by step, so the choice
changes no result.

A population that is IF (no leak), has no bias, no analog input and no
pending input, and whose potentials are all below threshold, is skipped: it
cannot spike and its state does not change. The event kernels add in the order
of the scipy loops they replaced (float64 and float32 runs are bit-identical to
them); torch's products add in another order, so a step delivered densely may
differ in the last bit (in float64 this can flip a spike that lands within
rounding of its threshold). Pass ``dense_above=1.0`` (never dense) for runs
that are bit-reproducible across batch sizes and machines. Batch rows never
share work, so the ``threads`` a batch is split over change nothing.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from ..encoding import EncodedInput
from ..model import INPUT, Projection, SpikingModel
from ..ops import Conv2d, Dense, Sparse
from ..threads import one_blas_thread
from . import register_engine
from .base import BatchOutput, Engine, spike_fed
from . import kernels
from .neurons import NeuronParams, NeuronState, initial_state
from .torch_ops import TorchOperator, dense_macs

__all__ = ["EventEngine"]

#: Neuron kinds the event engine integrates (every kind).
EVENT_KINDS = ("if", "lif", "srm", "cuba_lif", "li", "cuba_li", "i", "threshold")


#: Time of one multiply-add of torch's product (matmul / conv2d, the dense spike array's filling and the add included)
#: over the time of one synaptic add of the event kernel, float32, one core, by operator and batch size. Measured
#: with ``python benchmarks/crossover.py`` (two runs on a 2-core AVX-512 machine, rounded; docs/design.md, "Engines").
#: A projection goes dense at a step when its spikes exceed ``ratio * MACs / connections * batch * n_in``.
BLAS_COST_RATIO = {"dense": {1: 1.4, 8: 0.46, 64: 0.33}, "conv2d": {1: 0.21, 8: 0.11, 64: 0.09}}


def blas_cost_ratio(kind: str, batch: int) -> float:
    """:data:`BLAS_COST_RATIO` of operator ``kind`` at the largest measured batch size not above ``batch``."""
    table = BLAS_COST_RATIO[kind]
    return table[max(b for b in table if b <= batch)]


class _Delivery:
    """What every delivery shares: the spike-count limit above which a step goes dense (BLAS), and its buffers.

    ``dense_above`` (a fraction of batch x ``n_in``, at batch >= 8) overrides the measured crossover
    (:func:`blas_cost_ratio` times the operator's dense MACs per connection); ``None``: the crossover.
    """

    blas = False  # whether the operator has a BLAS path

    def __init__(self, op, dtype: np.dtype, dense_above: float | None):
        self.op, self.dtype, self.dense_above = op, dtype, dense_above
        self.buffers: dict[int, dict[str, np.ndarray]] = {}  # per batch size, allocated once

    def dense_limit(self, batch: int) -> float:
        """Spikes of a step above which this projection is delivered by BLAS (inf: never)."""
        if not self.blas:
            return np.inf
        if self.dense_above is not None:
            return self.dense_above * batch * self.op.n_in if batch >= 8 else np.inf
        if not self.op.n_connections():  # e.g. a strided conv that only reaches padding: nothing to deliver
            return np.inf
        density = blas_cost_ratio(self.op.kind, batch) * self.macs / self.op.n_connections()
        return density * batch * self.op.n_in if density < 1 else np.inf

    def analog(self, parallel: bool, x: np.ndarray, out: np.ndarray) -> None:
        """``out[...] =`` the operator applied to analog input ``x`` (batch, n_in) in this dtype: the operator's own
        product, on one BLAS thread so that the sums are the same whatever the run's thread count."""
        with one_blas_thread():
            out[...] = self.op.forward(x.astype(self.dtype))

    def buffer(self, batch: int) -> dict[str, np.ndarray]:
        if batch not in self.buffers:
            self.buffers[batch] = self.allocate(batch)
        return self.buffers[batch]

    def allocate(self, batch: int) -> dict[str, np.ndarray]:
        return {}


class _DenseDelivery(_Delivery):
    """Rows of ``W.T`` for each spike (compiled loop), or torch's matmul of the dense spike array."""

    blas = True

    def __init__(self, op: Dense, dtype: np.dtype, dense_above: float | None):
        super().__init__(op, dtype, dense_above)
        self.product = TorchOperator(op, dtype=_torch_dtype(dtype))  # dense steps
        self.wt = self.product.weight_t.numpy()  # (n_in, n_out), the same memory, for the event kernel
        self.macs = dense_macs(op)

    def analog(self, parallel: bool, x: np.ndarray, out: np.ndarray) -> None:
        """A compiled product over the non-zero inputs, on the run's threads (:func:`kernels.analog_dense`)."""
        kernels.analog_dense(parallel, np.ascontiguousarray(x, dtype=self.dtype), self.wt, out)

    def allocate(self, batch: int) -> dict[str, np.ndarray]:
        n_in, n_out = self.wt.shape
        return {"spikes": np.zeros((batch, n_in), dtype=self.dtype), "product": np.zeros((batch, n_out), self.dtype)}

    def deliver(self, parallel, starts, counts, flat, dense, out, count) -> None:
        if dense:
            import torch

            buf = self.buffer(out.shape[0])
            kernels.fill_dense(parallel, starts, counts, flat, buf["spikes"])
            product = self.product(torch.from_numpy(buf["spikes"]), out=torch.from_numpy(buf["product"]))
            torch.from_numpy(out).add_(product)  # on torch's threads, which the run sizes
            kernels.count_sops(parallel, starts, counts, flat, *count)
        else:
            kernels.deliver_dense(parallel, starts, counts, flat, self.wt, out, *count)


class _SparseDelivery(_Delivery):
    """``out += S @ W.T`` with ``W.T`` in CSR: a compiled loop over the spiking rows of ``W.T``."""

    def __init__(self, op: Sparse, dtype: np.dtype, dense_above: float | None):
        super().__init__(op, dtype, dense_above)
        wt = sp.csr_array(op.to_csr().T.astype(dtype))  # (n_in, n_out): row j lists neuron j's targets
        self.indptr, self.indices = wt.indptr.astype(np.int64), wt.indices.astype(np.int64)
        self.data = np.ascontiguousarray(wt.data, dtype=dtype)

    def allocate(self, batch: int) -> dict[str, np.ndarray]:
        return {"sums": np.zeros((batch, self.op.n_out), dtype=self.dtype)}

    def deliver(self, parallel, starts, counts, flat, dense, out, count) -> None:
        kernels.deliver_csr(parallel, starts, counts, flat, self.indptr, self.indices, self.data,
                            self.buffer(out.shape[0])["sums"], out, *count)


class _ConvDelivery(_Delivery):
    """Event scatter of a convolution kernel, without unrolling it (or torch's conv2d when dense).

    For every input pixel a table lists the (kernel tap, output position)
    pairs it reaches. A spike at (b, c, pixel) adds the kernel slice
    ``W[:, c, tap]`` (length ``C_out``) at output ``(b, position)`` for each of
    its pixel's pairs, into a channel-last buffer that is then added to the
    target's input (:func:`evsnn.engines.kernels.deliver_conv`).
    """

    blas = True

    def __init__(self, op: Conv2d, dtype: np.dtype, dense_above: float | None):
        super().__init__(op, dtype, dense_above)
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
        self.product = TorchOperator(op, dtype=_torch_dtype(dtype))  # dense steps (pooled first where it can)
        self.macs = dense_macs(op)

    def allocate(self, batch: int) -> dict[str, np.ndarray]:
        return {"scatter": np.zeros((batch, self.ohw, self.c_out), dtype=self.dtype)}

    def deliver(self, parallel, starts, counts, flat, dense, out, count) -> None:
        batch = out.shape[0]
        if dense:
            import torch

            spikes = self.buffer_dense(batch)
            kernels.fill_dense(parallel, starts, counts, flat, spikes)
            torch.from_numpy(out).add_(self.product(torch.from_numpy(spikes)))  # on torch's threads
            kernels.count_sops(parallel, starts, counts, flat, *count)
        else:
            kernels.deliver_conv(parallel, starts, counts, flat, self.hw, self.taps, self.start, self.length,
                                 self.tap, self.pos, self.kernel, self.buffer(batch)["scatter"], out, *count)

    def buffer_dense(self, batch: int) -> np.ndarray:
        buf = self.buffer(batch)
        if "spikes" not in buf:
            buf["spikes"] = np.zeros((batch, self.op.n_in), dtype=self.dtype)
        return buf["spikes"]


def _torch_dtype(dtype: np.dtype):
    import torch

    return getattr(torch, dtype.name)


def _delivery(pr: Projection, dtype: np.dtype, dense_above: float | None) -> _Delivery:
    op = pr.op
    if isinstance(op, Dense):
        return _DenseDelivery(op, dtype, dense_above)
    if isinstance(op, Conv2d):
        return _ConvDelivery(op, dtype, dense_above)
    return _SparseDelivery(op, dtype, dense_above)


class EventEngine(Engine):
    """Event-driven simulation of a :class:`~evsnn.SpikingModel` (registered as ``"event"``).

    Parameters
    ----------
    model : SpikingModel
    dtype : {"float32", "float64"}, default="float32"
        Precision of potentials and weights.
    dense_above : float, optional
        Spike density (fraction of batch x neurons) above which dense and
        conv2d projections use torch's matmul / conv2d instead of the event
        kernels, at batch >= 8; ``1.0`` disables it. Default: each
        projection's measured crossover (:func:`blas_cost_ratio`).
    rows_apart : bool, default=True
        On several threads, run a batch with its rows apart where no step
        goes dense (see Notes); ``False``: always step by step. The results
        are the same either way; this only changes where threads wait.
    """

    name = "event"

    def __init__(self, model: SpikingModel, *, dtype: str = "float32", dense_above: float | None = None,
                 rows_apart: bool = True):
        super().__init__(model, dtype=dtype)
        self.dense_above = None if dense_above is None else float(dense_above)
        if not isinstance(rows_apart, (bool, np.bool_)):
            raise ValueError(f"event engine option rows_apart must be true or false, got {rows_apart!r}")
        self.rows_apart = bool(rows_apart)
        self.params = [NeuronParams.from_population(p, self.dtype, engine=self.name, dt=model.dt,
                                                    kinds=EVENT_KINDS) for p in model.populations]
        self.tables = [_param_table(p, n, self.dtype) for p, n in zip(self.params, (q.size for q in model.populations))]
        self.index = {p.name: i for i, p in enumerate(model.populations)}
        self.check_tables()
        self.deliveries = {pr.name: _delivery(pr, self.dtype, self.dense_above) for pr in model.projections}
        self.ring_length = 1 + max((pr.delay for pr in model.projections), default=0)
        self.outgoing = {name: [pr for pr in model.projections if pr.source == name]
                         for name in [INPUT, *self.index]}
        self.output_index = self.index[model.output]
        self.membrane = model.readout == "membrane"
        self.membrane_pops = [self.membrane and i == self.output_index for i in range(len(model.populations))]
        self.marking = [not self.membrane and i == self.output_index  # spikes are the output
                        for i in range(len(model.populations))]
        # Populations that cannot change without spikes arriving (unless fed analog input, see run_batch).
        self.quiet_without_input = [p.neuron.kind in ("if", "threshold") and p.bias is None
                                    and self.params[i].leak is None and not self.membrane_pops[i]
                                    for i, p in enumerate(model.populations)]
        self.bias = [None if p.bias is None else p.bias.reshape(-1).astype(self.dtype) for p in model.populations]
        self._build_routes()
        self.loops: dict[int, _LoopState] = {}  # the step loop's arrays, per batch size
        self.plans: dict[tuple, tuple] = {}  # the step loop's flags, per (spiking input, recorded populations)

    def _build_routes(self) -> None:
        """The step loop's constants: the route table (projections grouped by source, the input first), the
        analog input's (target, delay), the arrays of its lists that do not depend on the batch size (the neuron
        tables, biases and operators' arrays) and the routes' fan-outs."""
        kinds = {_DenseDelivery: kernels.KIND_DENSE, _ConvDelivery: kernels.KIND_CONV,
                 _SparseDelivery: kernels.KIND_CSR}
        self.items: dict[type, list[_Delivery]] = {kind: [] for kind in kinds}
        self.route_order = [pr for source in [INPUT, *self.index] for pr in self.outgoing[source]]
        self.route_ptr = np.cumsum([0] + [len(self.outgoing[s]) for s in [INPUT, *self.index]], dtype=np.int64)
        rows = []
        for pr in self.route_order:
            d = self.deliveries[pr.name]
            items = self.items[type(d)]
            hw, taps = (d.hw, d.taps) if isinstance(d, _ConvDelivery) else (0, 0)
            rows.append([kinds[type(d)], self.index[pr.target], pr.delay, len(items), -1, hw, taps])
            items.append(d)
        self.routes = np.array(rows, dtype=np.int64).reshape(-1, len(kernels.ROUTE_ROWS))
        self.analog_routes = np.array([[self.index[pr.target], pr.delay] for pr in self.outgoing[INPUT]],
                                      dtype=np.int64).reshape(-1, 2)
        dense, conv, csr = (self.items[k] for k in kinds)
        self.constants = {
            "tables": self.tables, "bias": [np.zeros(0, self.dtype) if b is None else b for b in self.bias],
            "dense_wt": [d.wt for d in dense], "conv_kernel": [d.kernel for d in conv],
            "conv_tables": [a for d in conv for a in (d.start, d.length, d.tap, d.pos)],
            "csr_tables": [a for d in csr for a in (d.indptr, d.indices)], "csr_data": [d.data for d in csr]}
        self.fan_out = [pr.op.fan_out()[0] for pr in self.route_order] + [pr.op.fan_out()[1] for pr in self.route_order]

    @property
    def settings(self) -> dict:
        return {**super().settings, "dense_above": self.dense_above, "rows_apart": self.rows_apart}

    def table_bytes(self) -> int:
        size = self.dtype.itemsize
        total = sum(len(kernels.PARAM_ROWS) * p.size * size for p in self.model.populations)  # the fused steps' tables
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
                # the (pixel, tap) mask, its nonzero() and the tap / position / pixel tables; two kernel copies
                total += rows.shape[0] * cols.shape[0] * kh * kw + 7 * 8 * pairs + 2 * c_out * c_in * kh * kw * size
        return total

    def batch_bytes(self, batch: int, steps: int, spiking: bool) -> int:
        size = self.dtype.itemsize
        total = 0
        for p in self.model.populations:
            # potential, synaptic current, held input, spike indices; the ring buffer
            total += batch * p.size * (3 * size + 8) + self.ring_length * batch * p.size * size
        for pr in self.model.projections:
            op = pr.op
            if pr.source == INPUT and not spiking:  # the projected current, held for the run
                total += batch * (op.n_in + 2 * op.n_out) * size
            elif isinstance(op, Conv2d):  # scatter buffer; dense steps: the spike array and torch's result
                total += batch * (op.n_in + 2 * op.n_out) * size
            elif isinstance(op, Dense):  # dense steps: the spike array and the product
                total += batch * (op.n_in + op.n_out) * size
            else:  # the row sums
                total += batch * op.n_out * size
        return total

    def run_batch(self, encoded: EncodedInput, start: int, stop: int, record: frozenset[str]) -> BatchOutput:
        model, dtype = self.model, self.dtype
        batch, steps = stop - start, encoded.steps
        pops = model.populations
        parallel = self.threads > 1 and batch > 1
        if parallel:
            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        out = BatchOutput.empty(model, encoded, batch, record)
        loop = self._loop(batch)
        may_fire = loop.reset()
        pending = np.zeros((len(pops), self.ring_length), dtype=bool)  # whether slot s of population i holds input
        flags, pop_flags, routes, skippable = self._plan(encoded.is_spiking, record)
        recorded = pop_flags[:, kernels.POP_ROWS.index("recorded")]

        if encoded.is_spiking:
            raster = encoded.raster(start, stop, threads=self.threads)
            in_indptr, in_flat = kernels.spike_rows(parallel, raster.reshape(steps * batch, -1))
            in_counts = np.diff(in_indptr)
        else:
            in_indptr = in_counts = in_flat = np.zeros(1, dtype=np.int64)
            x = encoded.current(start, stop)
            for k, pr in enumerate(self.outgoing[INPUT]):  # reaches the target from step `delay` on
                self.deliveries[pr.name].analog(parallel, x, loop.analog[k])
                out.input_macs[pr.name][:] = pr.op.input_macs(x)[:, None]  # per sample, the same every step
        marks = np.zeros((1, 1, 1), dtype=np.int64) if self.membrane else out.output
        membrane_out = out.output if self.membrane else np.zeros((1, 1, 1), dtype=np.float64)

        def emit(source: str, first: np.ndarray, count: np.ndarray, flat: np.ndarray, total: int, t: int) -> None:
            """Deliver one source's spikes of step ``t`` here, where one of its routes goes dense (BLAS)."""
            for pr in self.outgoing[source]:
                j, slot = self.index[pr.target], (t + pr.delay) % self.ring_length
                self.deliveries[pr.name].deliver(parallel, first, count, flat, total > loop.limits[pr.name],
                                                 loop.ring[j][slot], (*pr.op.fan_out(), out.sops[pr.name],
                                                                      out.sops_nominal[pr.name], t))
                pending[j, slot] = True

        records = (in_indptr, in_counts, in_flat, out.count_stack, out.sop_stack, marks, membrane_out)
        if parallel and self.rows_apart and self._rows_apart(loop, recorded, in_indptr if encoded.is_spiking else None):
            kernels.run_rows(min(numba.get_num_threads(), batch), steps, encoded.is_spiking, flags, pop_flags,
                             may_fire, routes, self.route_ptr, self.analog_routes, loop.limit_array, *loop.arrays,
                             *records)
            loop.clean = not loop.went_dense(out.count_stack)
            if loop.clean:
                return out
            # a step would have gone dense: that step's sums differ from the event kernels', run the batch again
            for record in (out.count_stack, out.sop_stack, out.output):
                record[...] = 0
            may_fire = loop.reset()
        t, first = 0, -1
        while True:
            t, i, total, above = kernels.run_steps(
                t, first, steps, parallel, 0, batch, True, encoded.is_spiking, flags, pop_flags, pending, may_fire,
                routes, self.route_ptr, self.analog_routes, loop.limit_array, *loop.arrays, *records)
            if t == steps:
                loop.clean = not loop.went_dense(out.count_stack)
                return out
            if i < 0:  # the input's spikes of step t go dense
                lo, hi = t * batch, (t + 1) * batch
                emit(INPUT, in_indptr[lo:hi], in_counts[lo:hi], in_flat, total, t)
            else:  # population i has stepped: record its raster, deliver its spikes (some by BLAS)
                pop, idx, counts = pops[i], loop.idx[i], loop.counts[i]
                if recorded[i]:
                    rows = np.repeat(np.arange(batch), counts)
                    cols = idx[np.arange(pop.size) < counts[:, None]]
                    out.rasters[pop.name].append((rows + start, np.full(rows.size, t), cols))
                if total:
                    emit(pop.name, loop.starts[i], counts, loop.flat[i], total, t)
                if skippable[i]:
                    may_fire[i] = above
                pending[i, t % self.ring_length] = False
            t, first = (t, i + 1) if i + 1 < len(pops) else (t + 1, -1)

    def _rows_apart(self, loop: "_LoopState", recorded: np.ndarray, in_indptr: np.ndarray | None) -> bool:
        """Whether to run the batch with its rows apart (:func:`~evsnn.engines.kernels.run_rows`): nothing recorded
        as a raster, no step of the input's spikes above its routes' dense limit, and, where a population's spikes
        could go dense, the batch before this one (of this size) had no such step. Where a step then would have
        gone dense after all, :meth:`run_batch` runs the batch again step by step, so this choice costs time at
        worst, never a result."""
        if recorded.any() or (loop.watch and not loop.clean):
            return False
        if in_indptr is None:
            return True
        per_step = np.diff(in_indptr[::loop.batch])
        return not (per_step > loop.input_limit).any()

    def prepare(self, encoded: EncodedInput, batch_size: int | None = None) -> None:
        """Allocate the step loop's arrays for the run's batch size (numba typed lists: about 10 µs per array)."""
        if batch_size is not None:
            self._loop(batch_size)

    def _plan(self, spiking: bool, record: frozenset[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[bool]]:
        """The step loop's flags for runs with this input kind and these recorded populations (computed once):
        :data:`~evsnn.engines.kernels.FLAG_ROWS` and :data:`~evsnn.engines.kernels.POP_ROWS` per population, the
        route table with each route's row of the SOP records, and which populations may be skipped."""
        key = (spiking, record)
        if key not in self.plans:
            pops = self.model.populations
            analog_targets = set() if spiking else {pr.target for pr in self.outgoing[INPUT]}
            fed = [p.name in analog_targets for p in pops]
            # the ODE form holds analog input and bias over the step, in a buffer of its own
            held = [p.ode and (f or b is not None) for p, f, b in zip(self.params, fed, self.bias)]
            skippable = [quiet and not f for quiet, f in zip(self.quiet_without_input, fed)]
            recorded = [p.name in record for p in pops]
            pop_flags = np.array([[b is not None, h, s, r, m] for b, h, s, r, m
                                  in zip(self.bias, held, skippable, recorded, self.membrane_pops)], dtype=np.int64)
            flags = np.stack([step_flags(p, h, not m, mark) for p, h, m, mark
                              in zip(self.params, held, self.membrane_pops, self.marking)])
            sop_rows = {name: k for k, name in enumerate(spike_fed(self.model, spiking))}
            routes = self.routes.copy()
            routes[:, kernels.ROUTE_ROWS.index("record")] = [sop_rows.get(pr.name, -1) for pr in self.route_order]
            self.plans[key] = (flags, pop_flags, routes, skippable)
        return self.plans[key]

    def _loop(self, batch: int) -> "_LoopState":
        """The step loop's working arrays for ``batch`` rows, allocated once per batch size."""
        if batch not in self.loops:
            self.loops[batch] = _LoopState(self, batch)
        return self.loops[batch]


class _LoopState:
    """What :func:`~evsnn.engines.kernels.run_steps` works on for one batch size: numpy arrays (which the Python side
    reads) and, in ``arrays``, numba typed lists of the same memory (built once: an item costs about 10 µs)."""

    def __init__(self, engine: "EventEngine", batch: int):
        dtype, sizes = engine.dtype, [p.size for p in engine.model.populations]
        self.batch, self.dtype, self.sizes = batch, dtype, sizes
        initial = [initial_state(p, batch, n, dtype) for p, n in zip(engine.params, sizes)]
        self.v = [st.v for st in initial]
        self.extra = [_extra_state(st, step_flags(p, False, True)) for st, p in zip(initial, engine.params)]
        # the state every run starts from, kept to copy back (building it again costs a batch-1 run ~20 µs)
        self.initial = [(v.copy(), extra.copy()) for v, extra in zip(self.v, self.extra)]
        self.initial_may_fire = np.array([bool((v >= p.threshold).any()) for v, p in zip(self.v, engine.params)])
        self.ring = [np.zeros((engine.ring_length, batch, n), dtype=dtype) for n in sizes]
        self.held = [np.zeros((batch, n), dtype=dtype) if p.ode else v for p, v, n in zip(engine.params, self.v, sizes)]
        self.idx = [np.zeros((batch, n), dtype=np.int64) for n in sizes]
        self.flat = [a.reshape(-1) for a in self.idx]
        self.counts = [np.zeros(batch, dtype=np.int64) for _ in sizes]
        self.at_threshold = [np.zeros(batch, dtype=bool) for _ in sizes]
        self.starts = [np.arange(batch, dtype=np.int64) * n for n in sizes]
        self.analog = [np.zeros((batch, engine.model.population(pr.target).size), dtype=dtype)
                       for pr in engine.outgoing[INPUT]]
        self.limits = {name: d.dense_limit(batch) for name, d in engine.deliveries.items()}
        arrays = {**engine.constants, "v": self.v, "held": self.held, "analog": self.analog, "extra": self.extra,
                  "ring": self.ring, "flat": self.flat, "counts": self.counts, "starts": self.starts,
                  "conv_buf": [d.buffer(batch)["scatter"] for d in engine.items[_ConvDelivery]],
                  "csr_buf": [d.buffer(batch)["sums"] for d in engine.items[_SparseDelivery]]}
        likes = {"float1": np.zeros(1, dtype), "float2": np.zeros((1, 1), dtype), "float3": np.zeros((1, 1, 1), dtype),
                 "int1": np.zeros(1, np.int64)}
        bases, lists = [], []
        for kind, names in kernels.LISTS.items():
            members = []
            for name in names:
                bases.append(len(members))
                members += arrays[name]
            lists.append(_typed_list(members, likes[kind]))
        fixed = np.zeros(1, dtype=np.int64)
        fixed.flags.writeable = False  # the operators' fan-out arrays are read-only
        self.limit_array = np.array([self.limits[pr.name] for pr in engine.route_order], dtype=np.float64)
        # run_steps' and run_rows' arguments from ``bases`` to ``at_threshold``
        self.arrays = (np.array(bases, dtype=np.int64), *lists, _typed_list(engine.fan_out, fixed),
                       _typed_list(self.idx, np.zeros((1, 1), np.int64)),
                       _typed_list(self.at_threshold, np.zeros(1, bool)))
        # the spike limits run_rows must stay below: the input's lowest, and each population's that has a finite one
        ptr = engine.route_ptr
        self.input_limit = self.limit_array[ptr[0]:ptr[1]].min(initial=np.inf)
        self.watch = [(i, lowest) for i in range(len(sizes))
                      if np.isfinite(lowest := self.limit_array[ptr[i + 1]:ptr[i + 2]].min(initial=np.inf))]
        self.clean = False  # whether the last batch of this size had no population's step above its dense limit

    def went_dense(self, count_stack: np.ndarray) -> bool:
        """Whether a population's spikes in some step of a batch (``count_stack``: spikes per population, row and
        step) were above one of its routes' dense limits."""
        return any((count_stack[i].sum(axis=0) > lowest).any() for i, lowest in self.watch)

    def reset(self) -> np.ndarray:
        """Back to the state at the start of a run (:func:`~evsnn.engines.neurons.initial_state`), nothing
        pending; returns a fresh copy of which populations may fire in it."""
        for v, extra, ring, (v0, extra0) in zip(self.v, self.extra, self.ring, self.initial):
            v[...] = v0
            extra[...] = extra0
            ring[...] = 0
        return self.initial_may_fire.copy()


def _typed_list(arrays: list[np.ndarray], like: np.ndarray) -> numba.typed.List:
    """A numba typed list of ``arrays`` (the same memory), typed like ``like`` (so that it may be empty)."""
    out = numba.typed.List.empty_list(numba.typeof(like))
    for a in arrays:
        out.append(a)
    return out


def step_flags(p: NeuronParams, held: bool, emit: bool, mark: bool = False) -> np.ndarray:
    """The :data:`evsnn.engines.kernels.FLAG_ROWS` of a population (``held``: it reads held input; ``emit``: it
    spikes, not a membrane read-out; ``mark``: its spikes are the run's output)."""
    mode = (kernels.MODE_THRESHOLD if p.kind == "threshold" else kernels.MODE_SRM if p.kind == "srm"
            else kernels.MODE_DISCRETE if not p.ode else kernels.MODE_ODE_CUBA if p.alpha is not None
            else kernels.MODE_ODE)
    return np.array([mode, p.leak is not None, held, p.strict, p.reset == "zero", emit, mark], dtype=np.int64)


def _extra_state(state: NeuronState, flags: np.ndarray) -> np.ndarray:
    """The state a population's mode keeps beside ``v`` (:data:`~evsnn.engines.kernels.EXTRA_STATE`), stacked
    into the ``(k, batch, n)`` array the fused step updates; a ``(1, 1, 1)`` dummy for the modes without."""
    names = kernels.EXTRA_STATE.get(int(flags[0]), ())
    if not names:
        return np.zeros((1, 1, 1), dtype=state.v.dtype)
    return np.stack([getattr(state, name) for name in names])


def _param_table(p: NeuronParams, n: int, dtype: np.dtype) -> np.ndarray:
    """The :data:`evsnn.engines.kernels.PARAM_ROWS` of ``p``, one column per neuron (0 where a value is None)."""
    table = np.zeros((len(kernels.PARAM_ROWS), n), dtype=dtype)
    for row, name in enumerate(kernels.PARAM_ROWS):
        value = getattr(p, name)
        if value is not None:
            table[row] = value
    return table


register_engine("event", EventEngine)
