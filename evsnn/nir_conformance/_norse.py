"""Norse's NIR import (``norse.torch.from_nir``) and export (``norse.torch.to_nir``).

What Norse 1.1.0 does with NIR (measured by :meth:`NorseAdapter.effective`, tests/test_conformance_norse.py):
its import takes ``dt`` and integrates ``IF``, ``LIF`` and ``CubaLIF`` by forward Euler (β = 1 − dt/τ, input
gain dt/τ: an input is a current held over the step), ignores ``r`` of IF and LIF and every ``v_reset``
(resets to 0), and maps no module for ``LI``, ``CubaLI``, ``I`` and ``Threshold``: its graph executor skips
them and passes their input through unchanged. Its export writes τ = dt·τ_Norse (``dt / tau_mem_inv``), not
τ_Norse. Modules run in float32.
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from ._probe import Trace, measure_effective, neuron_node, probe_graph
from .adapter import Adapter, Effective, Exported

__all__ = ["NorseAdapter"]

SPIKING = ("IF", "LIF", "CubaLIF", "Threshold")


class _Logged(logging.Handler):
    """Collects what Norse logs while importing (its warnings about parameters it ignores)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(" ".join(record.getMessage().split()))


def _import(graph, dt: float):
    """``norse.torch.from_nir(graph, dt=dt)`` on a copy of ``graph``, and what it logged (to the root logger,
    collected here instead of printed once per probe; :meth:`NorseAdapter.effective` reports it)."""
    import norse.torch

    handler = _Logged()
    root = logging.getLogger()
    saved, root.handlers = root.handlers, [handler]
    try:
        module = norse.torch.from_nir(copy.deepcopy(graph), dt=dt)
    finally:
        root.handlers = saved
    return module, handler.lines


def _steps(module, x: np.ndarray, key: str | None = None):
    """Run the imported graph executor step by step (float32, from its initial state, passing its state on);
    per step its output and, for ``key`` (a node's key), that node's exposed (membrane, synaptic current)."""
    import torch

    xt = torch.as_tensor(x, dtype=torch.float32)
    state, outs, v, syn = None, [], [], []
    with torch.no_grad():
        for t in range(xt.shape[0]):
            out, state = module(xt[t], state)
            outs.append(out.double().numpy())
            if key is not None and key in state.state:
                (cell,) = state.state[key]  # CubaLIF: (synapse state, LIF state); the others: the LIF/IAF state
                cuba = not hasattr(cell, "v")
                v.append(np.broadcast_to((cell[1] if cuba else cell).v.double().numpy(), outs[-1].shape))
                if cuba:
                    syn.append(np.broadcast_to(cell[0].v.double().numpy(), outs[-1].shape))
    return np.stack(outs), (np.stack(v) if v else None), (np.stack(syn) if syn else None)


def _scalar(tensor) -> float:
    values = np.unique(tensor.detach().double().numpy())
    if values.size != 1:
        raise ValueError(f"expected one value for all neurons, got {values.tolist()}")
    return float(values[0])


class NorseAdapter(Adapter):
    """Norse (``norse``): ``norse.torch.from_nir(graph, dt=dt)`` / ``norse.torch.to_nir``, float32."""

    name = "norse"
    package = "norse"

    def run_imported(self, graph, x: np.ndarray, dt: float) -> np.ndarray:
        """The executor's output per step of ``from_nir(graph, dt=dt)`` (spikes, or for a node Norse skips, its
        input)."""
        module, _ = _import(graph, dt)
        return _steps(module, x)[0]

    def effective(self, graph, dt: float) -> Effective:
        """Measured on the imported cell through the executor's state (membrane ``v``, synaptic ``v`` of
        CubaLIF); a node Norse maps no module for is measured on the output the executor passes on."""
        from nirtorch.utils import sanitize_name

        key, node = neuron_node(graph)
        kind = type(node).__name__
        probe = probe_graph(graph)
        module, logged = _import(probe, dt)
        name = sanitize_name(key)
        cell = getattr(module, name, None)
        n = probe.nodes["linear"].weight.shape[0]
        if cell is None:
            def run(x: np.ndarray) -> Trace:
                out = _steps(_import(probe, dt)[0], x)[0]
                return Trace(None, out)

            eff = measure_effective(run, n)
            eff.notes.insert(0, f"Norse's from_nir maps no module for {kind}: its executor skips node {key!r} and "
                                "the Output receives the node's input unchanged (measured on that output).")
            return eff

        def run(x: np.ndarray) -> Trace:
            out, v, syn = _steps(_import(probe, dt)[0], x, name)  # a fresh import: every probe from rest
            return Trace(out if kind in SPIKING else None, v, syn)

        p = (cell.lif if kind == "CubaLIF" else cell).p
        theta = _scalar(p.v_th)
        eff = measure_effective(run, n, scale=theta, threshold=theta)
        eff.notes.insert(0, f"imported as {type(cell).__name__} with dt={dt!r}: " + ", ".join(
            f"{f}={_scalar(getattr(p, f))!r}" for f in ("tau_mem_inv", "v_leak", "v_th", "v_reset") if hasattr(p, f))
            + (f"; synapse tau_mem_inv={_scalar(cell.synapse.p.tau_mem_inv)!r}, w_in and r multiply its input "
               "and output" if kind == "CubaLIF" else "") + ".")
        eff.notes += [f"Norse logged: {line}" for line in logged]
        return eff

    def export(self, case: str, dt: float, seed: int = 0) -> Exported:
        """``case`` from Norse cells stepping ``dt`` (τ_mem = 10 dt, τ_syn = 5 dt, threshold 1, per-neuron
        parameters: with Norse's scalar defaults ``to_nir`` writes 0-d parameters that fail NIR's type check),
        positive seeded weights; exported with ``to_nir(module, sample, dt=dt)``."""
        import norse.torch as nt
        import torch

        sizes = {"if": [4, 3], "lif": [4, 3], "cuba_lif": [4, 3], "li": [4, 3], "two_layer": [6, 5, 3]}
        if case not in sizes:
            raise ValueError(f"export: unknown case {case!r}, expected one of {', '.join(sizes)}.")
        cells = {
            "if": lambda n: nt.IAFCell(nt.IAFParameters(v_th=torch.ones(n)), dt=dt),
            "lif": lambda n: nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.full((n,), 0.1 / dt),
                                                               v_leak=torch.zeros(n), v_th=torch.ones(n)), dt=dt),
            "cuba_lif": lambda n: nt.LIFCell(nt.LIFParameters(tau_syn_inv=torch.full((n,), 0.2 / dt),
                                                              tau_mem_inv=torch.full((n,), 0.1 / dt),
                                                              v_leak=torch.zeros(n), v_th=torch.ones(n)), dt=dt),
            "li": lambda n: nt.LIBoxCell(nt.LIBoxParameters(tau_mem_inv=torch.full((n,), 0.1 / dt),
                                                            v_leak=torch.zeros(n)), dt=dt),
        }
        cell = cells["lif" if case == "two_layer" else case]
        scale = 1.0 if case == "if" else 4.0  # a leaky cell gains dt/τ = 0.1 of its input per step
        torch.manual_seed(seed)
        layers = []
        for n_in, n_out in zip(sizes[case], sizes[case][1:]):
            lin = torch.nn.Linear(n_in, n_out, bias=False)
            with torch.no_grad():
                lin.weight.copy_(torch.rand(n_out, n_in) * scale)
            layers += [lin, cell(n_out)]
        net = nt.SequentialState(*layers)
        graph = nt.to_nir(net, torch.zeros(sizes[case][0]), dt=dt)

        def run(x: np.ndarray) -> np.ndarray:
            xt = torch.as_tensor(x, dtype=torch.float32)
            state, outs = None, []
            with torch.no_grad():
                for t in range(xt.shape[0]):
                    out, state = net(xt[t], state)
                    outs.append(out.double().numpy())
            return np.stack(outs)

        built = {"if": "IAFCell", "lif": "LIFBoxCell", "cuba_lif": "LIFCell", "li": "LIBoxCell",
                 "two_layer": "LIFBoxCell"}[case]
        return Exported(graph=graph, run=run, dt=dt,
                        description=f"norse.torch.SequentialState of Linear {' -> '.join(map(str, sizes[case]))} "
                                    f"(no bias, weights U(0, {scale:g}), seed {seed}) each followed by "
                                    f"norse.torch.{built}(dt={dt!r}, tau_mem = 10 dt, tau_syn = 5 dt, v_th = 1, "
                                    "per neuron); to_nir(..., dt=dt).")
