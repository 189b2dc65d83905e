"""The torch timestep engine: every population updated at every step, batched, on the CPU or a GPU.

The kind of simulator most of the field uses (SpikingJelly, snnTorch, sinabs
and Norse are torch timestep loops), and the one direct training runs on. Its
dynamics are a pure step function over explicit state
(:meth:`TimestepNetwork.step`, Norse's parameters/state split): the neuron
update is :func:`evsnn.engines.neurons.neuron_step` itself, run on tensors,
and the products are :class:`~evsnn.engines.torch_ops.TorchOperator`'s (the
ones the event engine uses on its dense steps), so there is no second copy
of the dynamics to keep in step with the event engine and Brian2.

Per step ``t`` and population, in model order (docs/design.md, "Time and
update order"): the spike input due at ``t`` is summed over the incoming
projections in the order the event engine adds them into its ring buffer
(earliest emission first, i.e. largest delay first; then the input before
the populations, in model order; then projection order), then the analog
input and the bias are added; then integrate, threshold, reset. A spike of
step ``t`` is read by a projection of delay ``d`` at step ``t + d`` from the
source's recent spikes, which the state keeps.

SOPs are counted from the spikes with :meth:`~evsnn.ops.Dense.fan_out`, the
one rule every engine shares, at the step a spike is emitted, exactly (in
float64 whatever the engine's dtype). The products sum in torch's order, not
the event engine's: in float64 the two agree spike for spike except where a
potential lands within rounding of its threshold; ``evsnn.validate`` reports
float32 differences.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch

from ..encoding import EncodedInput
from ..errors import EngineError
from ..model import INPUT, SpikingModel
from ..ops import Conv2d, Dense
from . import register_engine
from .base import BatchOutput, Engine
from .neurons import NeuronParams, NeuronState, initial_state, integrate, neuron_step
from .torch_ops import TorchOperator

__all__ = ["TorchEngine", "TimestepNetwork", "NetworkState", "TORCH_KINDS", "check_device"]

#: Neuron kinds the torch engine integrates (every kind).
TORCH_KINDS = ("if", "lif", "srm", "cuba_lif", "li", "cuba_li", "i", "threshold")


class NetworkState(NamedTuple):
    """What a network carries from one step to the next."""

    neurons: tuple[NeuronState, ...]  # per population, in model order
    #: per spike source (the input, then the populations), its spikes of the last steps, newest first, as many as
    #: its longest outgoing delay
    past: tuple[tuple[torch.Tensor, ...], ...]


class TimestepNetwork:
    """A :class:`~evsnn.SpikingModel` as torch tensors on one device, and its step function.

    Parameters
    ----------
    model : SpikingModel
    dtype : numpy dtype (float32 or float64)
    device : torch.device
    """

    def __init__(self, model: SpikingModel, *, dtype: np.dtype, device: torch.device):
        self.model, self.device, self.dtype = model, device, np.dtype(dtype)
        self.torch_dtype = getattr(torch, self.dtype.name)
        self.params = [NeuronParams.from_population(p, self.dtype, engine="torch", dt=model.dt,
                                                    kinds=TORCH_KINDS).to_torch(device)
                       for p in model.populations]
        self.sizes = [p.size for p in model.populations]
        self.index = {p.name: i for i, p in enumerate(model.populations)}
        self.products = {pr.name: TorchOperator(pr.op, device=device, dtype=self.torch_dtype)
                         for pr in model.projections}
        self.bias = [None if p.bias is None else torch.as_tensor(np.array(p.bias.reshape(-1)), device=device).to(self.torch_dtype)
                     for p in model.populations]
        self.output_index = self.index[model.output]
        self.membrane = model.readout == "membrane"
        self.spiking = [not (self.membrane and i == self.output_index) for i in range(len(self.sizes))]
        rank = {INPUT: -1, **self.index}
        #: projections from the same or a later population (recurrent or backward edges): none in a feed-forward model
        self.backward = [pr.name for pr in model.projections if rank[pr.source] >= rank[pr.target]]
        order = {pr.name: k for k, pr in enumerate(model.projections)}
        # the spike input of each population, in the event engine's summation order (module docstring)
        self.incoming = [sorted((pr for pr in model.projections if pr.target == p.name),
                                key=lambda pr: (-pr.delay, rank[pr.source], order[pr.name]))
                         for p in model.populations]
        self.sources = [INPUT, *self.index]
        self.source_index = {name: k for k, name in enumerate(self.sources)}
        self.history = {name: max((pr.delay for pr in model.projections if pr.source == name), default=0)
                        for name in self.sources}

    def initial_state(self, batch: int) -> NetworkState:
        """Every population at its initial potential, no spikes in the past."""
        return NetworkState(neurons=tuple(initial_state(p, batch, n, None) for p, n in zip(self.params, self.sizes)),
                            past=tuple(() for _ in self.sources))

    def analog_input(self, x: torch.Tensor) -> list[list[tuple[int, torch.Tensor]]]:
        """Per population, ``(delay, current)`` of each analog input projection (the ``current`` encoding):
        ``x`` (batch, n_inputs) through the projection, added at every step from ``delay`` on."""
        analog: list[list[tuple[int, torch.Tensor]]] = [[] for _ in self.sizes]
        for pr in self.model.projections:
            if pr.source == INPUT:
                analog[self.index[pr.target]].append((pr.delay, self.products[pr.name](x)))
        return analog

    def step(self, state: NetworkState, t: int, input_spikes: torch.Tensor | None = None,
             analog: list[list[tuple[int, torch.Tensor]]] | None = None,
             spike_fn: Callable | None = None) -> tuple[NetworkState, list[torch.Tensor]]:
        """Advance every population by one step (a pure function: ``state`` is not modified).

        Parameters
        ----------
        state : NetworkState
        t : int
            The step (analog input reaches a population from step ``delay`` on).
        input_spikes : tensor (batch, n_inputs) of the network's dtype, optional
            The input's spikes at ``t`` (spike encodings).
        analog : list, optional
            :meth:`analog_input` (the ``current`` encoding).
        spike_fn : callable, optional
            ``spike_fn(v, params)``: spikes with a surrogate gradient (training); default the threshold test.

        Returns
        -------
        state : NetworkState
        emitted : list of tensors (batch, n)
            Per population, its spikes at ``t`` (0 and 1 in the network's dtype, or ``spike_fn``'s); the
            membrane read-out: its potential.
        """
        now: dict[str, torch.Tensor | None] = {INPUT: input_spikes}

        def spikes_at(source: str, step: int) -> torch.Tensor | None:
            if step == t:
                return now.get(source)
            past = state.past[self.source_index[source]]
            return past[t - step - 1] if t - step <= len(past) else None

        neurons, emitted = [], []
        for i in range(len(self.params)):
            new, out = self.population_step(i, state.neurons[i], t, self.spike_input(i, t, spikes_at), analog,
                                            spike_fn)
            if self.spiking[i]:
                now[self.model.populations[i].name] = out
            neurons.append(new)
            emitted.append(out)
        past = tuple(((now[name],) + state.past[k])[:self.history[name]] if now.get(name) is not None else ()
                     for k, name in enumerate(self.sources))
        return NetworkState(neurons=tuple(neurons), past=past), emitted

    def spike_input(self, i: int, t: int, spikes_at: Callable) -> torch.Tensor | None:
        """The spike input of population ``i`` due at step ``t``, summed in the event engine's order (module
        docstring); ``spikes_at(source, step)``: the source's spikes at that step (None before the run or
        without any). None where nothing arrives."""
        current = None
        for pr in self.incoming[i]:
            s = spikes_at(pr.source, t - pr.delay) if t >= pr.delay else None
            if s is not None:  # None: before the run, or an analog input
                c = self.products[pr.name](s)
                current = c if current is None else current + c
        return current

    def population_step(self, i: int, state: NeuronState, t: int, current: torch.Tensor | None,
                        analog: list[list[tuple[int, torch.Tensor]]] | None = None,
                        spike_fn: Callable | None = None) -> tuple[NeuronState, torch.Tensor]:
        """Population ``i`` at step ``t``, given its spike input ``current`` (:meth:`spike_input`; None for
        none): the analog input and the bias added, then integrated, thresholded and reset. Returns the new
        state and the spikes (the membrane read-out: its potential)."""
        p = self.params[i]
        batch = state.v.shape[0]
        if current is None:
            current = torch.zeros((batch, self.sizes[i]), dtype=self.torch_dtype, device=self.device)
        # the discrete form adds analog input and bias to the spikes; the ODE form holds them over the step
        held = None
        for delay, a in (analog[i] if analog else ()):
            if t >= delay:
                if p.ode:
                    held = a if held is None else held + a
                else:
                    current = current + a
        if self.bias[i] is not None:
            if p.ode:
                held = self.bias[i].expand(batch, -1) if held is None else held + self.bias[i]
            else:
                current = current + self.bias[i]
        if not self.spiking[i]:
            new = integrate(state, current, p, held)
            return new, new.v
        spiked, new = neuron_step(state, current, p, held, spike_fn)
        return new, spiked if spike_fn is not None else spiked.to(self.torch_dtype)

    def run_layerwise(self, steps: int, batch: int, input_spikes: torch.Tensor | None = None,
                      analog: list[list[tuple[int, torch.Tensor]]] | None = None, spike_fn: Callable | None = None,
                      input_scale: Callable | None = None, normalize: Callable | None = None
                      ) -> dict[str, torch.Tensor]:
        """The run of :meth:`step` over ``steps`` steps, one population at a time, for a feed-forward model.

        Each projection's product is taken once over all steps (a batch of ``steps * batch`` rows), then the
        population's steps run as in :meth:`step`: what training needs for speed, and what a normalization
        whose statistics cover a layer's whole run (training's PSP normalization) needs. Projections that hold
        one operator object (shared weights) and read the same source, delay and factor share one product.
        The hooks:
        ``input_scale(projection, train)``: a factor the source's spikes ``train`` (steps, batch, n_in) are
        multiplied by before the product (None: none); ``normalize(i, current)``: the summed spike input of
        population ``i`` (steps, batch, n) transformed before the analog input and bias are added.
        ``input_spikes``: the input's spikes (steps, batch, n_inputs). Returns every population's emitted
        spikes (or potentials) as (steps, batch, n), by name.
        """
        if self.backward:
            raise EngineError(f"TimestepNetwork.run_layerwise: the model must be feed-forward, but projection(s) "
                              f"{', '.join(map(repr, self.backward))} come from the same or a later population.")
        trains: dict[str, torch.Tensor | None] = {INPUT: input_spikes}  # the spikes each projection reads
        emitted_by: dict[str, torch.Tensor] = {}
        products: dict[tuple, torch.Tensor] = {}  # one per operator, weight tensor, source, delay and factor
        for i, pop in enumerate(self.model.populations):
            current = None
            for pr in self.incoming[i]:
                train = trains[pr.source]
                if train is None or pr.delay >= steps:
                    continue
                if pr.delay:  # the spikes of step t - delay, none before the run
                    train = torch.cat([train.new_zeros((pr.delay, *train.shape[1:])), train[:steps - pr.delay]])
                factor = input_scale(pr, train) if input_scale is not None else None
                key = (id(pr.op), id(self.products[pr.name].weights), pr.source, pr.delay,
                       None if factor is None else id(factor))
                if key not in products:
                    scaled = train if factor is None else train * factor
                    products[key] = self.products[pr.name](scaled.reshape(steps * batch, -1)).reshape(steps, batch, -1)
                c = products[key]
                current = c if current is None else current + c
            if current is not None and normalize is not None:
                current = normalize(i, current)
            state, out = initial_state(self.params[i], batch, self.sizes[i], None), []
            for t in range(steps):
                state, spikes = self.population_step(i, state, t, None if current is None else current[t],
                                                     analog, spike_fn)
                out.append(spikes)
            emitted_by[pop.name] = torch.stack(out)
            trains[pop.name] = emitted_by[pop.name] if self.spiking[i] else None
        return emitted_by


class TorchEngine(Engine):
    """Batched timestep simulation in PyTorch (registered as ``"torch"``).

    Parameters
    ----------
    model : SpikingModel
    dtype : {"float32", "float64"}, default="float32"
    device : str or torch.device, default="cpu"
        Where the run's tensors live (``"cuda"``, ``"cuda:1"``, ...); results come back as numpy arrays.
    """

    name = "torch"

    def __init__(self, model: SpikingModel, *, dtype: str = "float32", device: object = "cpu"):
        super().__init__(model, dtype=dtype)
        self.device = check_device(device)
        self.check_tables()
        self.network = TimestepNetwork(model, dtype=self.dtype, device=self.device)
        # per spike source: its outgoing projections and their fan-outs (synapses, connections) as rows, in the
        # engine's dtype where every sum of them is an integer it holds exactly (below 2**24 in float32), else float64
        self.counted = {}
        for name in self.network.sources:
            projections = [pr for pr in model.projections if pr.source == name]
            if projections:
                rows = np.stack([c for pr in projections for c in pr.op.fan_out()])
                exact = self.network.torch_dtype if rows.sum(axis=1).max() < 2 ** 24 else torch.float64
                self.counted[name] = ([pr.name for pr in projections],
                                      torch.as_tensor(rows, device=self.device).to(exact))

    @property
    def settings(self) -> dict:
        return {**super().settings, "device": str(self.device)}

    def table_bytes(self) -> int:
        size = self.dtype.itemsize
        total = 0
        for pr in self.model.projections:
            op = pr.op
            total += 16 * op.n_in  # fan-outs
            if isinstance(op, (Dense, Conv2d)):
                total += op.weight.size * size
            else:
                total += op.data.size * (size + 8) + (op.n_out + 1) * 8
        return total

    def batch_bytes(self, batch: int, steps: int, spiking: bool) -> int:
        size = self.dtype.itemsize
        n_in = self.model.input.size
        total = steps * batch * n_in * (1 + size) if spiking else 2 * batch * n_in * size  # input
        for p, history in zip(self.model.populations, list(self.network.history.values())[1:]):
            # state (two arrays), spikes, the step's products and sums, the spikes kept for delays
            total += batch * p.size * size * (6 + history)
        return total

    def run_batch(self, encoded: EncodedInput, start: int, stop: int, record: frozenset[str]) -> BatchOutput:
        net, model = self.network, self.model
        batch, steps = stop - start, encoded.steps
        out = BatchOutput.empty(model, encoded, batch, record)
        names = [p.name for p in model.populations]
        device, dtype = self.device, net.torch_dtype
        with torch.inference_mode():
            analog, raster = None, None
            if encoded.is_spiking:
                raster = torch.as_tensor(encoded.raster(start, stop, threads=self.threads), device=device)
            else:
                x = encoded.current(start, stop)
                analog = net.analog_input(torch.as_tensor(x, device=device).to(dtype))
                for pr in model.projections:
                    if pr.source == INPUT:
                        out.input_macs[pr.name][:] = pr.op.input_macs(x)[:, None]
            counts = torch.zeros((len(names), steps, batch), dtype=torch.int64, device=device)
            sops = {name: torch.zeros((steps, 2 * len(prs), batch), dtype=fan.dtype, device=device)
                    for name, (prs, fan) in self.counted.items() if name != INPUT or raster is not None}
            spiking = net.spiking
            output = torch.zeros((steps, *out.output.shape[::2]), dtype=torch.float64 if net.membrane
                                 else torch.int64, device=device)
            events: dict[str, list] = {name: [] for name in record}
            state = net.initial_state(batch)
            for t in range(steps):
                spikes_in = None if raster is None else raster[t].to(dtype)
                state, emitted = net.step(state, t, spikes_in, analog)
                sources = {INPUT: spikes_in, **dict(zip(names, emitted))}
                for name, rec in sops.items():
                    if name == INPUT or spiking[net.index[name]]:
                        fan = self.counted[name][1]
                        torch.mm(fan, sources[name].to(fan.dtype).T, out=rec[t])  # (2 k, batch): fast in BLAS
                for i, (name, e) in enumerate(zip(names, emitted)):
                    if i == net.output_index:
                        output[t] = e
                    if spiking[i]:
                        counts[i, t] = e.sum(dim=1)
                        if name in events:
                            b, n = torch.nonzero(e, as_tuple=True)
                            events[name].append((b, t, n))
        counts = counts.cpu().numpy()
        for i, name in enumerate(names):
            out.spike_counts[name][:] = counts[i].T
        for name, rec in sops.items():
            rec = rec.cpu().numpy().astype(np.int64)  # integers, exact
            for k, pr in enumerate(self.counted[name][0]):
                out.sops[pr][:] = rec[:, 2 * k].T
                out.sops_nominal[pr][:] = rec[:, 2 * k + 1].T
        out.output[:] = output.cpu().numpy().transpose(1, 0, 2)
        for name, steps_events in events.items():
            for b, t, n in steps_events:
                b, n = b.cpu().numpy(), n.cpu().numpy()
                out.rasters[name].append((b + start, np.full(b.size, t), n))
        return out


def check_device(device: object) -> torch.device:
    """``device`` as a torch.device that this machine has, or an EngineError that says what is available."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise EngineError(f"Engine 'torch': device must be a torch device such as 'cpu' or 'cuda', got "
                          f"{device!r} ({err}).") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"Engine 'torch': device {str(dev)!r} was asked for, but torch finds no CUDA device on "
                          f"this machine. Pass device='cpu'.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise EngineError(f"Engine 'torch': device {str(dev)!r} does not exist; this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s).")
    if dev.type not in ("cpu", "cuda"):
        raise EngineError(f"Engine 'torch': device must be 'cpu' or 'cuda', got {str(dev)!r}.")
    return dev


register_engine("torch", TorchEngine)
