"""Compiled (numba) loops of the event engine: delivery of spikes and the fused neuron step.

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
are bit-identical to them. Compiled with ``cache=True`` (the first import
compiles, later ones load from ``__pycache__``) and ``nogil=True``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["deliver_dense", "deliver_conv", "deliver_csr", "fill_dense", "count_sops",
           "neuron_step", "PARAM_ROWS", "FLAG_ROWS", "MODE_DISCRETE", "MODE_ODE", "MODE_ODE_CUBA", "MODE_THRESHOLD"]

_jit = dict(cache=True, nogil=True)

# --- SOP counting (from the spikes only) ----------------------------------------------------------------------------


@njit(**_jit)
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


@njit(**_jit)
def _dense_row(b, starts, counts, flat, wt, out):
    """``out[b] += wt[j]`` for each spike ``j`` of row ``b``, in order (scipy's csr_matvecs order)."""
    n_out = wt.shape[1]
    s = starts[b]
    for k in range(s, s + counts[b]):
        j = flat[k]
        for i in range(n_out):
            out[b, i] += wt[j, i]


@njit(**_jit)
def _deliver_dense_serial(starts, counts, flat, wt, out, synapses, connections, sops, nominal, t):
    for b in range(out.shape[0]):
        _dense_row(b, starts, counts, flat, wt, out)
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


@njit(parallel=True, **_jit)
def _deliver_dense_parallel(starts, counts, flat, wt, out, synapses, connections, sops, nominal, t):
    for b in prange(out.shape[0]):
        _dense_row(b, starts, counts, flat, wt, out)
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


@njit(**_jit)
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


@njit(**_jit)
def _deliver_conv_serial(starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out, synapses,
                         connections, sops, nominal, t):
    for b in range(out.shape[0]):
        _conv_row(b, starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out)
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


@njit(parallel=True, **_jit)
def _deliver_conv_parallel(starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out, synapses,
                           connections, sops, nominal, t):
    for b in prange(out.shape[0]):
        _conv_row(b, starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out)
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


@njit(**_jit)
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


@njit(**_jit)
def _deliver_csr_serial(starts, counts, flat, indptr, indices, data, buf, out, synapses, connections, sops, nominal,
                        t):
    for b in range(out.shape[0]):
        _csr_row(b, starts, counts, flat, indptr, indices, data, buf, out)
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


@njit(parallel=True, **_jit)
def _deliver_csr_parallel(starts, counts, flat, indptr, indices, data, buf, out, synapses, connections, sops,
                          nominal, t):
    for b in prange(out.shape[0]):
        _csr_row(b, starts, counts, flat, indptr, indices, data, buf, out)
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


@njit(**_jit)
def _fill_row(b, starts, counts, flat, dense):
    dense[b, :] = 0
    s = starts[b]
    for k in range(s, s + counts[b]):
        dense[b, flat[k]] = 1


@njit(**_jit)
def _fill_dense_serial(starts, counts, flat, dense):
    for b in range(dense.shape[0]):
        _fill_row(b, starts, counts, flat, dense)


@njit(parallel=True, **_jit)
def _fill_dense_parallel(starts, counts, flat, dense):
    for b in prange(dense.shape[0]):
        _fill_row(b, starts, counts, flat, dense)


def deliver_dense(parallel: bool, starts, counts, flat, wt, out, *count) -> None:
    """``out[b] += sum of wt[j]`` over row ``b``'s spikes ``j`` (``wt``: ``W.T``, shape ``(n_in, n_out)``).

    Every delivery also counts the SOPs of its spikes: ``count`` is :func:`count_sops`'s
    ``(synapses, connections, sops, nominal, t)``."""
    (_deliver_dense_parallel if parallel else _deliver_dense_serial)(starts, counts, flat, wt, out, *count)


def deliver_conv(parallel: bool, starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out,
                 *count) -> None:
    """Event scatter of a convolution kernel (the tables of :class:`evsnn.engines.event._ConvDelivery`); SOPs
    counted as in :func:`deliver_dense`."""
    (_deliver_conv_parallel if parallel else _deliver_conv_serial)(
        starts, counts, flat, hw, taps, start, length, tap, pos, kernel, buf, out, *count)


def deliver_csr(parallel: bool, starts, counts, flat, indptr, indices, data, buf, out, *count) -> None:
    """``out[b] += S[b] @ W.T`` with ``W.T`` in CSR (``indptr``, ``indices``, ``data``), row ``j``: neuron j's
    targets; SOPs counted as in :func:`deliver_dense`."""
    (_deliver_csr_parallel if parallel else _deliver_csr_serial)(starts, counts, flat, indptr, indices, data, buf,
                                                                 out, *count)


def fill_dense(parallel: bool, starts, counts, flat, dense) -> None:
    """``dense`` (batch, n_in): 1 where a spike is, else 0 (the input of a BLAS delivery)."""
    (_fill_dense_parallel if parallel else _fill_dense_serial)(starts, counts, flat, dense)


# --- counts (for the BLAS path, whose deliveries do not count) ------------------------------------------------------


@njit(**_jit)
def count_sops(starts, counts, flat, synapses, connections, sops, nominal, t):
    """:func:`_count_row` for every row: the SOPs of a step delivered by BLAS."""
    for b in range(counts.shape[0]):
        _count_row(b, starts, counts, flat, synapses, connections, sops, nominal, t)


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


@njit(**_jit)
def _threshold(x, theta, v_reset, strict, reset_zero):
    """Whether a potential ``x`` fires at ``theta`` (``>`` if ``strict``, else ``>=``), and ``x`` after the reset
    (to ``v_reset``, or ``theta`` subtracted): the one threshold rule of both row loops."""
    fired = x > theta if strict else x >= theta
    if fired:
        x = v_reset if reset_zero else x - theta
    return fired, x


@njit(**_jit)
def _discrete_row(b, v, current, p, strict, reset_zero, idx):
    """:func:`_general_row` for the converters' neurons (IF/LIF in the discrete form, no leak term, emitting):
    the same operations in the same order without the branches on the flags, which the compiler does not hoist."""
    m = 0
    above = False
    for i in range(v.shape[1]):
        x = p[_BETA, i] * v[b, i] + current[b, i]
        current[b, i] = 0
        theta = p[_THETA, i]
        fired, x = _threshold(x, theta, p[_VRESET, i], strict, reset_zero)
        if fired:
            idx[b, m] = i
            m += 1
        if x >= theta:
            above = True
        v[b, i] = x
    return m, above


@njit(**_jit)
def _srm_row(b, v, extra, current, p, strict, reset_zero, emit, idx):
    """:func:`_general_row` for SRM neurons: the kernels' recursions of :mod:`evsnn.engines.neurons`, the reset
    carried by the refractory state (``extra``: the PSP kernel's two states and the refractory state)."""
    m = 0
    above = False
    for i in range(v.shape[1]):
        x = extra[0, b, i] + p[_HS, i] * current[b, i]
        current[b, i] = 0
        psp = p[_ALPHA, i] * (extra[1, b, i] + p[_PSP, i] * x)
        extra[0, b, i] = p[_ALPHA, i] * x
        r = p[_RDECAY, i] * extra[2, b, i]
        u = psp + r
        if emit:
            fired = u > p[_THETA, i] if strict else u >= p[_THETA, i]
            if fired:
                r = p[_VRESET, i] - psp if reset_zero else r - p[_RJUMP, i]
                u = psp + r
                idx[b, m] = i
                m += 1
        if u >= p[_THETA, i]:
            above = True
        extra[1, b, i] = psp
        extra[2, b, i] = r
        v[b, i] = u
    return m, above


@njit(**_jit)
def _general_row(b, v, extra, current, held, p, flags, idx):
    """One row of :func:`evsnn.engines.neurons.neuron_step` (``emit``) or ``integrate`` (not ``emit``), every kind
    and form; returns the number of spikes (indices in ``idx[b]``) and whether any ``v >= threshold``."""
    mode, has_leak, use_held, strict, reset_zero, emit = flags[0], flags[1], flags[2], flags[3], flags[4], flags[5]
    if mode == MODE_SRM:
        return _srm_row(b, v, extra, current, p, strict, reset_zero, emit, idx)
    m = 0
    above = False
    for i in range(v.shape[1]):
        cur = current[b, i]
        current[b, i] = 0
        if mode == MODE_THRESHOLD:
            x = cur
        elif mode == MODE_DISCRETE:
            x = p[_BETA, i] * v[b, i] + cur
            if has_leak:
                x = x + p[_LEAK, i]
        else:
            x = p[_BETA, i] * v[b, i]
            if has_leak:
                x = x + p[_LEAK, i]
            if mode == MODE_ODE_CUBA:
                x = x + p[_CVI, i] * extra[0, b, i]
                y = p[_ALPHA, i] * extra[0, b, i] + p[_HS, i] * cur
                if use_held:
                    a = held[b, i]
                    x = x + p[_GA, i] * a
                    y = y + p[_HA, i] * a
                extra[0, b, i] = y
            else:
                if use_held:
                    x = x + p[_GA, i] * held[b, i]
                x = x + p[_GS, i] * cur
        if emit:
            fired, x = _threshold(x, p[_THETA, i], p[_VRESET, i], strict, reset_zero)
            if fired:
                idx[b, m] = i
                m += 1
        if x >= p[_THETA, i]:
            above = True
        v[b, i] = x
    return m, above


@njit(**_jit)
def _neuron_row(b, v, extra, current, held, p, flags, idx, counts, at_threshold, record, marks, t):
    """One row of the fused step, the same operations in the same order as :mod:`evsnn.engines.neurons`; spike
    indices go to ``idx[b, :counts[b]]``, their number also to ``record[b, t]`` and, with ``mark``, ones to
    ``marks[b, t, idx]``; ``current[b]`` is zeroed."""
    if flags[0] == MODE_DISCRETE and not flags[1] and flags[5]:
        m, above = _discrete_row(b, v, current, p, flags[3], flags[4], idx)
    else:
        m, above = _general_row(b, v, extra, current, held, p, flags, idx)
    counts[b] = m
    at_threshold[b] = above
    record[b, t] = m
    if flags[6]:
        for k in range(m):
            marks[b, t, idx[b, k]] = 1


@njit(**_jit)
def _neuron_serial(v, extra, current, held, p, flags, idx, counts, at_threshold, record, marks, t):
    total = 0
    above = False
    for b in range(v.shape[0]):
        _neuron_row(b, v, extra, current, held, p, flags, idx, counts, at_threshold, record, marks, t)
        total += counts[b]
        above |= at_threshold[b]
    return total, above


@njit(parallel=True, **_jit)
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
    return (_neuron_parallel if parallel else _neuron_serial)(v, extra, current, held, p, flags, idx, counts,
                                                              at_threshold, record, marks, t)
