"""Rockpool's NIR import (``rockpool.nn.modules.from_nir``) and export (``rockpool.nn.modules.to_nir``).

Rockpool 3.1.0 maps ``CubaLIF`` to ``LIFTorch``, ``LI`` to ``ExpSynTorch`` and ``LIF`` to
``LIFNeuronTorch`` (which fails: it reads ``node.tau_mem``, an attribute NIR's ``LIF`` does not have),
``Linear``/``Affine`` to ``LinearTorch``, and nothing else. It takes no ``dt``: each module's step is
derived from the node as ``min(τ / (1 + r))``, while its own export writes ``r = τ e^(−dt/τ) / dt``.
Its modules process a whole sequence ``(batch, time, n)`` at once, in float32.
"""

from __future__ import annotations

import copy

import numpy as np

from ._probe import Trace, measure_effective, neuron_node, probe_graph
from .adapter import Adapter, Effective, Exported

__all__ = ["RockpoolAdapter"]


def _sequence(module, x: np.ndarray, **kwargs):
    """Run a Rockpool (or nirtorch-executed) module on ``x`` ``(steps, batch, ...)`` as one sequence."""
    import torch

    xt = torch.as_tensor(np.moveaxis(x, 0, 1).copy(), dtype=torch.float32)  # Rockpool: (batch, time, ...)
    with torch.no_grad():
        return module(xt, **kwargs)


def _steps_first(t) -> np.ndarray:
    return np.moveaxis(t.detach().double().numpy(), 1, 0)


class RockpoolAdapter(Adapter):
    """Rockpool (``rockpool``): ``from_nir(graph)`` run as one sequence / ``to_nir(module)``, float32."""

    name = "rockpool"
    package = "rockpool"

    def run_imported(self, graph, x: np.ndarray, dt: float) -> np.ndarray:
        """The graph executor's output at every step; ``dt`` is not used (Rockpool's import takes none)."""
        from rockpool.nn.modules import from_nir

        out = _sequence(from_nir(copy.deepcopy(graph)), x)
        out = out[0] if isinstance(out, tuple) else out
        return _steps_first(out)

    def effective(self, graph, dt: float) -> Effective:
        """Measured on the module Rockpool's importer builds for the neuron node (``record=True`` exposes
        ``vmem`` and ``isyn`` of ``LIFTorch``; ``ExpSynTorch``'s output is its state)."""
        from rockpool.nn.modules.torch.nir import _convert_nir_to_rockpool

        key, node = neuron_node(graph)
        kind = type(node).__name__
        n = probe_graph(graph).nodes["linear"].weight.shape[0]

        def module():
            return _convert_nir_to_rockpool(copy.deepcopy(node))  # a fresh module: every probe from rest

        first = module()  # raises what the import raises for this node (reported by the checker)
        if kind == "LI":
            def run(x: np.ndarray) -> Trace:
                out = _sequence(module(), x)
                return Trace(None, _steps_first(out[0] if isinstance(out, tuple) else out))

            eff = measure_effective(run, n)
        else:
            def run(x: np.ndarray) -> Trace:
                out, _, rec = _sequence(module(), x, record=True)
                syn = rec["isyn"][..., 0] if kind == "CubaLIF" else None
                return Trace(_steps_first(out), _steps_first(rec["vmem"]),
                             _steps_first(syn) if syn is not None else None)

            theta = float(np.unique(first.threshold.detach().double().numpy())[0])
            eff = measure_effective(run, n, scale=theta, threshold=theta)
        eff.notes.insert(0, f"imported as rockpool {type(first).__name__} with dt = {float(first.dt):g} s derived "
                            f"from the node (min τ/(1 + r)); the dt = {dt:g} s asked for is not used.")
        return eff

    def export(self, case: str, dt: float, seed: int = 0) -> Exported:
        """``case`` from Rockpool torch modules stepping ``dt`` (τ_mem = 10 dt, τ_syn = 5 dt, threshold 1),
        positive seeded weights; exported with ``to_nir(module, sample)``. Rockpool has no IF neuron."""
        import torch
        from rockpool.nn.combinators import Sequential
        from rockpool.nn.modules import ExpSynTorch, LIFNeuronTorch, LIFTorch, LinearTorch, to_nir

        sizes = {"if": [4, 3], "lif": [4, 3], "cuba_lif": [4, 3], "li": [4, 3], "two_layer": [6, 5, 3]}
        if case not in sizes:
            raise ValueError(f"export: unknown case {case!r}, expected one of {', '.join(sizes)}.")
        if case == "if":
            raise NotImplementedError("Rockpool has no IF neuron (export case 'if').")
        neurons = {
            "lif": lambda n: LIFNeuronTorch(n, tau_mem=10 * dt, threshold=1.0, dt=dt),
            "cuba_lif": lambda n: LIFTorch(n, tau_mem=10 * dt, tau_syn=5 * dt, threshold=1.0, dt=dt),
            "li": lambda n: ExpSynTorch(n, tau=10 * dt, dt=dt),
        }
        neuron = neurons["lif" if case == "two_layer" else case]
        torch.manual_seed(seed)
        layers = []
        for n_in, n_out in zip(sizes[case], sizes[case][1:]):
            lin = LinearTorch((n_in, n_out), has_bias=False)
            with torch.no_grad():
                lin.weight.copy_(torch.rand(n_in, n_out))
            layers += [lin, neuron(n_out)]
        net = Sequential(*layers)
        graph = to_nir(net, torch.zeros(1, sizes[case][0]))

        def run(x: np.ndarray) -> np.ndarray:  # the export types its Input (1, n), a batch axis included
            out = _sequence(net, x.reshape(*x.shape[:2], -1))
            return _steps_first(out[0] if isinstance(out, tuple) else out)

        built = {"lif": "LIFNeuronTorch(tau_mem = 10 dt, threshold 1", "cuba_lif":
                 "LIFTorch(tau_mem = 10 dt, tau_syn = 5 dt, threshold 1", "li": "ExpSynTorch(tau = 10 dt",
                 "two_layer": "LIFNeuronTorch(tau_mem = 10 dt, threshold 1"}
        return Exported(graph=graph, run=run, dt=dt,
                        description=f"rockpool Sequential of LinearTorch {' -> '.join(map(str, sizes[case]))} (no "
                                    f"bias, weights U(0, 1), seed {seed}) each followed by {built[case]}, "
                                    f"dt={dt!r}); to_nir(module).")
