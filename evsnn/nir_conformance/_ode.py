"""What NIR's ODE says a neuron node does per step of ``dt``, to set beside a framework's measured update.

``ode_effective`` gives the exact per-step update (evsnn's own discretization, ``ode_coefficients``) in the form
of :class:`~evsnn.nir_conformance.adapter.Effective`; ``departures`` names each field where a measured update
differs from it; ``rule_through_raised_threshold`` decides ``>=`` where a framework resets the membrane it fired
at (so that a probe landing exactly on the threshold cannot be seen from the spiking run alone).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..engines.neurons import ode_coefficients
from ..io.nir import hard_reset
from ._probe import Trace
from .adapter import Effective

__all__ = ["ode_effective", "departures", "rule_through_raised_threshold"]


def _first(node, field: str, default: float | None = None) -> float | None:
    """Neuron 0's value of ``field`` of ``node`` (``default`` where the node has no such field)."""
    value = getattr(node, field, None)
    return default if value is None else float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def ode_effective(node, dt: float) -> Effective:
    """The exact update of neuron 0 of ``node`` over ``dt`` (spike input an impulse, analog input held),
    with the reset the installed ``nir`` documents (``v_reset`` from nir 1.0.5, a subtraction before)."""
    kind = type(node).__name__
    eff = Effective()
    if kind == "Threshold":
        eff.threshold, eff.threshold_rule, eff.reset = _first(node, "threshold"), ">", "none"
        return eff
    r = _first(node, "r", 1.0)
    tau = _first(node, "tau_mem") if kind.startswith("Cuba") else _first(node, "tau")
    tau_syn = _first(node, "tau_syn")
    c = ode_coefficients("if" if tau is None else "lif", dt, tau_mem=tau, tau_syn=tau_syn, r=r,
                         w_in=_first(node, "w_in", 1.0))
    eff.beta = float(c["beta"])
    eff.analog_gain = float(c["analog_gain"])
    if tau_syn is None:
        eff.spike_gain = float(c["spike_gain"])
    else:
        eff.syn_beta, eff.syn_gain = float(c["alpha"]), float(c["syn_spike_gain"])
        eff.notes.append(f"NIR ODE: the synaptic current reaches v one step later, v[t] = beta v[t-1] + "
                         f"{float(c['syn_to_v']):.6g} i[t-1] (no same-step gain).")
    if kind in ("IF", "LIF", "CubaLIF"):
        eff.threshold, eff.threshold_rule = _first(node, "v_threshold"), ">"
        if hard_reset():
            eff.reset, eff.v_reset = "zero", _first(node, "v_reset", 0.0)
        else:
            eff.reset = "subtract"
    else:
        eff.reset = "none"
    return eff


def departures(measured: Effective, exact: Effective, rtol: float = 1e-4) -> list[str]:
    """One line per field where ``measured`` (the framework) and ``exact`` (the NIR ODE) disagree."""
    out = []
    for field in ("beta", "spike_gain", "analog_gain", "syn_beta", "syn_gain", "threshold", "v_reset"):
        a, b = getattr(measured, field), getattr(exact, field)
        if a is not None and b is not None and not np.isclose(a, b, rtol=rtol, atol=1e-12):
            out.append(f"{field}: {a:.6g} per step, NIR ODE {b:.6g}")
    for field in ("threshold_rule", "reset"):
        a, b = getattr(measured, field), getattr(exact, field)
        if a is not None and b is not None and a != b:
            out.append(f"{field}: {a!r}, NIR {b!r}")
    return out


def rule_through_raised_threshold(run: Callable[[np.ndarray], Trace], run_raised: Callable[[np.ndarray], Trace],
                                  n: int, threshold: float, gain: float, dtype: type) -> str | None:
    """``">="`` or ``">"`` from inputs that land the membrane exactly on ``threshold``.

    ``run_raised`` runs the same neuron with a higher threshold, so the membrane an input reaches in one step
    from rest is read without a spike resetting it; ``run`` then shows whether that input fires.
    None when no probe lands exactly on the threshold.
    """
    guess = dtype(threshold / gain)
    cand = guess + np.arange(-256, 257) * np.spacing(guess)
    x = np.broadcast_to(cand[None, :, None], (1, cand.size, n)).copy()
    on = run_raised(x).v[0, :, 0] == dtype(threshold)
    if not on.any():
        return None
    fired = run(x[:, on]).spikes[0, :, 0] > 0
    return ">=" if fired.all() else ">" if not fired.any() else None
