"""Direct training of spiking networks: backpropagation through time with surrogate gradients.

:class:`SpikingNetwork` makes a :class:`~evsnn.SpikingModel` trainable: the
weights of its dense and convolutional projections and its biases become
``torch.nn.Parameter``\\ s of the torch engine's own
:class:`~evsnn.engines.timestep.TimestepNetwork`, whose step function runs
under autograd with a surrogate spike function
(:mod:`evsnn.training.surrogate`). There is no second copy of the dynamics:
the forward pass of training is the torch engine's, and
:meth:`SpikingNetwork.to_model` writes the trained weights back into the IR,
which then runs unchanged on the event engine, the torch engine and Brian2.

The input is encoded by :func:`evsnn.encode` (the model's encoding: analog
``current``, or Poisson spikes drawn from a generator seeded by ``seed``).
The logits are the output population's spike counts over the run (``count``
read-out) or its potential at the last step (``membrane`` read-out): what
the engines' predictions are the argmax of. Sparse projections are kept
fixed.

A feed-forward network runs one population at a time
(:meth:`~evsnn.engines.timestep.TimestepNetwork.run_layerwise`: each
product over all steps at once, the same spikes as step by step), which is
also what the normalizations of :mod:`evsnn.training.normalization` need: a
normalized network (``norm=``) must be feed-forward. They apply to the
input of every population but the output (seed 003's networks end in an
unnormalized classifier, "...-10"), from spiking sources only (the first
layer of an analog-input network is not normalized).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..encoding import encode
from ..engines.neurons import NeuronState, integrate
from ..engines.timestep import TimestepNetwork, check_device
from ..errors import ConversionError
from ..model import INPUT, SpikingModel
from ..ops import Conv2d, Dense
from .ann import train_classifier
from .normalization import INPUT_NORMS, NORMS, PSPNorm, channels_of, input_norm
from .surrogate import Surrogate, surrogate as make_surrogate

__all__ = ["SpikingNetwork", "train_snn"]


class SpikingNetwork(nn.Module):
    """A :class:`~evsnn.SpikingModel` with trainable weights and biases, run for ``steps`` steps per sample.

    Parameters
    ----------
    model : SpikingModel
        The architecture and the initial weights (e.g. ``evsnn.convert(ann, norm="none")`` with SRM neurons
        from :meth:`~evsnn.SpikingModel.with_neuron`).
    steps : int
        Simulation steps per sample.
    spike_fn : str or Surrogate, default="slayer"
        The surrogate spike function (:func:`evsnn.training.surrogate.surrogate`).
    encoding : str, optional
        ``current``, ``poisson`` or ``regular``; default the model's.
    seed : int
        Seeds the Poisson input drawn for each batch.
    dtype, device
        Of the parameters and the run.
    norm : {None, "psp-bn", "psp-ln", "bn", "tdbn", "bntt"}
        Seed 003's PSP-BN or PSP-LN, or BN, tdBN or BNTT of the membrane input
        (:mod:`evsnn.training.normalization`).
    norm_lambda : float, default=1e-3
        PSP normalization's λ (eq. 19; the issue's default; seed 003's experiments use 0.1).
    norm_alpha : float, default=1.0
        tdBN's α: its γ starts at α θ (θ: the population's threshold; the paper's 1/√2 before a residual sum).
    momentum : float, default=0.1
        Of the running statistics (PSP-BN, BN, tdBN, BNTT).
    fixed : sequence of str
        Projections whose weights are not trained (e.g. the identities of
        :func:`~evsnn.training.networks.residual_cnn`'s post-activation blocks). Projections that hold one
        operator object share one trained weight.
    train_thresholds : bool
        Train each spiking population's threshold (its initial potential, a fraction of it, and SRM's reset
        jump follow it).
    """

    def __init__(self, model: SpikingModel, *, steps: int, spike_fn: str | Surrogate = "slayer",
                 encoding: str | None = None, seed: int = 0, dtype: str = "float32", device: object = "cpu",
                 norm: str | None = None, norm_lambda: float = 1e-3, norm_alpha: float = 1.0, momentum: float = 0.1,
                 fixed: Sequence[str] = (), train_thresholds: bool = False):
        super().__init__()
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"SpikingNetwork: steps must be a positive integer, got {steps!r}.")
        if norm not in (None, *NORMS):
            raise ValueError(f"SpikingNetwork: norm must be None or one of {', '.join(map(repr, NORMS))}, "
                             f"got {norm!r}.")
        self.model, self.steps, self.seed = model, steps, seed
        self.encoding = encoding or model.input.encoding
        self.spike_fn = make_surrogate(spike_fn)
        self.network = TimestepNetwork(model, dtype=np.dtype(dtype), device=check_device(device))
        self.layerwise = not self.network.backward
        self.norm, self.norm_lambda, self.norm_alpha, self.momentum = norm, norm_lambda, norm_alpha, momentum
        self.psp_norms, self.input_norms = self._normalizations()
        unknown = sorted(set(fixed) - {pr.name for pr in model.projections})
        if unknown:
            raise ValueError(f"SpikingNetwork: fixed names no projection of the model: "
                             f"{', '.join(map(repr, unknown))}.")
        self.fixed = tuple(fixed)
        self.weights = nn.ParameterList()
        shared: dict[int, nn.Parameter] = {}  # projections with one operator object share one parameter
        for pr in model.projections:
            product = self.network.products[pr.name]
            attribute = "weight_t" if isinstance(pr.op, Dense) else "weight" if isinstance(pr.op, Conv2d) else None
            if attribute is None or pr.name in self.fixed:
                continue
            if id(pr.op) not in shared:
                shared[id(pr.op)] = nn.Parameter(getattr(product, attribute))
                self.weights.append(shared[id(pr.op)])
            setattr(product, attribute, shared[id(pr.op)])
        self.biases = nn.ParameterList()
        for i, bias in enumerate(self.network.bias):
            if bias is not None:
                self.network.bias[i] = nn.Parameter(bias)
                self.biases.append(self.network.bias[i])
        self.thresholds = nn.ParameterDict()
        if train_thresholds:
            self._base_params = list(self.network.params)
            for i, pop in enumerate(model.populations):
                if not self.network.spiking[i]:
                    continue
                if pop.neuron.kind not in ("if", "lif", "srm") or pop.neuron.ode:
                    raise ValueError(f"SpikingNetwork: train_thresholds needs discrete neurons (IF, LIF, SRM); "
                                     f"population {pop.name!r} has {pop.neuron.kind!r}.")
                self.thresholds[pop.name] = nn.Parameter(self.network.params[i].threshold.clone())
        self._rng = np.random.default_rng(seed)
        self.rates: dict[str, float] = {}

    def _use_thresholds(self) -> None:
        """The trained thresholds into the network's parameters, with what derives from them (the initial
        potential; SRM's reset jump), so that the step function and the surrogate see them."""
        for name, theta in self.thresholds.items():
            i = self.network.index[name]
            spec = self.model.populations[i].neuron
            changes = {"threshold": theta, "v_init": theta * spec.v_init_fraction}
            if spec.kind == "srm":
                changes["refractory_jump"] = theta * spec.refractory_amplitude
            self.network.params[i] = dataclasses.replace(self._base_params[i], **changes)

    def get_extra_state(self) -> dict:
        """The input encoder's random state, so that a checkpoint resumes with the same Poisson draws."""
        return {"input_rng": self._rng.bit_generator.state}

    def set_extra_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state["input_rng"]

    def _normalizations(self) -> tuple[nn.ModuleDict, nn.ModuleDict]:
        """The PSP normalization of each normalized projection and the BN of each normalized population (by
        name; module docstring: which are normalized)."""
        psp, bn = nn.ModuleDict(), nn.ModuleDict()
        self.normalized: dict[str, list[str]] = {}  # per normalized population, its normalized projections
        self.psp_key: dict[str, str] = {}  # per projection, its PSP normalization in ``psp_norms``
        kernels: dict = {}
        if self.norm is None:
            return psp, bn
        model, net = self.model, self.network
        if not self.layerwise:
            raise ValueError(f"SpikingNetwork: norm={self.norm!r} needs a feed-forward model (its statistics "
                             f"cover a layer's whole run); this one has a recurrent or backward projection.")
        spiking_input = self.encoding != "current"
        for i, pop in enumerate(model.populations):
            if pop.name == model.output:
                continue
            incoming = [pr for pr in model.projections if pr.target == pop.name
                        and (pr.source != INPUT or spiking_input)]
            if not incoming:
                continue
            if net.params[i].ode:
                raise ValueError(f"SpikingNetwork: norm={self.norm!r} needs discrete neurons (IF, LIF, SRM); "
                                 f"population {pop.name!r} has the ODE-form neuron {pop.neuron.kind!r}.")
            for pr in incoming:
                if not isinstance(pr.op, (Dense, Conv2d)):
                    raise ValueError(f"SpikingNetwork: norm={self.norm!r} normalizes dense and convolutional "
                                     f"projections only; {pr.name!r} is {type(pr.op).__name__}.")
            self.normalized[pop.name] = [pr.name for pr in incoming]
            if self.norm in INPUT_NORMS:
                bn[pop.name] = input_norm(self.norm, pop, steps=self.steps, alpha=self.norm_alpha,
                                          momentum=self.momentum)
                continue
            for pr in incoming:  # one normalization per source, PSP kernel and delay (seed 003's Func layer)
                kernel = pop.neuron.tau_syn if pop.neuron.kind == "srm" else None
                key = self.psp_key.setdefault(pr.name, f"{pr.source}_k{kernels.setdefault(kernel, len(kernels))}"
                                                       + (f"_d{pr.delay}" if pr.delay else ""))
                if key not in psp:
                    shape = model.input.shape if pr.source == INPUT else model.population(pr.source).shape
                    psp[key] = PSPNorm(shape, over="batch" if self.norm == "psp-bn" else "layer",
                                       lam=self.norm_lambda, momentum=self.momentum)
        return psp, bn

    def _psp(self, train: torch.Tensor, target: str) -> torch.Tensor:
        """The postsynaptic potential the spikes ``train`` (steps, batch, n) raise in ``target``'s neurons: the
        SRM kernel's, by the neurons' own recursion (the refractory kernel left out); the spikes themselves for
        the kinds without a PSP kernel (IF, LIF: a delta synapse)."""
        p = self.network.params[self.network.index[target]]
        if p.kind != "srm":
            return train
        zero = torch.zeros_like(train[0])
        state, psp = NeuronState(v=zero, i=zero, psp=zero, refractory=zero), []
        for spikes in train:
            state = integrate(state, spikes, p)
            psp.append(state.psp)
        return torch.stack(psp)

    def _input_scale(self, projection, train: torch.Tensor) -> torch.Tensor | None:
        """The PSP normalization's factor on ``projection``'s input spikes, computed once per forward pass and
        normalization (its running statistics updated once)."""
        key = self.psp_key.get(projection.name)
        if key is None:
            return None
        if key not in self._factors:
            self._factors[key] = self.psp_norms[key](self._psp(train, projection.target))
        return self._factors[key]

    def _normalize(self, i: int, current: torch.Tensor) -> torch.Tensor:
        name = self.model.populations[i].name
        return self.input_norms[name](current) if name in self.input_norms else current

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor | None, list | None]:
        """A batch of images as the network's input: ``(raster, None)`` for spike encodings (steps, N, n_inputs,
        in the network's dtype) or ``(None, analog)`` (:meth:`~evsnn.engines.timestep.TimestepNetwork.analog_input`)
        for ``current``."""
        net = self.network
        n = x.shape[0]
        encoded = encode(self.model, x.detach().cpu().numpy(), steps=self.steps, encoding=self.encoding,
                         seed=int(self._rng.integers(2 ** 62)))
        if encoded.is_spiking:
            return torch.as_tensor(encoded.raster(0, n), device=net.device).to(net.torch_dtype), None
        return None, net.analog_input(torch.as_tensor(encoded.current(0, n), device=net.device).to(net.torch_dtype))

    def run(self, x: torch.Tensor | None = None, *, events: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every population's output (steps, N, n) by name, its spikes (the membrane read-out: its potential), of
        a feed-forward model, for images ``x`` (N, *input shape) or for input ``events`` (steps, N, n_inputs)
        given as they are: spikes, or graded values, which the products carry linearly (seed 004's median spikes,
        :class:`~evsnn.training.CondensedNetwork`)."""
        net = self.network
        if not self.layerwise:
            raise ValueError("SpikingNetwork.run: the model must be feed-forward; one with recurrent or backward "
                             "projections runs step by step in forward().")
        if (x is None) == (events is None):
            raise ValueError("SpikingNetwork.run: give images x or input events, not both or neither.")
        self._use_thresholds()
        if events is None:
            n = x.shape[0]
            raster, analog = self._encode(x)
        else:
            n = events.shape[1]
            if events.shape != (self.steps, n, self.model.input.size):
                raise ValueError(f"SpikingNetwork.run: events must have shape (steps, N, inputs) = ({self.steps}, "
                                 f"N, {self.model.input.size}), got {tuple(events.shape)}.")
            raster, analog = events.to(net.torch_dtype), None
        self._factors: dict[str, torch.Tensor] = {}
        emitted = net.run_layerwise(self.steps, n, raster, analog, self.spike_fn,
                                    self._input_scale if self.psp_norms else None,
                                    self._normalize if self.input_norms else None)
        with torch.no_grad():
            self.rates = {name: float(train.mean()) for (name, train), spiking in zip(emitted.items(), net.spiking)
                          if spiking}
        return emitted

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch ``x`` (N, *input shape): the output's spike counts, or its last potential."""
        net = self.network
        if self.layerwise:
            out = self.run(x)[self.model.output]
            return out[-1] if net.membrane else out.sum(dim=0)
        self._use_thresholds()
        raster, analog = self._encode(x)
        state, logits = net.initial_state(x.shape[0]), 0
        for t in range(self.steps):
            spikes = None if raster is None else raster[t]
            state, emitted = net.step(state, t, spikes, analog, spike_fn=self.spike_fn)
            logits = emitted[net.output_index] if net.membrane else logits + emitted[net.output_index]
        return logits

    def to_model(self, **provenance) -> SpikingModel:
        """The model with the trained weights and biases (in the network's dtype), PSP-BN's and (td)BN's inference
        statistics folded into them (seed 003 eq. 17); ``provenance`` is recorded under ``provenance["training"]``.

        Raises :class:`~evsnn.ConversionError` for PSP-LN, whose divisor depends on the whole sample (future steps
        included) and so has no causal equivalent in the IR, and for BNTT, whose gains change with the step while
        the IR's weights do not: evaluate such a network with :meth:`forward`."""
        if self.norm == "psp-ln":
            raise ConversionError("SpikingNetwork.to_model: PSP-LN divides each sample's PSP by a moment taken over "
                                  "its whole run, future steps included; no causal model computes that, so a PSP-LN "
                                  "network cannot be exported. Evaluate it with the network itself (its forward "
                                  "pass), or train with norm='psp-bn', whose inference statistics fold into the "
                                  "weights.")
        if self.norm == "bntt":
            raise ConversionError("SpikingNetwork.to_model: BNTT scales each population's input by a gain and "
                                  "statistics of each time step, and the IR's weights and biases are the same at "
                                  "every step, so a BNTT network cannot be exported. Evaluate it with the network "
                                  "itself (its forward pass), or train with norm='bn', 'tdbn' or 'psp-bn', whose "
                                  "inference statistics fold into the weights.")
        model = self.model
        dtype = self.network.dtype
        gains = {name: [g.numpy() for g in norm.fold()] for name, norm in self.input_norms.items()}
        projections = []
        for pr in model.projections:
            product = self.network.products[pr.name]
            if isinstance(pr.op, Dense):
                weight = product.weight_t.detach().cpu().numpy().T.copy()
            elif isinstance(pr.op, Conv2d):
                weight = product.weight.detach().cpu().numpy()
                if product.pooled:  # the folded kernel: each tap of the pooled one over its s x s block
                    (sh, sw) = pr.op.stride
                    weight = np.repeat(np.repeat(weight, sh, axis=2), sw, axis=3)
            else:
                projections.append(pr)
                continue
            if pr.name in self.psp_key:  # eq. 17: each input neuron's column by its divisor
                weight = _scale_axis(weight, self.psp_norms[self.psp_key[pr.name]].fold_factor().numpy(), axis=1)
            if pr.name in self.normalized.get(pr.target, ()) and pr.target in gains:  # BN: each output row
                weight = _scale_axis(weight, gains[pr.target][0], axis=0)
            op = Dense(weight.astype(dtype)) if isinstance(pr.op, Dense) else dataclasses.replace(
                pr.op, weight=weight.astype(dtype))
            projections.append(dataclasses.replace(pr, op=op))
        populations = []
        for p, b in zip(model.populations, self.network.bias):
            bias = None if b is None else b.detach().cpu().numpy().astype(np.float64).reshape(-1)
            if p.name in gains:
                bias = gains[p.name][1] + (0 if bias is None else bias)
            if bias is not None:
                p = dataclasses.replace(p, bias=bias.astype(dtype).reshape(p.shape))
            if p.name in self.thresholds:
                theta = self.thresholds[p.name].detach().cpu().numpy().astype(dtype)
                p = dataclasses.replace(p, neuron=dataclasses.replace(p.neuron, threshold=theta if theta.ndim
                                                                      else float(theta)))
            populations.append(p)
        norm = {} if self.norm is None else {"norm": self.norm, "momentum": self.momentum,
                                             **({"norm_lambda": self.norm_lambda} if self.psp_norms else {}),
                                             **({"norm_alpha": self.norm_alpha} if self.norm == "tdbn" else {})}
        record = {"steps": self.steps, "surrogate": self.spike_fn.name, **self.spike_fn.params,
                  "encoding": self.encoding, **norm, **provenance}
        return model.replace(projections=projections, populations=populations,
                             provenance={**model.provenance, "training": record})


def _scale_axis(weight: np.ndarray, factor: np.ndarray, *, axis: int) -> np.ndarray:
    """``weight`` (a dense matrix, or a conv kernel (C_out, C_in, kh, kw)) times ``factor`` (float64) along its
    output (``axis=0``) or input (``axis=1``) axis; a conv kernel takes one factor per channel."""
    if weight.ndim == 4:
        factor = factor.reshape(weight.shape[axis], -1)[:, 0]
    shape = [1] * weight.ndim
    shape[axis] = -1
    return weight.astype(np.float64) * factor.reshape(shape)


def train_snn(model: SpikingModel, x: np.ndarray, y: np.ndarray, *, steps: int, spike_fn: str | Surrogate = "slayer",
              encoding: str | None = None, norm: str | None = None, norm_lambda: float = 1e-3,
              norm_alpha: float = 1.0, fixed: Sequence[str] = (), train_thresholds: bool = False, epochs: int = 5,
              batch_size: int = 64, lr: float = 1e-3, max_shift: int = 0, seed: int = 0,
              progress: bool = False, checkpoint: str | None = None) -> tuple[SpikingModel, list[float]]:
    """Train ``model`` on images ``x`` and labels ``y`` by BPTT with a surrogate gradient; return the trained
    model and the mean loss per epoch.

    The loop is :func:`evsnn.training.train_classifier`'s (AdamW, warm-up and cosine decay, cross-entropy of
    the logits of :class:`SpikingNetwork`, random shifts up to ``max_shift`` pixels), seeded by ``seed``.
    ``norm``, ``norm_lambda``, ``norm_alpha``, ``fixed``, ``train_thresholds``: :class:`SpikingNetwork`'s (a
    PSP-LN or BNTT network cannot be exported: train it with :class:`SpikingNetwork` and
    :func:`~evsnn.training.train_classifier` directly). ``checkpoint``: a file that
    makes the run resumable (:func:`~evsnn.training.train_classifier`).
    """
    if norm in ("psp-ln", "bntt"):  # refused before training, not after it
        raise ConversionError(f"train_snn: it returns the exported model, and a norm={norm!r} network cannot be "
                              f"exported (SpikingNetwork.to_model says why). Train it with SpikingNetwork and "
                              f"train_classifier, and evaluate it with its forward pass.")
    net = SpikingNetwork(model, steps=steps, spike_fn=spike_fn, encoding=encoding, seed=seed, norm=norm,
                         norm_lambda=norm_lambda, norm_alpha=norm_alpha, fixed=fixed,
                         train_thresholds=train_thresholds)
    losses = train_classifier(net, x, y, epochs=epochs, batch_size=batch_size, lr=lr, max_shift=max_shift,
                              seed=seed, progress=progress, checkpoint=checkpoint)
    return net.to_model(trainer="evsnn.training.train_snn", epochs=epochs, batch_size=batch_size, lr=lr,
                        seed=seed, samples=int(len(x))), losses
