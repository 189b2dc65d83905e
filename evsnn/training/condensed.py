"""Seed 004's network over condensed dilated windows, trained directly at minimum latency (2-6 steps).

Seed 004's supplementary text specifies the recomposition (Algorithm 1:
four dilated windows of size ``3L/4``, weighted condense, median spikes,
region threshold ``Th_R = 0.1``; :mod:`evsnn.training.condense`) and
nothing of the layers around it. The layers here are evsnn's choices, kept
small enough to train on one CPU thread in minutes::

    image 1x28x28, analog current at every step
      -> the four dilated windows, 1x21x21 each
      -> one 12c5 convolution (padding 2, weights shared by the windows) into IF neurons: 4 x 12x21x21
      -> weighted condense into 12x28x28 (median spikes 0.25/0.5/0.75 in the overlaps), region threshold Th_R
      -> the rest of Diehl et al.'s CNN: a2-64c5-a2-10, IF neurons, the output's spike count as logits

IF neurons (threshold 1, reset by subtraction), no biases, torch's default
initialisation seeded by ``seed``: as ``examples/min_latency.py``'s directly
trained CNN, which differs by the windows and by its sizes (its unpadded
first convolution gives 24x24 maps, so 64x8x8 neurons and a 1,024-input
read-out where this head has 64x10x10 and 1,600).

Both spiking stages are :class:`~evsnn.SpikingModel`\\ s run by
:class:`~evsnn.training.SpikingNetwork`, that is by the torch engine's own
step function (``run_layerwise`` -> ``population_step`` -> ``neuron_step``):
the windows are one batch of ``4N`` images through the window model (one
weight tensor for the four), and the head takes the recomposed map, spikes
and graded values, as its input events. The region threshold passes the
gradient straight through; spikes have the surrogate's.

Graded events: a recomposed value other than 0 and 1 (a median spike at or
below ``Th_R``) reaches the head's synapses as a value, which costs a
multiply per synapse where a spike costs an add. With the seed's
``Th_R = 0.1`` every median spike (0.25 at least) becomes a spike and there
are none; ``Th_R >= 0.25`` keeps some. :meth:`CondensedNetwork.energy_report`
counts both exactly, per synapse, with the one SOP rule
(:func:`evsnn.energy.event_ops`). :meth:`CondensedNetwork.to_model` exports
the network exactly to the IR when no graded event can occur and refuses
otherwise.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..converters import convert
from ..display import describe_op
from ..energy import OpSeries, event_ops, report_from_ops
from ..errors import ConversionError
from ..model import InputSpec, NeuronSpec, Population, Projection, SpikingModel
from ..ops import Sparse
from .ann import train_classifier
from .condense import dilated_windows, region_threshold, weighted_condense
from .snn import SpikingNetwork
from .surrogate import Surrogate

__all__ = ["CondensedNetwork", "train_condensed"]

SIZE, WINDOW = 28, 21  # the image and its dilated windows (3L/4)
SMALLEST_MEDIAN_SPIKE = 0.25  # the centre's, where four windows overlap


class CondensedNetwork(nn.Module):
    """Seed 004's condensed dilated windows in a small MNIST classifier (module docstring), run for ``steps``.

    Parameters
    ----------
    steps : int
        Time steps per sample (seed 004: 2 to 6).
    region_threshold : float, default=0.1
        ``Th_R``: recomposed values above it become spikes, the rest stay graded (seed 004: 0.1).
    channels, features : int
        Of the window convolution (12) and of the head's convolution (64).
    spike_fn : str or Surrogate, default="arctan"
    seed : int
        Seeds the initial weights.
    dtype : {"float32", "float64"}
    """

    def __init__(self, *, steps: int, region_threshold: float = 0.1, channels: int = 12, features: int = 64,
                 spike_fn: str | Surrogate = "arctan", seed: int = 0, dtype: str = "float32"):
        super().__init__()
        if not (isinstance(region_threshold, (int, float)) and 0 < region_threshold <= 1):
            raise ValueError(f"CondensedNetwork: region_threshold must be in (0, 1] (recomposed values lie in [0, 1]), "
                             f"got {region_threshold!r}.")
        self.steps, self.region_threshold, self.seed = steps, float(region_threshold), seed
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            window = nn.Sequential(nn.Conv2d(1, channels, 5, padding=2, bias=False), nn.ReLU())
            head = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(channels, features, 5, bias=False), nn.ReLU(),
                                 nn.AvgPool2d(2), nn.Flatten(), nn.Linear(features * 5 * 5, 10, bias=False))
        neuron = NeuronSpec("if")
        windows = convert(window, input_shape=(1, WINDOW, WINDOW), norm="none",
                          input_encoding="current").with_neuron(neuron)
        head = convert(head, input_shape=(channels, SIZE, SIZE), norm="none",
                       input_encoding="regular").with_neuron(neuron)
        self.windows = SpikingNetwork(windows, steps=steps, spike_fn=spike_fn, seed=seed, dtype=dtype)
        self.head = SpikingNetwork(head, steps=steps, spike_fn=spike_fn, seed=seed, dtype=dtype)

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The windows' spikes (steps, 4, N, C, 21, 21), the recomposed events (steps, N, C*28*28) and the
        head's outputs by population (steps, N, n) of images ``x`` (N, 1, 28, 28)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, SIZE, SIZE):
            raise ValueError(f"CondensedNetwork: x must be images (N, 1, {SIZE}, {SIZE}), got {tuple(x.shape)}.")
        n = x.shape[0]
        spikes = self.windows.run(torch.cat(dilated_windows(x), dim=0))[self.windows.model.output]
        spikes = spikes.reshape(self.steps, 4, n, *self.windows.model.population(self.windows.model.output).shape)
        events = region_threshold(weighted_condense(*spikes.unbind(1)), self.region_threshold)
        events = events.reshape(self.steps, n, -1)
        return spikes, events, self.head.run(events=events)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of images ``x`` (N, 1, 28, 28): the output's spike counts."""
        return self.run(x)[2][self.head.model.output].sum(dim=0)

    def energy_report(self, x: np.ndarray, labels: np.ndarray | None = None, *, preset: str = "cmos45-fp32",
                      batch_size: int = 100, source: str = "condensed-window network"):
        """Run the network on images ``x`` (N, 1, 28, 28) without gradients and count every operation exactly,
        per sample and step, into an :class:`~evsnn.energy.EnergyReport` priced by ``preset``.

        Items are named as in :meth:`to_model`'s IR model: ``windows`` (the analog image's input MACs into the
        four windows' convolution, every step; the windows' IF updates), ``condense`` (a window spike accumulates
        into one neuron of the recomposed map, with weight 1, 1/2 or 1/4: one SOP), ``condensed`` (the region
        threshold: one threshold update per recomposed neuron and step), then the head's projections, where a
        spike costs its synapses as SOPs and a graded event its synapses as graded MACs
        (:func:`evsnn.energy.event_ops`), and populations.
        """
        x = np.asarray(x, dtype=self.head.network.dtype)
        windows_model, head_model = self.windows.to_model(), self.head.to_model()
        window_op = windows_model.projections[0].op
        window_pop = windows_model.population(windows_model.output)
        channels = window_pop.shape[0]
        counts: dict[tuple[str, str], list[np.ndarray]] = {}
        spikes_total: dict[str, float] = {}
        correct = []

        def add(item: str, op: str, per_sample_step: np.ndarray) -> None:
            counts.setdefault((item, op), []).append(np.asarray(per_sample_step, dtype=np.int64))

        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                for lo in range(0, len(x), batch_size):
                    xb = torch.as_tensor(x[lo:lo + batch_size])
                    n = xb.shape[0]
                    spikes, events, head = self.run(xb)
                    macs = sum(window_op.input_macs(w.reshape(n, -1).numpy()) for w in dilated_windows(xb))
                    add("windows", "input_mac", np.repeat(macs[:, None], self.steps, axis=1))
                    window_spikes = spikes.sum(dim=(1, 3, 4, 5)).T.numpy()  # (N, steps)
                    add("condense", "sop", window_spikes)
                    recomposed = events.transpose(0, 1).numpy()  # (N, steps, C*28*28)
                    trains = {"input": recomposed, **{k: v.transpose(0, 1).numpy() for k, v in head.items()}}
                    for pr in head_model.projections:
                        sops, graded = event_ops(trains[pr.source], pr.op)
                        add(pr.name, "sop", sops)
                        add(pr.name, "graded_mac", graded)
                    for name, total in (("windows", window_spikes.sum()), ("condensed", (recomposed == 1).sum()),
                                        ("condensed (graded)", ((recomposed != 0) & (recomposed != 1)).sum()),
                                        *((k, v.sum().item()) for k, v in head.items())):
                        spikes_total[name] = spikes_total.get(name, 0.0) + float(total)
                    out = head[head_model.output].cumsum(dim=0).argmax(dim=2).T.numpy()  # (N, steps), ties: lowest
                    if labels is not None:
                        correct.append(out == np.asarray(labels[lo:lo + n])[:, None])
        finally:
            self.train(was_training)
        n, steps = len(x), self.steps
        sizes = {"windows": 4 * window_pop.size, "condensed": channels * SIZE * SIZE,
                 **{p.name: p.size for p in head_model.populations}}
        details = {"windows": f"input → windows, 4 dilated windows x {describe_op(window_op)}",
                   "condense": "windows → condensed, weighted condense (Algorithm 1), 1 synapse per window neuron",
                   **{pr.name: f"{'condensed' if pr.source == 'input' else pr.source} → {pr.target}, "
                               f"{describe_op(pr.op)}" for pr in head_model.projections}}
        snn = []
        for (item, op), parts in counts.items():
            a = np.concatenate(parts)
            snn.append(OpSeries(item, "projection", op, details[item], a.sum(axis=1), a.mean(axis=0)))
        for name, size in sizes.items():
            op, what = ("update_threshold", f"threshold > {self.region_threshold:g}") if name == "condensed" else (
                "update_if", "if")
            snn.append(OpSeries(name, "population", op, f"{what}, {size:,} neurons",
                                np.full(n, size * steps, dtype=np.int64), np.full(steps, float(size))))
        rates = {name: total / (n * steps * sizes[name.split(" ")[0]]) for name, total in spikes_total.items()}
        curve = None if labels is None else np.concatenate(correct).mean(axis=0)
        settings = {"engine": "torch (CondensedNetwork: the torch engine's step function)", "steps": steps,
                    "dt": head_model.dt, "encoding": "current", "scale": 1.0, "seed": self.seed,
                    "dtype": self.head.network.dtype.name, "batch_size": batch_size,
                    "region_threshold": self.region_threshold}
        policy = {
            "SOPs": "one accumulate per spike (an event of value 1) per non-zero-weight synapse, exact per "
                    "projection and step (conv borders included); a window spike is one accumulate into the "
                    "recomposed map",
            "graded events": "one multiply-accumulate per graded event (a recomposed value other than 0 and 1) "
                             "per non-zero-weight synapse, exact per projection and step",
            "analog input": "MACs = non-zero pixels of each window x their non-zero-weight synapses, every step",
            "neuron updates": "every neuron every step (IF: 1 add); the region threshold: 1 comparison (threshold "
                              "update) per recomposed neuron per step",
            "not counted": "threshold comparisons of spiking neurons, resets, spike routing, memory access; no x2 "
                           "FLOP factor",
            "statistics": f"mean ± std (population, ddof=0) over the {n} samples",
        }
        return report_from_ops(snn, settings=settings, policy=policy, preset=preset, accuracy_curve=curve,
                               spikes_per_neuron_per_step=rates, source=source)

    def to_model(self) -> SpikingModel:
        """The trained network as an IR model, exactly, when every recomposed event is a spike.

        With ``region_threshold < 0.25`` (the seed's 0.1) every non-zero recomposed value fires, so the network
        is: ``windows`` (the four windows' neurons, 4*C x 21 x 21, fed by one sparse projection of the image: each
        window's crop and convolution), ``condensed`` (stateless threshold units, ``v > Th_R``, fed by the weighted
        condense as a sparse projection of weights 1, 1/2, 1/4), and the head. It runs unchanged on every engine.

        Raises :class:`~evsnn.ConversionError` when ``region_threshold >= 0.25``: median spikes at or below it
        stay graded values, which the IR's spikes cannot carry.
        """
        if self.region_threshold >= SMALLEST_MEDIAN_SPIKE:
            raise ConversionError(
                f"CondensedNetwork.to_model: with region_threshold={self.region_threshold:g} median spikes of "
                f"{SMALLEST_MEDIAN_SPIKE:g} up to it stay graded events (non-binary values, the division of the "
                f"weighted condense), which the IR's binary spikes cannot carry, so the network has no exact IR "
                f"model. Evaluate it with the network itself (forward, energy_report), or train it with a "
                f"region_threshold below {SMALLEST_MEDIAN_SPIKE:g} (seed 004's 0.1), which makes every median "
                f"spike a spike and exports exactly.")
        windows_model, head_model = self.windows.to_model(), self.head.to_model()
        conv = windows_model.projections[0].op
        pop = windows_model.population(windows_model.output)
        channels, dtype = pop.shape[0], conv.weight.dtype
        kernel = conv.to_csr()  # (C*21*21, 21*21): one window's convolution
        lo = SIZE - WINDOW
        ys, xs = np.divmod(np.arange(WINDOW * WINDOW), WINDOW)
        crops = [sp.csr_array((kernel.data, ((ys + oy) * SIZE + xs + ox)[kernel.indices], kernel.indptr),
                              shape=(kernel.shape[0], SIZE * SIZE)) for oy, ox in ((0, 0), (0, lo), (lo, 0), (lo, lo))]
        basis = torch.eye(WINDOW * WINDOW, dtype=torch.float64).reshape(-1, WINDOW, WINDOW)
        zero = torch.zeros_like(basis)
        condense = [sp.kron(sp.eye(channels), sp.csr_array(
            weighted_condense(*(basis if k == w else zero for k in range(4))).reshape(len(basis), -1).T.numpy()))
            for w in range(4)]  # per window: (C*28*28, C*21*21), weights 1, 1/2, 1/4
        head_pops = list(head_model.populations)
        projections = [
            Projection("windows", "input", "windows", Sparse.from_matrix(sp.vstack(crops, format="csr").astype(dtype))),
            Projection("condense", "windows", "condensed",
                       Sparse.from_matrix(sp.hstack(condense, format="csr").astype(dtype))),
            *(Projection(pr.name, "condensed" if pr.source == "input" else pr.source, pr.target, pr.op, pr.delay)
              for pr in head_model.projections)]
        populations = [Population("windows", (4 * channels, WINDOW, WINDOW), pop.neuron),
                       Population("condensed", (channels, SIZE, SIZE),
                                  NeuronSpec("threshold", threshold=self.region_threshold, strict_threshold=True)),
                       *head_pops]
        return SpikingModel(InputSpec((1, SIZE, SIZE), encoding="current"), populations, projections,
                            output=head_model.output, readout="count", dt=head_model.dt,
                            provenance={"source": "evsnn.training.CondensedNetwork (seed 004's weighted condense)",
                                        "training": {**head_model.provenance.get("training", {}),
                                                     "region_threshold": self.region_threshold}})


def train_condensed(x: np.ndarray, y: np.ndarray, *, steps: int, region_threshold: float = 0.1,
                    spike_fn: str | Surrogate = "arctan", epochs: int = 6, batch_size: int = 32, lr: float = 5e-3,
                    seed: int = 0, progress: bool = False,
                    checkpoint: str | None = None) -> tuple[CondensedNetwork, list[float]]:
    """A :class:`CondensedNetwork` trained on images ``x`` (N, 1, 28, 28) and labels ``y`` by BPTT with a
    surrogate gradient: :func:`~evsnn.training.train_classifier`'s loop (AdamW, warm-up and cosine decay, no
    shifts), seeded by ``seed``, resumable from ``checkpoint``. Returns the network (eval mode) and the mean loss
    per epoch."""
    net = CondensedNetwork(steps=steps, region_threshold=region_threshold, spike_fn=spike_fn, seed=seed)
    losses = train_classifier(net, x, y, epochs=epochs, batch_size=batch_size, lr=lr, max_shift=0, seed=seed,
                              progress=progress, checkpoint=checkpoint)
    return net, losses
