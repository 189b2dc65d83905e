"""Compiled (numba) loops of the event engine: delivery of spikes, the fused neuron step, and the step loop that
runs a batch with them in one call.

Spikes of one step are held per batch row: row ``b``'s source neurons are
``flat[starts[b] : starts[b] + counts[b]]``, ascending (a population's own
buffer, ``starts[b] = b * n``, or the encoder's CSR). Every kernel works row
by row and a row never reads another row's data, so splitting the rows over
threads (``prange``) cannot change a single bit: each kernel comes as a serial
wrapper and a parallel one over the same row function.

The summation order of each target is the one of the scipy loops these
kernels replace (docs/design.md, "Engines"): spikes in ascending source
order, added one by one (dense rows: straight into the target's input; conv
scatter and CSR: into a zeroed buffer that is then added), so float64 runs
are bit-identical to them. Compiled by :func:`evsnn.engines.jit.compiled`: ``nogil=True``, and
numba's on-disk cache (the first run compiles, later ones load from
``__pycache__``) filled under a lock, so that processes compiling at once
cannot corrupt it.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import compiled

__all__ = ["deliver_dense", "deliver_conv", "deliver_csr", "fill_dense", "analog_dense", "count_sops", "neuron_step",
           "run_steps", "run_rows", "spike_rows",
           "PARAM_ROWS", "FLAG_ROWS", "POP_ROWS", "ROUTE_ROWS", "LISTS", "MODE_DISCRETE", "MODE_ODE", "MODE_ODE_CUBA",
           "MODE_THRESHOLD"]

# --- SOP counting (from the spikes only) ----------------------------------------------------------------------------


@compiled()
def _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t):
    """``sops[b, t]``: the sum of ``synapses[j]`` over row ``b``'s spikes ``j`` (``nominal``: of ``connections[j]``)
    -- the SOP rule of :meth:`evsnn.ops.Dense.fan_out`, applied to the spikes (never to what a delivery kernel did)."""
    s_syn = 0
    s_con = 0
    s = starts[b]
    for k in range(s, s + counts[b]):
        j = flat[k]
        s_syn += synapses[j]
        s_con += connections[j]
    sops[b, t] = s_syn
    nominal[b, t] = s_con


# --- delivery (each row's SOPs counted in the same call) -------------------------------------------------------------


@compiled()
def _dense_row(b, starts, counts, flat, wt, out):
    """``out[b] += wt[j]`` for each spike ``j`` of row ``b``, in order (scipy's csr_matvecs order)."""
    n_out = wt.shape[1]
    s = starts[b]
    for k in range(s, s + counts[b]):
        j = flat[k]
        for i in range(n_out):
            out[b, i] += wt[j, i]


@compiled()
def _deliver_dense_serial(lo, hi, starts, counts, flat, wt, out, synapses, connections, sops, nominal, t):
    for b in range(lo, hi):
        _dense_row(b, starts, counts, flat, wt, out)
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


@compiled(parallel=True)
def _deliver_dense_parallel(starts, counts, flat, wt, out, synapses, connections, sops, nominal, t):
    for b in prange(out.shape[0]):
        _dense_row(b, starts, counts, flat, wt, out)
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


@compiled()
def _conv_row(b, starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out):
    """Kernel scatter of row ``b``: one slice ``kernel[(c, tap)]`` per (spike, tap) pair into ``buf[b]``
    (channel-last, zeroed first), then ``buf[b]`` added to ``out[b]`` (channel-first)."""
    if counts[b] == 0:
        return
    ohw, c_out = buf.shape[1], buf.shape[2]
    rb = buf[b]
    rb[:, :] = 0
    s = starts[b]
    for k in range(s, s + counts[b]):
        col = flat[k]
        c = col // hw
        pixel = col - c * hw
        for e in range(start[pixel], start[pixel] + length[pixel]):
            q = pos[e]
            src = c * taps + tap[e]
            for o in range(c_out):
                rb[q, o] += kernel[src, o]
    for o in range(c_out):
        base = o * ohw
        for q in range(ohw):
            out[b, base + q] += rb[q, o]


@compiled()
def _deliver_conv_serial(lo, hi, starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out, synapses,
                         connections, sops, nominal, t):
    for b in range(lo, hi):
        _conv_row(b, starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out)
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


@compiled(parallel=True)
def _deliver_conv_parallel(starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out, synapses,
                           connections, sops, nominal, t):
    for b in prange(out.shape[0]):
        _conv_row(b, starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out)
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


@compiled()
def _csr_row(b, starts, counts, flat, indptr, indices, data, buf, out):
    """Row ``b`` of ``S @ W.T`` with ``W.T`` in CSR, summed in ``buf[b]`` (zeroed first), then added to ``out[b]``
    (scipy's csr_matmat order)."""
    if counts[b] == 0:
        return
    rb = buf[b]
    rb[:] = 0
    s = starts[b]
    for k in range(s, s + counts[b]):
        j = flat[k]
        for e in range(indptr[j], indptr[j + 1]):
            rb[indices[e]] += data[e]
    for i in range(rb.shape[0]):
        out[b, i] += rb[i]


@compiled()
def _deliver_csr_serial(lo, hi, starts, counts, flat, indptr, indices, data, buf, out, synapses, connections, sops,
                        nominal, t):
    for b in range(lo, hi):
        _csr_row(b, starts, counts, flat, indptr, indices, data, buf, out)
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


@compiled(parallel=True)
def _deliver_csr_parallel(starts, counts, flat, indptr, indices, data, buf, out, synapses, connections, sops,
                          nominal, t):
    for b in prange(out.shape[0]):
        _csr_row(b, starts, counts, flat, indptr, indices, data, buf, out)
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


@compiled()
def _fill_row(b, starts, counts, flat, dense):
    dense[b, :] = 0
    s = starts[b]
    for k in range(s, s + counts[b]):
        dense[b, flat[k]] = 1


@compiled()
def _fill_dense_serial(starts, counts, flat, dense):
    for b in range(dense.shape[0]):
        _fill_row(b, starts, counts, flat, dense)


@compiled(parallel=True)
def _fill_dense_parallel(starts, counts, flat, dense):
    for b in prange(dense.shape[0]):
        _fill_row(b, starts, counts, flat, dense)


def deliver_dense(parallel: bool, starts, counts, flat, wt, out, *count) -> None:
    """``out[b] += sum of wt[j]`` over row ``b``'s spikes ``j`` (``wt``: ``W.T``, shape ``(n_in, n_out)``).

    Every delivery also counts the SOPs of its spikes: ``count`` is :func:`count_sops`'s
    ``(synapses, connections, sops, nominal, t)``."""
    if parallel:
        _deliver_dense_parallel(starts, counts, flat, wt, out, *count)
    else:
        _deliver_dense_serial(0, out.shape[0], starts, counts, flat, wt, out, *count)


def deliver_conv(parallel: bool, starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out,
                 *count) -> None:
    """Event scatter of a convolution kernel (the tables of :class:`evsnn.engines.event._ConvDelivery`); SOPs
    counted as in :func:`deliver_dense`."""
    if parallel:
        _deliver_conv_parallel(starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out, *count)
    else:
        _deliver_conv_serial(0, out.shape[0], starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf,
                             out, *count)


def deliver_csr(parallel: bool, starts, counts, flat, indptr, indices, data, buf, out, *count) -> None:
    """``out[b] += S[b] @ W.T`` with ``W.T`` in CSR (``indptr``, ``indices``, ``data``), row ``j``: neuron j's
    targets; SOPs counted as in :func:`deliver_dense`."""
    if parallel:
        _deliver_csr_parallel(starts, counts, flat, indptr, indices, data, buf, out, *count)
    else:
        _deliver_csr_serial(0, out.shape[0], starts, counts, flat, indptr, indices, data, buf, out, *count)


def fill_dense(parallel: bool, starts, counts, flat, dense) -> None:
    """``dense`` (batch, n_in): 1 where a spike is, else 0 (the input of a BLAS delivery)."""
    (_fill_dense_parallel if parallel else _fill_dense_serial)(starts, counts, flat, dense)


# --- the analog input's current through a dense projection --------------------------------------------------------


@compiled()
def _analog_row(b, x, wt, out):
    """``out[b] = sum of x[b, j] * wt[j]`` over the non-zero inputs ``j`` of row ``b``, in order, summed in float64
    and rounded once to ``out``'s dtype."""
    n_in, n_out = wt.shape
    acc = np.zeros(n_out)
    for j in range(n_in):
        xj = np.float64(x[b, j])
        if xj != 0:
            for i in range(n_out):
                acc[i] += xj * wt[j, i]
    for i in range(n_out):
        out[b, i] = acc[i]


@compiled()
def _analog_dense_serial(x, wt, out):
    for b in range(out.shape[0]):
        _analog_row(b, x, wt, out)


@compiled(parallel=True)
def _analog_dense_parallel(x, wt, out):
    for b in prange(out.shape[0]):
        _analog_row(b, x, wt, out)


def analog_dense(parallel: bool, x, wt, out) -> None:
    """``out = x @ wt`` (``x``: analog input, (batch, n_in); ``wt``: ``W.T``, (n_in, n_out)), computing only the MACs
    evsnn counts (an input of 0 costs nothing: most of an MNIST image), each sum in float64 in input order and
    rounded once: the same bits for any batch size, thread count and CPU, unlike a BLAS product."""
    (_analog_dense_parallel if parallel else _analog_dense_serial)(x, wt, out)


# --- the input's spikes as rows ----------------------------------------------------------------------------------


@compiled()
def _row_count(raster, r, indptr):
    c = 0
    for j in range(raster.shape[1]):
        c += raster[r, j]
    indptr[r + 1] = c


@compiled()
def _row_fill(raster, r, indptr, flat):
    k = indptr[r]
    for j in range(raster.shape[1]):
        if raster[r, j]:
            flat[k] = j
            k += 1


@compiled()
def _spike_rows_serial(raster, indptr):
    for r in range(raster.shape[0]):
        _row_count(raster, r, indptr)
    for r in range(raster.shape[0]):
        indptr[r + 1] += indptr[r]
    flat = np.empty(indptr[-1], dtype=np.int64)
    for r in range(raster.shape[0]):
        _row_fill(raster, r, indptr, flat)
    return flat


@compiled(parallel=True)
def _spike_rows_parallel(raster, indptr):
    for r in prange(raster.shape[0]):
        _row_count(raster, r, indptr)
    for r in range(raster.shape[0]):
        indptr[r + 1] += indptr[r]
    flat = np.empty(indptr[-1], dtype=np.int64)
    for r in prange(raster.shape[0]):
        _row_fill(raster, r, indptr, flat)
    return flat


def spike_rows(parallel: bool, raster: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The spikes of a boolean ``raster`` (rows, n) as rows: ``indptr`` and ascending ``flat`` indices (int64),
    row ``r``'s spikes at ``flat[indptr[r] : indptr[r + 1]]`` (what :func:`run_steps` reads of the input; one
    pass per row instead of numpy's nonzero, row sums and modulo, a third of the time)."""
    indptr = np.zeros(raster.shape[0] + 1, dtype=np.int64)
    return indptr, (_spike_rows_parallel if parallel else _spike_rows_serial)(raster, indptr)


# --- counts (for the BLAS path, whose deliveries do not count) ------------------------------------------------------


@compiled()
def _count_sops_serial(starts, counts, flat, synapses, connections, sops, nominal, t):
    for b in range(counts.shape[0]):
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


@compiled(parallel=True)
def _count_sops_parallel(starts, counts, flat, synapses, connections, sops, nominal, t):
    for b in prange(counts.shape[0]):
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


def count_sops(parallel: bool, starts, counts, flat, synapses, connections, sops, nominal, t) -> None:
    """:func:`_count_row` for every row: the SOPs of a step delivered by BLAS."""
    (_count_sops_parallel if parallel else _count_sops_serial)(starts, counts, flat, synapses, connections, sops,
                                                               nominal, t)


# --- the fused neuron step ---------------------------------------------------------------------------------------

#: Rows of the per-neuron parameter table (from :class:`~evsnn.engines.neurons.NeuronParams`).
PARAM_ROWS = ("beta", "threshold", "v_reset", "leak", "spike_gain", "analog_gain", "alpha", "syn_spike_gain",
              "syn_analog_gain", "syn_to_v", "psp_gain", "refractory_decay", "refractory_jump")
_BETA, _THETA, _VRESET, _LEAK, _GS, _GA, _ALPHA, _HS, _HA, _CVI, _PSP, _RDECAY, _RJUMP = range(len(PARAM_ROWS))
#: How a population integrates: the discrete form, the ODE form (without / with a synaptic current), threshold
#: units, the spike-response model.
MODE_DISCRETE, MODE_ODE, MODE_ODE_CUBA, MODE_THRESHOLD, MODE_SRM = range(5)
#: The state a mode keeps beside ``v`` (the rows of its ``extra`` array): the synaptic current; SRM's kernel states.
EXTRA_STATE = {MODE_ODE_CUBA: ("i",), MODE_SRM: ("i", "psp", "refractory")}


#: The flags of a population's step (an int64 array, one call argument): its mode, whether it has a leak term,
#: reads held input, thresholds strictly, resets to v_reset, emits spikes (not a membrane read-out), and marks its
#: spikes in the run's output (the output population of a count read-out).
FLAG_ROWS = ("mode", "leak", "held", "strict", "reset_zero", "emit", "mark")


@compiled()
def _integrate_row(b, v, extra, current, held, p, mode, has_leak, use_held):
    """Pass 1 of row ``b``: the sub-threshold update of :func:`evsnn.engines.neurons.integrate`, the same operations
    in the same order, ``current[b]`` zeroed; returns how many potentials are at or above threshold. No branch on
    the data and no index written, so the compiler vectorizes it (a tenth of the time of one fused loop)."""
    vb, cb = v[b], current[b]
    theta = p[_THETA]
    crossing = 0
    if mode == MODE_SRM:  # the kernels' recursions; extra: the PSP kernel's two states and the refractory state
        x0, psp0, r0 = extra[0, b], extra[1, b], extra[2, b]
        alpha, gain, psp_gain, decay = p[_ALPHA], p[_HS], p[_PSP], p[_RDECAY]
        for i in range(vb.shape[0]):
            x = x0[i] + gain[i] * cb[i]
            cb[i] = 0
            psp = alpha[i] * (psp0[i] + psp_gain[i] * x)
            x0[i] = alpha[i] * x
            r = decay[i] * r0[i]
            u = psp + r
            psp0[i] = psp
            r0[i] = r
            vb[i] = u
            crossing += u >= theta[i]
        return crossing
    if mode == MODE_THRESHOLD:  # stateless: the step's input is the potential
        for i in range(vb.shape[0]):
            x = cb[i]
            cb[i] = 0
            vb[i] = x
            crossing += x >= theta[i]
        return crossing
    beta, leak = p[_BETA], p[_LEAK]
    if mode == MODE_DISCRETE:
        for i in range(vb.shape[0]):
            x = beta[i] * vb[i] + cb[i]
            if has_leak:  # loop-invariant: the compiler takes it out of the loop
                x = x + leak[i]
            cb[i] = 0
            vb[i] = x
            crossing += x >= theta[i]
        return crossing
    # the ODE form: held input ``a`` over the step, the spikes as impulses at its end
    ga, hb = p[_GA], held[b]
    if mode == MODE_ODE_CUBA:
        syn, cvi, alpha, hs, ha = extra[0, b], p[_CVI], p[_ALPHA], p[_HS], p[_HA]
        for i in range(vb.shape[0]):
            x = beta[i] * vb[i]
            if has_leak:
                x = x + leak[i]
            x = x + cvi[i] * syn[i]
            y = alpha[i] * syn[i] + hs[i] * cb[i]
            if use_held:
                a = hb[i]
                x = x + ga[i] * a
                y = y + ha[i] * a
            syn[i] = y
            cb[i] = 0
            vb[i] = x
            crossing += x >= theta[i]
        return crossing
    gs = p[_GS]
    for i in range(vb.shape[0]):
        x = beta[i] * vb[i]
        if has_leak:
            x = x + leak[i]
        if use_held:
            x = x + ga[i] * hb[i]
        x = x + gs[i] * cb[i]
        cb[i] = 0
        vb[i] = x
        crossing += x >= theta[i]
    return crossing


@compiled()
def _fire_row(b, v, extra, p, srm, strict, reset_zero, idx):
    """Pass 2 of row ``b``, run only when a potential reached threshold: threshold and reset
    (:func:`evsnn.engines.neurons.neuron_step`), the spike indices to ``idx[b]`` in ascending order; returns their
    number and whether any potential is still at or above threshold after the reset."""
    vb = v[b]
    theta, v_reset = p[_THETA], p[_VRESET]
    m = 0
    above = False
    for i in range(vb.shape[0]):
        x = vb[i]
        th = theta[i]
        fired = x > th if strict else x >= th
        if fired:
            if srm:  # the reset is carried by the refractory state
                psp = extra[1, b, i]
                r = v_reset[i] - psp if reset_zero else extra[2, b, i] - p[_RJUMP, i]
                extra[2, b, i] = r
                x = psp + r
            else:
                x = v_reset[i] if reset_zero else x - th
            vb[i] = x
            idx[b, m] = i
            m += 1
        if x >= th:
            above = True
    return m, above


@compiled()
def _neuron_row(b, v, extra, current, held, p, flags, idx, counts, at_threshold, record, marks, t):
    """One row of the fused step, the same operations in the same order as :mod:`evsnn.engines.neurons`: integrate
    every neuron, then, only where a potential reached threshold, fire and reset. Spike indices go to
    ``idx[b, :counts[b]]``, their number also to ``record[b, t]`` and, with ``mark``, ones to ``marks[b, t, idx]``;
    ``current[b]`` is zeroed."""
    mode, emit = flags[0], flags[5]
    crossing = _integrate_row(b, v, extra, current, held, p, mode, flags[1], flags[2])
    m = 0
    above = crossing > 0
    if emit and above:
        m, above = _fire_row(b, v, extra, p, mode == MODE_SRM, flags[3], flags[4], idx)
    counts[b] = m
    at_threshold[b] = above
    record[b, t] = m
    if flags[6]:
        for k in range(m):
            marks[b, t, idx[b, k]] = 1


@compiled()
def _neuron_serial(lo, hi, v, extra, current, held, p, flags, idx, counts, at_threshold, record, marks, t):
    total = 0
    above = False
    for b in range(lo, hi):
        _neuron_row(b, v, extra, current, held, p, flags, idx, counts, at_threshold, record, marks, t)
        total += counts[b]
        above |= at_threshold[b]
    return total, above


@compiled(parallel=True)
def _neuron_parallel(v, extra, current, held, p, flags, idx, counts, at_threshold, record, marks, t):
    for b in prange(v.shape[0]):
        _neuron_row(b, v, extra, current, held, p, flags, idx, counts, at_threshold, record, marks, t)
    return counts.sum(), at_threshold.any()


def neuron_step(parallel: bool, v, extra, current, held, p, flags, idx, counts, at_threshold, record, marks,
                t) -> tuple[int, bool]:
    """Integrate, threshold, reset and emit one population in place (see :func:`_neuron_row`).

    ``v``, ``current`` (the impulses, zeroed here), ``held`` (the ODE form's held input; read when its flag is
    set): shape (batch, n); ``extra``: the state the mode keeps beside ``v`` (:data:`EXTRA_STATE`), shape (k,
    batch, n) (any 3-d array for the modes without). ``p``: the :data:`PARAM_ROWS` table, shape (13, n);
    ``flags``: :data:`FLAG_ROWS`. Writes ``idx``, ``counts`` and
    ``at_threshold`` (any ``v >= threshold`` after the step, per row), the counts to column ``t`` of
    ``record`` (batch, steps) and, if marking, ones to ``marks[:, t]`` (batch, steps, n); returns the
    number of spikes and whether any potential is at or above threshold.
    """
    if parallel:
        return _neuron_parallel(v, extra, current, held, p, flags, idx, counts, at_threshold, record, marks, t)
    return _neuron_serial(0, v.shape[0], v, extra, current, held, p, flags, idx, counts, at_threshold, record, marks, t)


# --- the whole step loop -------------------------------------------------------------------------------------------

#: Columns of the step loop's per-population flags (beside :data:`FLAG_ROWS`): whether the population has a bias,
#: reads held input, may be skipped while it cannot change, has its spikes recorded as a raster (Python does that),
#: and is a membrane read-out.
POP_ROWS = ("bias", "held", "skippable", "recorded", "membrane")
_P_BIAS, _P_HELD, _P_SKIP, _P_RECORD, _P_MEMBRANE = range(len(POP_ROWS))
#: Columns of the step loop's route table (one row per projection, grouped by source): its operator kind, target
#: population, delay, index among its kind's operators, row of the SOP records, and (conv) pixels per channel and
#: taps.
ROUTE_ROWS = ("kind", "target", "delay", "item", "record", "hw", "taps")
KIND_DENSE, KIND_CONV, KIND_CSR = range(3)
_R_KIND, _R_TARGET, _R_DELAY, _R_ITEM, _R_RECORD, _R_HW, _R_TAPS = range(len(ROUTE_ROWS))
#: The step loop's arrays travel in one typed list per array type (a numba call costs about 0.5 µs per list
#: argument, paid again at each step handed back to Python); ``bases[k]`` is where the arrays named ``LISTS[k]``
#: start in their list, one per population (``tables`` .. ``flat``, ``bias``), per input projection (``analog``), per
#: operator of the kind (``dense_wt``, ``conv_kernel``, ``conv_buf``, ``csr_buf``, ``csr_data``), four per conv
#: (``conv_tables``: start, length, tap, pos) and two per sparse operator (``csr_tables``: indptr, indices).
LISTS = {"float1": ("bias", "csr_data"),
         "float2": ("tables", "v", "held", "analog", "dense_wt", "conv_kernel", "csr_buf"),
         "float3": ("extra", "ring", "conv_buf"),
         "int1": ("flat", "counts", "starts", "conv_tables", "csr_tables")}
(_B_BIAS, _B_CSRDATA, _B_TABLES, _B_V, _B_HELD, _B_ANALOG, _B_DENSE, _B_KERNEL, _B_CSRBUF, _B_EXTRA, _B_RING,
 _B_CONVBUF, _B_FLAT, _B_COUNTS, _B_STARTS, _B_CONVT, _B_CSRT) = range(sum(len(v) for v in LISTS.values()))


@compiled()
def _deliver_route(parallel, lo, hi, route, k, starts, counts, flat, out, fan_out, sop_rec, t, bases, f1, f2, f3, i1):
    """Deliver one step's spikes through route ``k`` (a row of the route table) with its event kernel into ``out``
    (the target's ring slot), counting their SOPs (``fan_out``: synapses of route ``k`` at ``k``, connections at
    ``len(fan_out) // 2 + k``): every row on the run's threads, or rows ``lo .. hi - 1`` on this one."""
    item, rec = route[_R_ITEM], route[_R_RECORD]
    syn, con = fan_out[k], fan_out[len(fan_out) // 2 + k]
    sops, nominal = sop_rec[0, rec], sop_rec[1, rec]
    kind = route[_R_KIND]
    if kind == KIND_DENSE:
        wt = f2[bases[_B_DENSE] + item]
        if parallel:
            _deliver_dense_parallel(starts, counts, flat, wt, out, syn, con, sops, nominal, t)
        else:
            _deliver_dense_serial(lo, hi, starts, counts, flat, wt, out, syn, con, sops, nominal, t)
    elif kind == KIND_CONV:
        hw, taps = route[_R_HW], route[_R_TAPS]
        c = bases[_B_CONVT] + 4 * item
        start, length, tap, pos = i1[c], i1[c + 1], i1[c + 2], i1[c + 3]
        kernel, buf = f2[bases[_B_KERNEL] + item], f3[bases[_B_CONVBUF] + item]
        if parallel:
            _deliver_conv_parallel(starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out, syn,
                                   con, sops, nominal, t)
        else:
            _deliver_conv_serial(lo, hi, starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out,
                                 syn, con, sops, nominal, t)
    else:
        c = bases[_B_CSRT] + 2 * item
        indptr, indices = i1[c], i1[c + 1]
        data, buf = f1[bases[_B_CSRDATA] + item], f2[bases[_B_CSRBUF] + item]
        if parallel:
            _deliver_csr_parallel(starts, counts, flat, indptr, indices, data, buf, out, syn, con, sops, nominal, t)
        else:
            _deliver_csr_serial(lo, hi, starts, counts, flat, indptr, indices, data, buf, out, syn, con, sops, nominal,
                                t)


@compiled()
def _add_input_row(b, into, i, t, clear, has_bias, analog_routes, bases, f1, f2):
    """Row ``b`` of population ``i``'s input at step ``t``: ``into[b]`` zeroed first where ``clear`` (the held
    buffer), then each analog input that has reached it, in order, then its bias."""
    row = into[b]
    if clear:
        row[:] = 0
    for a in range(analog_routes.shape[0]):
        if analog_routes[a, 0] == i and t >= analog_routes[a, 1]:
            row += f2[bases[_B_ANALOG] + a][b]
    if has_bias:
        row += f1[bases[_B_BIAS] + i]


@compiled()
def _add_input_serial(lo, hi, into, i, t, clear, has_bias, analog_routes, bases, f1, f2):
    for b in range(lo, hi):
        _add_input_row(b, into, i, t, clear, has_bias, analog_routes, bases, f1, f2)


@compiled(parallel=True)
def _add_input_parallel(into, i, t, clear, has_bias, analog_routes, bases, f1, f2):
    for b in prange(into.shape[0]):
        _add_input_row(b, into, i, t, clear, has_bias, analog_routes, bases, f1, f2)


@compiled()
def _fed(analog_routes, i, t):
    """Whether an analog input has reached population ``i`` by step ``t``."""
    fed = False
    for a in range(analog_routes.shape[0]):
        fed |= analog_routes[a, 0] == i and t >= analog_routes[a, 1]
    return fed


@compiled()
def run_steps(t, first, steps, parallel, lo, hi, handback, spiking, flags, pop_flags, pending, may_fire, routes,
              route_ptr, analog_routes, limits, bases, f1, f2, f3, i1, fan_out, idx, at_threshold, in_indptr, in_counts,
              in_flat, count_rec, sop_rec, marks, membrane_out):
    """Steps ``t .. steps - 1`` of :meth:`evsnn.engines.event.EventEngine.run_batch` in one compiled call: per step the
    input's spikes, then each population in order (its input, bias and analog current summed, the fused step of
    :func:`_neuron_row`, its spikes delivered through each outgoing route with the event kernels, its ring slot
    cleared), exactly as the engine's docstring describes it. ``first``: the population step ``t`` starts at
    (-1: the input's spikes first).

    Hands back to Python, which delivers by BLAS and records rasters, where that is needed: returns ``(t, i,
    spikes, above)`` after population ``i``'s step when it is recorded or when one of its routes must go dense
    (spikes above ``limits``), before anything of it was delivered (``i = -1``: the input's spikes at ``t`` must go
    dense); ``(steps, -1, 0, False)`` at the end. With ``handback`` false it never does (every spike by the event
    kernels, rasters not kept): :func:`run_rows` runs it so on rows ``lo .. hi - 1`` (``parallel`` false), the
    other rows apart.

    The arguments: the run's flags (``flags``: :data:`FLAG_ROWS` and ``pop_flags``: :data:`POP_ROWS` per
    population), ``pending`` (population, ring slot), ``may_fire``, the route table (:data:`ROUTE_ROWS`;
    ``route_ptr[s] : route_ptr[s + 1]`` are the routes of source ``s``, 0: the input, ``i + 1``: population
    ``i``), the analog input's (target, delay) and each route's spike limit; the arrays (:data:`LISTS`, the
    fan-outs of the routes, each population's spike indices and at-threshold flags); the input's spike rows; the
    records."""
    npops = len(idx)
    b_v, b_held, b_ring = bases[_B_V], bases[_B_HELD], bases[_B_RING]
    b_flat, b_counts = bases[_B_FLAT], bases[_B_COUNTS]
    length = f3[b_ring].shape[0]
    batch = idx[0].shape[0]
    if parallel:
        lo, hi = 0, batch
    while t < steps:
        slot = t % length
        if first < 0:
            first = 0
            if spiking:
                rows = slice(t * batch, (t + 1) * batch)  # the input's CSR rows of step t
                total = in_indptr[rows.stop] - in_indptr[rows.start]
                if total:
                    for k in range(route_ptr[0], route_ptr[1]):
                        if handback and total > limits[k]:
                            return t, -1, total, False
                    for k in range(route_ptr[0], route_ptr[1]):
                        route = routes[k]
                        target_slot = (t + route[_R_DELAY]) % length
                        _deliver_route(parallel, lo, hi, route, k, in_indptr[rows], in_counts[rows], in_flat,
                                       f3[b_ring + route[_R_TARGET]][target_slot], fan_out, sop_rec, t, bases, f1,
                                       f2, f3, i1)
                        pending[route[_R_TARGET], target_slot] = True
        for i in range(first, npops):
            pf = pop_flags[i]
            if pf[_P_SKIP] and not pending[i, slot] and not may_fire[i]:
                continue  # IF, no bias, no input, all below threshold: nothing can happen
            current = f3[b_ring + i][slot]
            held = f2[b_held + i]
            # the discrete form adds analog input and bias to the spikes; the ODE form holds them over the step
            into = held if pf[_P_HELD] else current
            if pf[_P_HELD] or _fed(analog_routes, i, t) or pf[_P_BIAS]:
                if parallel:
                    _add_input_parallel(into, i, t, pf[_P_HELD], pf[_P_BIAS], analog_routes, bases, f1, f2)
                else:
                    _add_input_serial(lo, hi, into, i, t, pf[_P_HELD], pf[_P_BIAS], analog_routes, bases, f1, f2)
            v, extra, table, counts = f2[b_v + i], f3[bases[_B_EXTRA] + i], f2[bases[_B_TABLES] + i], i1[b_counts + i]
            if parallel:
                total, above = _neuron_parallel(v, extra, current, held, table, flags[i], idx[i], counts,
                                                at_threshold[i], count_rec[i], marks, t)
            else:
                total, above = _neuron_serial(lo, hi, v, extra, current, held, table, flags[i], idx[i], counts,
                                              at_threshold[i], count_rec[i], marks, t)
            if pf[_P_MEMBRANE]:
                membrane_out[lo:hi, t, :] = v[lo:hi]
            else:
                if handback:
                    back = pf[_P_RECORD] != 0
                    if total:
                        for k in range(route_ptr[i + 1], route_ptr[i + 2]):
                            back |= total > limits[k]
                    if back:
                        return t, i, total, above
                if total:
                    for k in range(route_ptr[i + 1], route_ptr[i + 2]):
                        route = routes[k]
                        target_slot = (t + route[_R_DELAY]) % length
                        _deliver_route(parallel, lo, hi, route, k, i1[bases[_B_STARTS] + i], counts, i1[b_flat + i],
                                       f3[b_ring + route[_R_TARGET]][target_slot], fan_out, sop_rec, t, bases, f1,
                                       f2, f3, i1)
                        pending[route[_R_TARGET], target_slot] = True
                if pf[_P_SKIP]:
                    may_fire[i] = above
            pending[i, slot] = False
        first = -1
        t += 1
    return steps, -1, 0, False


@compiled(parallel=True)
def _run_parts(parts, steps, spiking, flags, pop_flags, may_fire, routes, route_ptr, analog_routes, limits, bases, f1,
               f2, f3, i1, fan_out, idx, at_threshold, in_indptr, in_counts, in_flat, count_rec, sop_rec, marks,
               membrane_out):
    batch = idx[0].shape[0]
    for part in prange(parts):
        lo, hi = part * batch // parts, (part + 1) * batch // parts
        pending = np.zeros((len(idx), f3[bases[_B_RING]].shape[0]), dtype=np.bool_)
        run_steps(0, -1, steps, False, lo, hi, False, spiking, flags, pop_flags, pending, may_fire.copy(), routes,
                  route_ptr, analog_routes, limits, bases, f1, f2, f3, i1, fan_out, idx, at_threshold, in_indptr,
                  in_counts, in_flat, count_rec, sop_rec, marks, membrane_out)


def run_rows(parts: int, *args) -> None:
    """A whole batch with its rows apart: ``parts`` equal shares of the rows, one per thread, each running every
    step on its own (:func:`run_steps` without hand-backs, its own pending and may-fire flags), so threads meet
    once per batch instead of at every population and route of every step. Rows never share work, and stepping a
    quiet population changes nothing, so the records are those of :func:`run_steps` wherever no step goes dense
    and nothing is recorded: the caller (:meth:`evsnn.engines.event.EventEngine.run_batch`) checks the first
    afterwards. ``args``: :func:`run_steps`' arguments from ``spiking`` on, without ``pending``."""
    _run_parts(parts, *args)
