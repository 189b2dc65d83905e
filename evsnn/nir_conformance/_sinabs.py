"""sinabs's NIR import (``sinabs.nir.from_nir``) and export (``sinabs.nir.to_nir``).

What sinabs 3.1.3 (with the ``nir<=1.0.4`` it pins) does with NIR, measured by :meth:`SinabsAdapter.effective`
and checked in tests/test_conformance_sinabs.py: it has no step length. ``LIF``/``LI`` become ``LIFSqueeze``/
``ExpLeakSqueeze`` whose ``tau_mem`` is NIR's τ in seconds read as a number of steps (β = e^{-1/τ}), input added
with gain 1 (``r`` ignored, ``norm_input=False``); ``IF`` becomes ``IAFSqueeze`` (gain 1, ``r`` ignored, clipped
at -θ). Spikes are counted ``floor(v/θ)`` per step where v ≥ θ, each subtracting θ. ``nir.Linear``, ``CubaLIF``,
``CubaLI``, ``I``, ``Threshold`` and ``AvgPool2d`` map to no module: nirtorch 2.0.2 then passes the input through
unchanged. Its export writes ``IF`` with r = 1, ``LIF``/``LI`` with τ = the module's ``tau_mem`` (steps) and
r = 1, and drops ``tau_syn`` and ``norm_input``. Modules run in float32.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np

from ._probe import Trace, measure_effective, neuron_node, probe_graph, rule_through_raised_threshold
from .adapter import Adapter, Effective, Exported

__all__ = ["SinabsAdapter"]


def _import(graph, batch: int):
    """``from_nir`` on a copy of ``graph`` (it rewrites scalar parameters of the nodes it is given), for
    ``batch`` samples of one step per call (the Squeeze layers it builds fold batch and time together)."""
    from sinabs.nir import from_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # nirtorch.load's own deprecation notice
        return from_nir(copy.deepcopy(graph), batch_size=batch)


def _steps(module, x: np.ndarray, watch=None):
    """Run the imported graph step by step from rest (float32): per step its output and, where ``watch`` is a
    sinabs layer inside it, that layer's ``v_mem`` after the step."""
    import torch

    xt = torch.as_tensor(x, dtype=torch.float32)
    state, outs, v = None, [], []
    with torch.no_grad():
        for t in range(xt.shape[0]):
            out, state = module(xt[t], state)
            outs.append(out.double().numpy())
            if watch is not None:
                v.append(watch.v_mem.double().numpy().reshape(xt.shape[1], -1))
    return np.stack(outs), (np.stack(v) if v else None)


class SinabsAdapter(Adapter):
    """sinabs (``sinabs``): ``sinabs.nir.from_nir`` / ``sinabs.nir.to_nir``, modules run in float32."""

    name = "sinabs"
    package = "sinabs"

    def run_imported(self, graph, x: np.ndarray, dt: float) -> np.ndarray:
        """Output per step of ``from_nir(graph)`` (a fresh import, so from rest); ``dt`` is not used: sinabs's
        import takes no step length. Spiking layers output spike counts (several per step possible)."""
        return _steps(_import(graph, x.shape[1]), x)[0]

    def effective(self, graph, dt: float) -> Effective:
        """Measured on the imported neuron layer (its ``v_mem`` is exposed), fed the weighted input directly;
        notes name how it departs from the NIR ODE over ``dt``."""
        import sinabs.layers as sl

        key, node = neuron_node(graph)
        kind = type(node).__name__
        probe = probe_graph(graph)
        n = int(probe.nodes["linear"].weight.shape[0])

        def runner(g):
            def run(x: np.ndarray) -> Trace:
                module = _import(g, x.shape[1])
                layer = dict(module.named_modules()).get(key)
                if not isinstance(layer, sl.StatefulLayer):
                    raise LookupError(key)
                out, v = _steps(module, x, watch=layer)
                return Trace(spikes=None if isinstance(layer, sl.ExpLeak) else out, v=v)
            return run

        run = runner(probe)
        try:
            run(np.zeros((1, 1, n)))
        except LookupError:
            return Effective(notes=[f"from_nir maps {kind} node {key!r} to no module: the graph passes its input "
                                    "through unchanged in its place (nothing to measure)."])
        layer = dict(_import(probe, 1).named_modules())[key]
        threshold = getattr(layer, "spike_threshold", None)
        threshold = None if threshold is None else float(threshold.detach().reshape(-1)[0])
        eff = measure_effective(run, n, scale=threshold or 1.0, threshold=threshold, dtype=np.float32)
        if threshold is not None and eff.threshold_rule is None and eff.spike_gain:
            raised = copy.deepcopy(probe)
            raised.nodes[key].v_threshold = np.asarray(raised.nodes[key].v_threshold) * 4.0
            eff.threshold_rule = rule_through_raised_threshold(run, runner(raised), n, threshold, eff.spike_gain,
                                                               np.float32)
            eff.notes.append(f"rule {eff.threshold_rule!r}: inputs that bring the membrane exactly to the threshold "
                             "(read with the threshold raised 4x) fire." if eff.threshold_rule == ">=" else
                             f"rule from membranes landing on the threshold: {eff.threshold_rule!r}.")
        if threshold is not None:
            counts = run(np.full((1, 1, n), 2.5 * threshold / (eff.spike_gain or 1.0))).spikes[0, 0, 0]
            eff.notes.append(f"a membrane of 2.5 θ in one step outputs {counts:g} (a spike count per step, "
                             "MultiSpike: floor(v/θ)), where NIR's neuron emits one event.")
            if eff.reset is None and eff.spike_gain:  # the probe expects one spike; here each counted spike subtracts θ
                amps = np.array([1.5, 2.5, 3.5]) * threshold / eff.spike_gain
                tr = run(np.broadcast_to(amps[None, :, None], (1, 3, n)).copy())
                pre = amps * eff.spike_gain
                if np.allclose(tr.v[0, :, 0], pre - tr.spikes[0, :, 0] * threshold, rtol=1e-5, atol=1e-6):
                    eff.reset = "subtract"
                    eff.notes.append(f"reset 'subtract': membranes {pre.tolist()} keep {tr.v[0, :, 0].tolist()}, "
                                     f"less θ per counted spike ({tr.spikes[0, :, 0].tolist()}).")
        if kind in ("LIF", "LI"):
            eff.notes.append(f"tau_mem = {float(layer.tau_mem.detach().reshape(-1)[0]):.6g} = NIR tau in seconds read as "
                             f"steps: beta = exp(-1/tau); r = {float(np.asarray(node.r).reshape(-1)[0]):.6g} is "
                             "ignored (norm_input=False: gain 1).")
        if kind == "IF":
            eff.notes.append(f"IAFSqueeze: v += input (r ignored), clipped below at -θ (min_v_mem = "
                             f"{float(layer.min_v_mem.detach().reshape(-1)[0]):.6g}).")
        mapped = dict(_import(graph, 1).named_modules())
        dropped = [k for k, nd in graph.nodes.items() if k not in mapped and type(nd).__name__ not in ("Input", "Output")]
        if dropped:
            eff.notes.append(f"from_nir maps nodes {dropped} of the graph to no module: their input passes through "
                             "unchanged (a nir.Linear's weights are lost).")
        return eff

    def export(self, case: str, dt: float, seed: int = 0) -> Exported:
        """``to_nir`` of the case built from sinabs's Squeeze layers (``IAFSqueeze``, ``LIFSqueeze``, the same with
        ``tau_syn``, ``ExpLeakSqueeze``; one step per call, as ``from_nir`` builds them), time constants in steps
        (τ = 10, τ_syn = 5)."""
        import torch
        from torch import nn

        import sinabs.layers as sl
        from sinabs.nir import to_nir

        from .adapter import EXPORT_CASES

        if case not in EXPORT_CASES:
            raise ValueError(f"export: case must be one of {EXPORT_CASES}, got {case!r}.")
        torch.manual_seed(seed)
        # per-neuron parameters: to_nir writes scalar ones as they are, and a LIF node of shape () names no width
        neuron = {"if": lambda n: sl.IAFSqueeze(num_timesteps=1),
                  "lif": lambda n: sl.LIFSqueeze(tau_mem=torch.full((n,), 10.0), spike_threshold=torch.ones(n),
                                                 norm_input=False, num_timesteps=1),
                  "cuba_lif": lambda n: sl.LIFSqueeze(tau_mem=torch.full((n,), 10.0), tau_syn=torch.full((n,), 5.0),
                                                     spike_threshold=torch.ones(n), norm_input=False, num_timesteps=1),
                  "li": lambda n: sl.ExpLeakSqueeze(tau_mem=torch.full((n,), 10.0), num_timesteps=1)}
        if case == "two_layer":
            layers = [nn.Linear(6, 5), neuron["lif"](5), nn.Linear(5, 3), neuron["lif"](3)]
            what = "Linear 6->5, LIFSqueeze(tau_mem=10 steps, norm_input=False), Linear 5->3, LIFSqueeze"
        else:
            layers = [nn.Linear(4, 3), neuron[case](3)]
            what = f"Linear 4->3, {type(layers[1]).__name__}" + {
                "lif": "(tau_mem=10 steps, norm_input=False)", "cuba_lif": "(tau_mem=10, tau_syn=5 steps)",
                "li": "(tau_mem=10 steps)", "if": ""}[case]
        model = nn.Sequential(*layers)
        with torch.no_grad():
            for m in model:
                if isinstance(m, nn.Linear):
                    m.weight.mul_(3.0)  # enough drive that the neurons fire within a few steps
        n_in = layers[0].in_features
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            graph = to_nir(model, torch.zeros(1, n_in))

        def run(x: np.ndarray) -> np.ndarray:
            for m in model:
                if isinstance(m, sl.StatefulLayer):
                    m.reset_states()
            with torch.no_grad():
                out = [model(xt) for xt in torch.as_tensor(x, dtype=torch.float32)]
            return np.stack([o.double().numpy() for o in out])

        return Exported(graph=graph, run=run, dt=dt,
                        description=f"sinabs {what}, per-neuron parameters, weights x3 of torch's default init (seed {seed}); exported "
                                    "by sinabs.nir.to_nir, which writes tau in steps and r = 1")
