"""SpikingJelly's NIR import (``import_from_nir``) and export (``export_to_nir``), in
``spikingjelly.activation_based.nir_exchange``.

What SpikingJelly 2.0.0 does with NIR, measured by :meth:`SpikingJellyAdapter.effective` and checked in
tests/test_conformance_spikingjelly.py: it takes ``dt`` and discretizes by forward Euler. ``LIF`` becomes an
``LIFNode`` with τ/dt steps, ``v += (x − (v − v_reset))/τ`` for ``r = 1`` or ``v += x − (v − v_reset)/τ`` for
``r = τ/dt`` (any other ``r`` is refused); ``IF`` an ``IFNode`` (``v += x``, only ``r = 1/dt``); ``CubaLIF`` a
``CUBALIFNode`` (``c = (1 − dt/τ_syn) c + x``, ``v = (1 − dt/τ_mem) v + c``, only ``r = τ_mem/dt`` and
``w_in = τ_syn/dt``). All fire at ``v ≥ θ`` and reset to ``v_reset``; parameters must be equal across neurons;
``LI``, ``CubaLI``, ``I``, ``Threshold`` and ``SumPool2d`` are not imported. Modules run in float64 here (the
import's ``dtype`` argument).
"""

from __future__ import annotations

import copy

import numpy as np

from ._probe import Trace, measure_effective, neuron_node, probe_graph, rule_through_raised_threshold
from .adapter import EXPORT_CASES, Adapter, Effective, Exported

__all__ = ["SpikingJellyAdapter"]


def _import(graph, dt: float):
    """``import_from_nir`` of a copy of ``graph`` over ``dt``, single-step mode, float64."""
    import torch
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    return import_from_nir(copy.deepcopy(graph), dt=dt, dtype=torch.float64, step_mode="s")


def _steps(module, x: np.ndarray, key: str | None = None):
    """Run the imported graph module step by step from rest (``state=None`` restarts it), passing its returned
    state on; per step its output and, for neuron node ``key``, the membrane and synaptic current it holds."""
    import torch

    xt = torch.as_tensor(x, dtype=torch.float64)
    state, outs, v, syn = None, [], [], []
    with torch.no_grad():
        for t in range(xt.shape[0]):
            out, state = module(xt[t], state)
            outs.append(out.numpy().astype(np.float64))
            if key is not None:
                held = state[key]  # (v,) or, for CUBALIFNode, (v, c)
                v.append(np.broadcast_to(held[0].numpy(), out.shape).astype(np.float64))
                if len(held) > 1:
                    syn.append(np.broadcast_to(held[1].numpy(), out.shape).astype(np.float64))
    return np.stack(outs), (np.stack(v) if v else None), (np.stack(syn) if syn else None)


class SpikingJellyAdapter(Adapter):
    """SpikingJelly (``spikingjelly``): ``import_from_nir`` / ``export_to_nir``, modules run in float64."""

    name = "spikingjelly"
    package = "spikingjelly"

    def run_imported(self, graph, x: np.ndarray, dt: float) -> np.ndarray:
        """Output per step of ``import_from_nir(graph, dt=dt)`` run from rest in single-step mode."""
        return _steps(_import(graph, dt), x)[0]

    def effective(self, graph, dt: float) -> Effective:
        """Measured on the imported neuron module, fed the weighted input directly (its state ``v``, and ``c``
        of a CUBALIFNode, is returned by the module each step); notes name how it departs from the NIR ODE."""
        key, node = neuron_node(graph)
        probe = probe_graph(graph)
        n = int(probe.nodes["linear"].weight.shape[0])

        def runner(g):
            module = _import(g, dt)

            def run(x: np.ndarray) -> Trace:
                out, v, syn = _steps(module, x, key)
                return Trace(spikes=out, v=v, syn=syn)
            return run, module

        run, module = runner(probe)
        neuron = module.get_submodule(key).module
        threshold = float(neuron.v_threshold)
        eff = measure_effective(run, n, scale=threshold, threshold=threshold, dtype=np.float64)
        gain = eff.spike_gain * (eff.syn_gain or 1.0) if eff.spike_gain else None
        if eff.threshold_rule is None and gain:
            raised = copy.deepcopy(probe)
            raised.nodes[key].v_threshold = np.asarray(raised.nodes[key].v_threshold) * 4.0
            eff.threshold_rule = rule_through_raised_threshold(run, runner(raised)[0], n, threshold, gain, np.float64)
            eff.notes.append(f"rule {eff.threshold_rule!r} from inputs that bring the membrane exactly to the "
                             "threshold (membrane read with the threshold raised 4x).")
        eff.notes.append(f"imported as {type(neuron).__name__}("
                         + ", ".join(f"{k}={getattr(neuron, k):.6g}" for k in ("tau", "c_decay", "v_decay",
                                                                                "v_threshold", "v_reset")
                                     if isinstance(getattr(neuron, k, None), float))
                         + (f", decay_input={neuron.decay_input}" if hasattr(neuron, "decay_input") else "") + ")")
        return eff

    def export(self, case: str, dt: float, seed: int = 0) -> Exported:
        """``export_to_nir(net, dt=dt)`` of the case built from SpikingJelly's default neurons (``IFNode()``,
        ``LIFNode()`` τ = 2 steps, ``CUBALIFNode()``); it has no LI neuron."""
        import torch
        from spikingjelly.activation_based import functional, layer, neuron
        from spikingjelly.activation_based.nir_exchange import export_to_nir

        if case not in EXPORT_CASES:
            raise ValueError(f"export: case must be one of {EXPORT_CASES}, got {case!r}.")
        if case == "li":
            raise NotImplementedError("SpikingJelly 2.0.0 has no LI neuron (a non-spiking leaky integrator): "
                                      "its NIR export writes IF, LIF and CubaLIF only.")
        torch.manual_seed(seed)
        make = {"if": neuron.IFNode, "lif": neuron.LIFNode, "cuba_lif": neuron.CUBALIFNode}
        if case == "two_layer":
            mods = [layer.Linear(6, 5), neuron.LIFNode(), layer.Linear(5, 3), neuron.LIFNode()]
        else:
            mods = [layer.Linear(4, 3), make[case]()]
        net = torch.nn.Sequential(*mods).to(torch.float64)
        with torch.no_grad():
            for m in net:
                if isinstance(m, torch.nn.Linear):
                    m.weight.mul_(3.0)  # enough drive that the neurons fire within a few steps
        n_in = mods[0].in_features
        graph = export_to_nir(net, torch.zeros(1, n_in, dtype=torch.float64), dt=dt)

        def run(x: np.ndarray) -> np.ndarray:
            functional.reset_net(net)
            with torch.no_grad():
                out = [net(torch.as_tensor(xt, dtype=torch.float64)) for xt in x]
            functional.reset_net(net)
            return np.stack([o.numpy() for o in out]).astype(np.float64)

        what = " -> ".join(type(m).__name__ + (f"({m.in_features}->{m.out_features})" if hasattr(m, "in_features")
                                                 else "") for m in mods)
        return Exported(graph=graph, run=run, dt=dt,
                        description=f"SpikingJelly {what} with its default parameters, weights x3 of torch's "
                                    f"default init (seed {seed}), float64; exported by export_to_nir(dt={dt:g})")
