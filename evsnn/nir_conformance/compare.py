"""How far another simulator's output is from evsnn's, and which parameter mapping explains the difference.

:func:`compare` measures two outputs of the same graph on the same input
(spikes or membrane potentials); :func:`explain` puts a framework's
measured per-step update (:class:`~evsnn.nir_conformance.adapter.Effective`)
next to the exact one of NIR's ODE over the same step and names the
departures it recognises (forward Euler, a hard-coded step, τ read as a
number of steps, a spike taken as a held current, a leaky IF).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..engines.neurons import ode_coefficients
from .adapter import Effective

__all__ = ["Comparison", "compare", "ode_update", "explain"]

MEMBRANE_RTOL = 1e-6  # membrane traces agree when within this fraction of the reference's largest magnitude


@dataclass(frozen=True)
class Comparison:
    """Two outputs of one graph on one input, ``(steps, batch, *shape)`` each.

    ``identical``: spikes equal everywhere (or membranes within ``MEMBRANE_RTOL``).
    ``first_divergent_step``: the first step at which they differ (``None`` when identical).
    ``agreement``: of the (step, sample, neuron) bins where either output spiked, the fraction where both did
    (1.0 when neither spiked); ``count_correlation``: Pearson correlation of the spike counts per sample and
    neuron (``nan`` when either is constant). Membranes: ``max_abs_difference`` instead.
    ``spikes``: total spikes of (reference, other), a liveness record (bins with a non-zero output).
    """

    kind: str  # "spikes" | "membrane"
    identical: bool
    first_divergent_step: int | None
    agreement: float | None = None
    count_correlation: float | None = None
    max_abs_difference: float | None = None
    spikes: tuple[int, int] | None = None
    not_binary: tuple[float, float] | None = None  # the other output's range where it is not 0/1 spikes

    def summary(self) -> str:
        if self.identical:
            what = "identical" if self.kind == "spikes" else f"identical to {MEMBRANE_RTOL:g} (relative)"
            return what + (f" ({self.spikes[0]} spikes)" if self.spikes else "")
        if self.kind == "spikes":
            values = (f"; its output is not 0/1 spikes: values in [{self.not_binary[0]:.4g}, {self.not_binary[1]:.4g}]"
                      if self.not_binary else "")
            return (f"diverges at step {self.first_divergent_step}: spike agreement {100 * self.agreement:.1f} %, "
                    f"count correlation {self.count_correlation:.3f}, spikes {self.spikes[0]} vs {self.spikes[1]}"
                    + values)
        return (f"diverges at step {self.first_divergent_step}: max |difference| {self.max_abs_difference:.4g}")


def compare(reference: np.ndarray, other: np.ndarray, *, kind: str) -> Comparison:
    """Compare ``other`` with ``reference`` (same shape, ``(steps, batch, ...)``); ``kind`` "spikes" or "membrane"."""
    ref, oth = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if ref.shape != oth.shape:
        raise ValueError(f"outputs of different shapes: reference {ref.shape}, other {oth.shape}")
    steps = ref.shape[0]
    if kind == "membrane":
        tolerance = MEMBRANE_RTOL * max(float(np.abs(ref).max(initial=0.0)), 1e-300)
        diff = np.abs(ref - oth).reshape(steps, -1)
        bad = np.flatnonzero((diff > tolerance).any(axis=1) | ~np.isfinite(oth.reshape(steps, -1)).all(axis=1))
        return Comparison("membrane", bad.size == 0, int(bad[0]) if bad.size else None,
                          max_abs_difference=float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0)))
    binary = bool(np.isin(oth, (0.0, 1.0)).all())
    a, b = ref != 0, oth != 0
    differs = np.flatnonzero((a != b).reshape(steps, -1).any(axis=1))
    either = int((a | b).sum())
    agreement = float((a & b).sum() / either) if either else 1.0
    ca, cb = a.sum(axis=0).ravel().astype(np.float64), b.sum(axis=0).ravel().astype(np.float64)
    correlation = float(np.corrcoef(ca, cb)[0, 1]) if ca.std() > 0 and cb.std() > 0 else math.nan
    if not binary:  # a count per step, or a value passed through: where it is not 0/1 the outputs differ
        differs = np.union1d(differs, np.flatnonzero((oth != ref).reshape(steps, -1).any(axis=1)))
    return Comparison("spikes", differs.size == 0, int(differs[0]) if differs.size else None, agreement=agreement,
                      count_correlation=correlation, spikes=(int(a.sum()), int(b.sum())),
                      not_binary=None if binary else (float(oth.min()), float(oth.max())))


# NIR node class -> (evsnn kind, parameter names of tau_mem, tau_syn)
_KINDS = {"IF": ("if", None, None), "LIF": ("lif", "tau", None), "CubaLIF": ("cuba_lif", "tau_mem", "tau_syn"),
          "LI": ("li", "tau", None), "CubaLI": ("cuba_li", "tau_mem", "tau_syn"), "I": ("i", None, None)}


def _scalar(node: object, name: str | None, default: float | None = None) -> float | None:
    value = getattr(node, name, None) if name else None
    if value is None:
        return default
    arr = np.asarray(value, dtype=np.float64).ravel()
    return float(arr[0]) if arr.size else default


def ode_update(node: object, dt: float, *, hard_reset: bool) -> Effective:
    """The exact per-step update of a NIR neuron node over ``dt`` (its first neuron), in :class:`Effective` terms."""
    name = type(node).__name__
    if name == "Threshold":
        return Effective(beta=0.0, spike_gain=1.0, analog_gain=1.0, threshold=_scalar(node, "threshold"),
                         threshold_rule=">", reset="none")
    kind, tm, ts = _KINDS[name]
    c = ode_coefficients(kind, dt, tau_mem=_scalar(node, tm), tau_syn=_scalar(node, ts),
                         r=_scalar(node, "r", 1.0), w_in=_scalar(node, "w_in", 1.0))
    f = lambda key: float(np.asarray(c[key])) if key in c else None  # noqa: E731
    spiking = name in ("IF", "LIF", "CubaLIF")
    # current-based kinds: input reaches v only through the synaptic current, whose coupling into v a framework's
    # per-step form (v = βv + g·i) and the exact solution (v = βv + c·i before the step) do not share: not compared
    cuba = "alpha" in c
    return Effective(beta=f("beta"), spike_gain=None if cuba else f("spike_gain"),
                     analog_gain=None if cuba else f("analog_gain"),
                     threshold=_scalar(node, "v_threshold") if spiking else None,
                     threshold_rule=">" if spiking else None,
                     reset=("zero" if hard_reset else "subtract") if spiking else "none",
                     v_reset=_scalar(node, "v_reset", 0.0) if spiking and hard_reset else None,
                     syn_beta=f("alpha"), syn_gain=f("syn_spike_gain"))


def _close(a: float | None, b: float | None, rtol: float = 1e-6) -> bool:
    return a is None or b is None or abs(a - b) <= rtol * max(abs(a), abs(b), 1e-12)


def _decay_reading(measured: float, tau: float | None, dt: float, what: str) -> str:
    """Why a per-step decay differs from e^{-dt/τ}, where one of the known mistakes fits."""
    if tau is None:  # IF or I: the ODE has no leak
        return f"{what} = {measured:.6g}: a leak where the ODE has none"
    for reading, value in ((f"forward Euler, 1 − dt/τ", 1 - dt / tau), ("τ read as a number of steps, e^(−1/τ)",
                                                                         math.exp(-1 / tau))):
        if _close(measured, value, 1e-4):
            return f"{what} = {measured:.6g} = {reading}"
    if 0 < measured < 1:
        euler_dt = (1 - measured) * tau
        return (f"{what} = {measured:.6g} (exact e^(−dt/τ) = {math.exp(-dt / tau):.6g}; it equals forward Euler "
                f"1 − dt'/τ at dt' = {euler_dt:.3g} s, e^(−dt'/τ) at dt' = {-tau * math.log(measured):.3g} s)")
    return f"{what} = {measured:.6g} (exact e^(−dt/τ) = {math.exp(-dt / tau):.6g})"


def explain(effective: Effective, node: object, dt: float, *, hard_reset: bool) -> list[str]:
    """The departures of a framework's measured update from the exact update of ``node``'s ODE over ``dt``.

    An empty list: every value the framework's adapter could determine matches (to 1e-6 relative).
    """
    exact = ode_update(node, dt, hard_reset=hard_reset)
    name = type(node).__name__
    tau = _scalar(node, _KINDS[name][1]) if name in _KINDS else None
    out = []
    if effective.beta == 0 and exact.beta:
        out.append("β = 0: no state kept from one step to the next (the input passes through)")
    elif not _close(effective.beta, exact.beta):
        reading = _decay_reading(effective.beta, tau, dt, "β")
        out.append(f"{name} imported as a leaky neuron, {reading}" if name in ("IF", "I") else reading)
    if not _close(effective.syn_beta, exact.syn_beta):
        out.append(_decay_reading(effective.syn_beta, _scalar(node, "tau_syn"), dt, "synaptic decay"))
    r = _scalar(node, "r", 1.0)
    for label, got, want in (("spike gain", effective.spike_gain, exact.spike_gain),
                             ("analog gain", effective.analog_gain, exact.analog_gain),
                             ("synaptic spike gain", effective.syn_gain, exact.syn_gain)):
        if _close(got, want):
            continue
        hint = ""
        if label == "spike gain" and tau and _close(got, r * dt / tau, 1e-4):
            hint = ": a spike taken as a current held over one step (R·dt/τ) instead of an impulse (R/τ)"
        elif label == "spike gain" and _close(got, 1.0, 1e-4):
            hint = ": input added unscaled, R ignored"
        elif label == "spike gain" and tau and 0 < got * tau / r < tau:
            hint = f": a spike taken as a current held over h = {got * tau / r:.3g} s (R·h/τ) instead of an impulse (R/τ)"
        elif label == "analog gain" and _close(got, 1.0, 1e-4):
            hint = ": a held input added unscaled every step (R and dt ignored)"
        elif label == "analog gain" and tau and _close(got, r * dt / tau, 1e-4):
            hint = ": forward Euler, R·dt/τ"
        elif label == "analog gain" and tau and 0 < got * tau / r < tau:
            hint = f": forward Euler at h = {got * tau / r:.3g} s, R·h/τ"
        out.append(f"{label} = {got:.6g} where the ODE gives {want:.6g}{hint}")
    if effective.threshold is not None and not _close(effective.threshold, exact.threshold):
        out.append(f"threshold = {effective.threshold:.6g} where the node says {exact.threshold:.6g}")
    if effective.threshold_rule and exact.threshold_rule and effective.threshold_rule != exact.threshold_rule:
        out.append(f"spikes at v {effective.threshold_rule} θ where NIR says v {exact.threshold_rule} θ")
    if effective.reset and exact.reset and effective.reset != exact.reset:
        target = f" to {exact.v_reset:g}" if exact.v_reset is not None else ""
        out.append(f"reset {effective.reset!r} where the installed nir says {exact.reset!r}{target}")
    elif (effective.reset == "zero" and exact.v_reset is not None and effective.v_reset is not None
          and not _close(effective.v_reset, exact.v_reset)):
        out.append(f"resets to {effective.v_reset:g} where the node says v_reset = {exact.v_reset:g}")
    return out
