"""snnTorch's NIR import (``snntorch.import_nir.import_from_nir``) and export (``snntorch.export_nir.export_to_nir``).

What snnTorch 1.0.0 does with NIR (measured by :meth:`SnntorchAdapter.effective`, tests/test_conformance_snntorch.py):
it has no notion of a step length. Its import maps ``IF`` onto a ``Leaky`` with β = 0.9 and a subtracting reset,
``LIF``/``CubaLIF`` onto ``Leaky``/``Synaptic`` with forward-Euler β = 1 − 1e-4/τ (dt hard-coded to 1e-4) and a
reset to zero, dividing the threshold by ``R·1e-4/τ`` instead of scaling the input. Its subtracting reset
(``_base_sub``) subtracts θ before the comparison whenever a step starts above θ, and takes it back when no spike
follows: a membrane left above θ by a reset fires only above 2θ. Its export writes
τ = 1e-4/(1 − β), R = τ/1e-4 and ``v_reset = 0`` whatever the module's reset. The modules run in float32.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np

from ._probe import Trace, measure_effective, neuron_node, probe_graph
from .adapter import Adapter, Effective, Exported

__all__ = ["SnntorchAdapter"]

EXPORT_DT = 1e-4  # the step snnTorch's export assumes (export_nir.py); its modules themselves have none


def _import(graph):
    """The module ``import_from_nir`` builds from a copy of ``graph`` (it rewrites the graph it is given), and
    what it printed."""
    from snntorch.import_nir import import_from_nir

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        module = import_from_nir(copy.deepcopy(graph))
    return module, printed.getvalue()


def _steps(module, x: np.ndarray, watch=None):
    """Run the imported graph module step by step (float32, from rest); per step its output spikes and, when
    ``watch`` is a snnTorch neuron module inside it, that neuron's membrane and synaptic current."""
    import torch

    xt = torch.as_tensor(x, dtype=torch.float32)
    state, outs, v, syn = None, [], [], []
    with torch.no_grad():
        for t in range(xt.shape[0]):
            out, state = module(xt[t], state)
            if isinstance(out, tuple):  # a neuron imported with init_hidden=False (IF) returns (spikes, membrane)
                out = out[0]
            outs.append(out.double().numpy())
            if watch is not None:
                v.append(watch.mem.double().numpy())
                if hasattr(watch, "syn"):
                    syn.append(watch.syn.double().numpy())
    return np.stack(outs), (np.stack(v) if v else None), (np.stack(syn) if syn else None)


def _scalar(tensor) -> float:
    values = np.unique(tensor.detach().double().numpy())
    if values.size != 1:
        raise ValueError(f"expected one value for all neurons, got {values.tolist()}")
    return float(values[0])


class SnntorchAdapter(Adapter):
    """snnTorch (``snntorch``): ``import_from_nir`` / ``export_to_nir``, modules run in float32."""

    name = "snntorch"
    package = "snntorch"

    def run_imported(self, graph, x: np.ndarray, dt: float) -> np.ndarray:
        """Output spikes per step of ``import_from_nir(graph)``; ``dt`` is not used: snnTorch's import takes no
        step length (its LIF and CubaLIF hard-code 1e-4 s)."""
        module, _ = _import(graph)
        return _steps(module, x)[0]

    def effective(self, graph, dt: float) -> Effective:
        """Measured on the imported neuron module (its membrane ``mem`` and current ``syn`` are exposed).

        Reported in the NIR node's units: where the import divides the threshold by a factor instead of
        scaling the input, gains and reset level are multiplied by it (notes give the raw values).
        """
        import snntorch as snn

        key, node = neuron_node(graph)
        probe = probe_graph(graph)
        module, printed = _import(probe)
        neurons = [m for m in module.modules() if isinstance(m, snn.SpikingNeuron)]
        if len(neurons) != 1:
            raise ValueError(f"effective: snnTorch imported node {key!r} ({type(node).__name__}) as "
                             f"{len(neurons)} neuron modules.")
        neuron = neurons[0]
        n = probe.nodes["linear"].weight.shape[0]

        def traced(x: np.ndarray) -> Trace:
            fresh, _ = _import(probe)  # a fresh import per run: every probe starts from rest
            watch = next(m for m in fresh.modules() if isinstance(m, snn.SpikingNeuron))
            out, v, syn = _steps(fresh, x, watch)
            return Trace(out, v, syn)

        theta = _scalar(neuron.threshold)
        eff = measure_effective(traced, n, scale=theta, threshold=theta)
        eff.notes.insert(0, f"imported as snntorch.{type(neuron).__name__}(beta={_scalar(neuron.beta)!r}"
                            + (f", alpha={_scalar(neuron.alpha)!r}" if hasattr(neuron, "alpha") else "")
                            + f", threshold={theta!r}, reset_mechanism={neuron.reset_mechanism!r}); "
                            f"no dt is passed: dt={dt!r} is not used.")
        eff.notes += [f"snnTorch printed: {line}" for line in printed.splitlines() if line.strip()]
        nir_theta = np.unique(np.asarray(node.v_threshold, dtype=np.float64))
        if nir_theta.size == 1 and theta != 0 and not np.isclose(theta, nir_theta[0], rtol=1e-6):
            _rescale(eff, float(nir_theta[0]) / theta, theta)
        return eff

    def export(self, case: str, dt: float, seed: int = 0) -> Exported:
        """``case`` built from ``snn.Leaky``/``snn.Synaptic`` (per-neuron β and threshold: with scalars,
        ``export_to_nir`` writes 0-d parameters and raises in its own type inference), default reset
        (subtract), positive seeded weights; exported with ``export_to_nir(..., ignore_dims=[0])``."""
        import snntorch as snn
        import torch
        from snntorch.export_nir import export_to_nir
        from snntorch.utils import reset

        if case in ("if", "li"):
            raise NotImplementedError(f"snnTorch has no {'IF' if case == 'if' else 'LI'} neuron "
                                      f"(export case {case!r}).")
        sizes = {"lif": [4, 3], "cuba_lif": [4, 3], "two_layer": [6, 5, 3]}
        if case not in sizes:
            raise ValueError(f"export: unknown case {case!r}, expected one of if, lif, cuba_lif, li, two_layer.")
        torch.manual_seed(seed)
        layers = []
        for n_in, n_out in zip(sizes[case], sizes[case][1:]):
            lin = torch.nn.Linear(n_in, n_out, bias=False)
            with torch.no_grad():
                lin.weight.copy_(torch.rand(n_out, n_in))
            beta, theta = torch.full((n_out,), 0.9), torch.ones(n_out)
            cell = (snn.Synaptic(alpha=torch.full((n_out,), 0.8), beta=beta, threshold=theta, init_hidden=True)
                    if case == "cuba_lif" else snn.Leaky(beta=beta, threshold=theta, init_hidden=True))
            layers += [lin, cell]
        net = torch.nn.Sequential(*layers)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            graph = export_to_nir(net, torch.zeros(1, sizes[case][0]), ignore_dims=[0])

        def run(x: np.ndarray) -> np.ndarray:
            reset(net)
            xt = torch.as_tensor(x, dtype=torch.float32)
            with torch.no_grad():
                return np.stack([net(xt[t]).double().numpy() for t in range(xt.shape[0])])

        kind = "Synaptic(alpha=0.8, beta=0.9" if case == "cuba_lif" else "Leaky(beta=0.9"
        return Exported(graph=graph, run=run, dt=EXPORT_DT,
                        description=f"torch.nn.Sequential of Linear {' -> '.join(map(str, sizes[case]))} "
                                    f"(no bias, weights U(0, 1), seed {seed}) each followed by snntorch.{kind}, "
                                    "threshold=1, reset subtract, reset_delay=True, init_hidden=True: its "
                                    "defaults) per neuron; snnTorch's "
                                    f"export assumes dt = {EXPORT_DT} (the dt={dt!r} asked for cannot be "
                                    "passed to it).")


def _rescale(eff: Effective, factor: float, theta: float) -> None:
    """Express ``eff`` in the NIR node's membrane units: the framework's membrane times ``factor``."""
    gains = ("syn_gain", "analog_gain") if eff.syn_gain is not None else ("spike_gain", "analog_gain")
    raw = {k: getattr(eff, k) for k in (*gains, "v_reset") if getattr(eff, k) is not None}
    for k, value in raw.items():  # a current-based neuron: scaling its current scales its membrane
        setattr(eff, k, value * factor)
    eff.threshold = theta * factor
    eff.notes.append(f"the module's threshold is {theta!r}, not the node's {theta * factor!r}: its membrane is "
                     f"the NIR membrane / {factor!r}; reported in NIR units (raw: threshold {theta!r}, "
                     + ", ".join(f"{k} {v!r}" for k, v in raw.items() if v is not None) + ").")
