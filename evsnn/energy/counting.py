r"""Exact operation counts: of a spiking run (from its :class:`~evsnn.result.Result`) and of the ANN.

SNN, per sample and step (:func:`snn_ops`):

- ``sop``: each spike of neuron :math:`j` through projection :math:`p` costs
  the number of synapses :math:`j` has in :math:`p` -- its non-zero weights
  (``sop_convention="nonzero"``, the default) or every structural connection,
  zero weights included (``"nominal"``); conv borders and strides exact.
  Counted at the step the spike is emitted (whatever the projection's delay).
- ``input_mac``: with analog (``current``) input, every non-zero input value
  times its non-zero-weight synapses into the first layer, at every step
  (``input_macs="per-step"``, what spiking hardware that receives the analog
  input each step must do), or at the first step only (``"once"``: the input
  is constant, so the first layer's product can be computed once and held as
  a constant current, the convention of snntoolbox).
- ``update_<kind>`` (``update_if``, ``update_lif``, ``update_srm``, ``update_cuba_lif``, ...): every
  neuron, every step
  (time-driven hardware updates all of them; IF one add, LIF one
  multiply-add, SRM priced only by user presets).
- ``bias_add``: every neuron with a non-zero bias, every step.
- ``graded_mac``: a graded event (a value other than 0 and 1, e.g. seed 004's
  median spikes) costs a multiply-accumulate per synapse of its neuron, where
  a spike costs an accumulate (:func:`event_ops`; the IR's engines carry
  spikes only, so only networks outside the IR, such as
  :class:`evsnn.training.CondensedNetwork`, report them).

Not counted: threshold comparisons, resets, spike routing, memory access,
and no factor of 2 anywhere (a MAC is one operation, not two FLOPs).

ANN, per sample (:func:`ann_ops_torch`, :func:`ann_ops_ir`): *dense* MACs are
all multiply-accumulates of each Linear/Conv2d layer (a conv counts every
kernel tap at every output position, zero padding included, as torch
computes it); *effective* MACs only those whose input activation is non-zero
(padding taps excluded), computed per sample on the same inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..display import describe_op
from ..errors import InputError
from ..model import INPUT, SpikingModel
from ..ops import Conv2d, Operator, Sparse
from ..result import Raster, Result
from ..settings import check_samples

__all__ = ["OpSeries", "AnnLayerOps", "snn_ops", "ann_ops_torch", "ann_ops_ir", "sops_from_rasters", "event_ops",
           "SOP_CONVENTIONS", "INPUT_MAC_CONVENTIONS"]

SOP_CONVENTIONS = ("nonzero", "nominal")
INPUT_MAC_CONVENTIONS = ("per-step", "once")


@dataclass(frozen=True, eq=False)
class OpSeries:
    """Operations of one class at one projection or population.

    Attributes
    ----------
    item : str
        Projection name (``sop``, ``input_mac``) or population name (updates, bias adds).
    kind : {"projection", "population"}
    op : str
        Operation class (:data:`evsnn.energy.OP_CLASSES`).
    detail : str
        What the item is, e.g. ``"fc1 → fc2, dense 1200→1200"`` or ``"if, 1,200 neurons"``.
    per_sample : int64 array, shape (N,)
        Operations per sample, summed over steps.
    per_step : float64 array, shape (steps,)
        Operations per step, mean over samples.
    """

    item: str
    kind: str
    op: str
    detail: str
    per_sample: np.ndarray
    per_step: np.ndarray


@dataclass(frozen=True, eq=False)
class AnnLayerOps:
    """Multiply-accumulates of one layer of the source ANN, per sample.

    Attributes
    ----------
    name : str
        Module path (torch) or projection name (IR dense equivalent).
    detail : str
        E.g. ``"Conv2d 1→12 5x5"``.
    dense_macs : int
        All multiply-accumulates of one forward pass.
    effective_macs : int64 array (N,), or None
        Those whose input activation is non-zero (``None`` without inputs).
    bias_adds : int
        Bias additions (outputs whose bias is non-zero).
    """

    name: str
    detail: str
    dense_macs: int
    effective_macs: np.ndarray | None
    bias_adds: int


def _check_choice(value: object, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise InputError(f"energy: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value  # type: ignore[return-value]


def check_result_matches(result: Result, model: SpikingModel) -> None:
    """Raise InputError unless ``result`` comes from a run of ``model`` (same populations and projections)."""
    sizes = {p.name: p.size for p in model.populations}
    if dict(result.sizes) != sizes:
        raise InputError(f"energy: result must come from a run of this model; its populations {dict(result.sizes)} "
                         f"differ from the model's {sizes}. Pass the model that was simulated.")
    counted = set(result.sops) | set(result.input_macs)
    names = {pr.name for pr in model.projections}
    if counted != names:
        raise InputError(f"energy: result must come from a run of this model; it counts projections "
                         f"{sorted(counted)}, the model has {sorted(names)}. Pass the model that was simulated.")


def snn_ops(result: Result, model: SpikingModel, *, sop_convention: str = "nonzero",
            input_macs: str = "per-step") -> list[OpSeries]:
    """Every counted operation of a spiking run, per projection or population (see the module docstring).

    Parameters
    ----------
    result : Result
        A run of ``model`` (any engine).
    model : SpikingModel
    sop_convention : {"nonzero", "nominal"}
        Synapses of a spike: non-zero weights only, or every structural connection.
    input_macs : {"per-step", "once"}
        Analog-input MACs at every step, or at the first step only.

    Returns
    -------
    list of OpSeries
        Projections first (model order), then populations (model order).

    Examples
    --------
    >>> import numpy as np, evsnn
    >>> from evsnn import Dense, InputSpec, Population, Projection, SpikingModel
    >>> m = SpikingModel(InputSpec((2,)), [Population("out", (1,))],
    ...                  [Projection("w", "input", "out", Dense(np.array([[0.5, 0.0]])))])
    >>> r = evsnn.simulate(m, np.array([[1.0, 1.0]]), steps=4)  # analog input
    >>> [(s.op, int(s.per_sample[0])) for s in snn_ops(r, m)]
    [('input_mac', 4), ('update_if', 4)]
    """
    sop_convention = _check_choice(sop_convention, SOP_CONVENTIONS, "sop_convention")
    input_macs = _check_choice(input_macs, INPUT_MAC_CONVENTIONS, "input_macs")
    check_result_matches(result, model)
    n, steps = result.n_samples, result.steps
    sops = result.sops_nominal if sop_convention == "nominal" else result.sops
    out = []
    for pr in model.projections:
        detail = f"{pr.source} → {pr.target}, {describe_op(pr.op)}"
        if pr.name in sops:
            counts = np.asarray(sops[pr.name], dtype=np.int64)
            out.append(OpSeries(pr.name, "projection", "sop", detail, counts.sum(axis=1), counts.mean(axis=0)))
        else:
            counts = np.asarray(result.input_macs[pr.name], dtype=np.int64)
            if input_macs == "once":
                counts = np.concatenate([counts[:, :1], np.zeros((n, steps - 1), dtype=np.int64)], axis=1)
            out.append(OpSeries(pr.name, "projection", "input_mac", detail, counts.sum(axis=1),
                                counts.mean(axis=0)))
    for pop in model.populations:
        kind = pop.neuron.kind
        out.append(OpSeries(pop.name, "population", f"update_{kind}", f"{kind}, {pop.size:,} neurons",
                            np.full(n, pop.size * steps, dtype=np.int64), np.full(steps, float(pop.size))))
        if pop.bias is not None:
            biased = int(np.count_nonzero(pop.bias))
            if biased:
                out.append(OpSeries(pop.name, "population", "bias_add", f"{biased:,} non-zero biases",
                                    np.full(n, biased * steps, dtype=np.int64), np.full(steps, float(biased))))
    return out


# --- the source ANN ------------------------------------------------------------------------
def _dense_macs(op: Operator) -> int:
    if isinstance(op, Conv2d):
        c_out, c_in, kh, kw = op.weight.shape
        return op.n_out * c_in * kh * kw  # every tap at every output, zero padding included
    if isinstance(op, Sparse):
        return op.n_connections()  # a sparse layer computes its stored entries
    return op.n_in * op.n_out


def ann_ops_ir(model: SpikingModel, x: np.ndarray | None = None, *, batch_size: int = 256) -> list[AnnLayerOps]:
    """MACs of the IR's dense equivalent: each projection's operator taken as an ANN layer.

    This is not the source network when pooling was folded (a pooling layer
    and the convolution after it are one operator here). Effective MACs use
    the activations of :meth:`SpikingModel.ann_forward` on ``x`` (only their
    zero pattern matters).

    Parameters
    ----------
    model : SpikingModel
    x : array, shape (N, *model.input.shape), optional
        Inputs; without them only dense MACs are returned.
    batch_size : int
        Samples per forward pass (bounds memory).
    """
    fan = {pr.name: pr.op.fan_out()[1] for pr in model.projections}  # connections: conv padding excluded
    effective: dict[str, list[np.ndarray]] = {pr.name: [] for pr in model.projections}
    if x is not None:
        x = check_samples(x, model, where="energy")
        for lo in range(0, x.shape[0], batch_size):
            xb = x[lo:lo + batch_size]
            acts = model.ann_forward(xb)
            flat = xb.reshape(xb.shape[0], -1).astype(np.float64)
            if model.input.encoding == "current":
                acts[INPUT] = flat * model.input.scale
            else:
                acts[INPUT] = np.clip(flat * model.input.max_rate * model.dt, 0, 1)
            for pr in model.projections:
                effective[pr.name].append((acts[pr.source] != 0) @ fan[pr.name])
    biased_first = {}
    for pr in model.projections:  # a population's bias is attributed to the first projection into it
        biased_first.setdefault(pr.target, pr.name)
    out = []
    for pr in model.projections:
        pop = model.population(pr.target)
        bias = int(np.count_nonzero(pop.bias)) if pop.bias is not None and biased_first[pr.target] == pr.name else 0
        eff = np.concatenate(effective[pr.name]).astype(np.int64) if x is not None else None
        out.append(AnnLayerOps(pr.name, f"{pr.source} → {pr.target}, {describe_op(pr.op)}", _dense_macs(pr.op),
                               eff, bias))
    return out


def ann_ops_torch(ann, x: np.ndarray, *, batch_size: int = 256) -> list[AnnLayerOps]:
    """MACs of a torch network's ``Linear`` and ``Conv2d`` layers, counted by forward hooks on ``x``.

    Dense MACs: every multiply-accumulate of the layer (a conv: every kernel
    tap at every output position, zero padding included). Effective MACs:
    those whose input activation is non-zero, per sample (a conv of the
    input's non-zero indicator with an all-ones kernel). Bias adds: outputs
    whose bias is non-zero. The network runs in eval mode without gradients;
    its training flag is restored.

    Parameters
    ----------
    ann : torch.nn.Module
    x : array, shape (N, ...)
        The network's inputs (the same samples the SNN ran on).
    batch_size : int

    Returns
    -------
    list of AnnLayerOps
        In the order the layers first ran.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    if not isinstance(ann, nn.Module):
        raise InputError(f"energy: ann must be a torch.nn.Module, got {type(ann).__name__}.")
    x = np.asarray(x)
    layers = [(name, m) for name, m in ann.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise InputError("energy: ann must contain Linear or Conv2d layers to count MACs, got none.")
    for name, m in layers:
        if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
            raise InputError(f"energy: layer {name!r} (Conv2d): padding_mode must be 'zeros' to count its "
                             f"MACs, got {m.padding_mode!r}.")
    stats: dict[str, dict] = {}  # layer path -> counts, in the order the layers first ran

    def hook(name: str):
        def record(module, inputs, output):
            inp = inputs[0]
            batch = inp.shape[0]
            if isinstance(module, nn.Linear):
                rows = output.numel() // (batch * module.out_features)  # extra leading dims, if any
                dense = module.in_features * module.out_features * rows
                eff = (inp != 0).reshape(batch, -1).sum(dim=1, dtype=torch.int64) * module.out_features
                bias = 0 if module.bias is None else int(torch.count_nonzero(module.bias)) * rows
                detail = f"Linear {module.in_features}→{module.out_features}"
            else:
                kh, kw = module.kernel_size
                per_out = (module.in_channels // module.groups) * kh * kw
                dense = output[0].numel() * per_out
                ones = torch.ones_like(module.weight, dtype=torch.float32)
                hits = F.conv2d((inp != 0).to(torch.float32), ones, None, module.stride, module.padding,
                                module.dilation, module.groups)
                eff = hits.reshape(batch, -1).sum(dim=1, dtype=torch.float64).round().to(torch.int64)
                bias = 0 if module.bias is None else int(torch.count_nonzero(module.bias)) * output[0, 0].numel()
                extra = "".join(f" {n}={v[0] if v[0] == v[1] else v}" if isinstance(v, tuple) else f" {n}={v}"
                                for n, v, default in (("stride", module.stride, (1, 1)),
                                                      ("padding", module.padding, (0, 0))) if v != default)
                detail = f"Conv2d {module.in_channels}→{module.out_channels} {kh}x{kw}{extra}"
            s = stats.setdefault(name, {"detail": detail, "dense": 0, "bias": 0, "eff": {}})
            if batch_index[0] == 0:  # per-sample constants, from the first batch (a layer may run twice)
                s["dense"] += dense
                s["bias"] += bias
            done = s["eff"].get(batch_index[0])
            s["eff"][batch_index[0]] = eff.numpy() if done is None else done + eff.numpy()
        return record

    batch_index = [0]
    was_training = ann.training
    handles = [m.register_forward_hook(hook(name)) for name, m in layers]
    try:
        ann.eval()
        with torch.no_grad():
            for lo in range(0, x.shape[0], batch_size):
                batch_index[0] = lo // batch_size
                ann(torch.as_tensor(x[lo:lo + batch_size], dtype=torch.float32))
    finally:
        for h in handles:
            h.remove()
        ann.train(was_training)
    return [AnnLayerOps(name, s["detail"], int(s["dense"]),
                        np.concatenate([s["eff"][b] for b in sorted(s["eff"])]).astype(np.int64), int(s["bias"]))
            for name, s in stats.items()]


# --- recount from rasters --------------------------------------------------------------------
def sops_from_rasters(model: SpikingModel, rasters: Mapping[str, Raster], *, n_samples: int, steps: int,
                      input_events: Sequence[np.ndarray] | None = None,
                      nominal: bool = False) -> dict[str, np.ndarray]:
    """SOPs per projection, sample and step, recounted from recorded spikes.

    Independent of any engine's counters (not of the SOP rule, which is
    :meth:`~evsnn.ops.Dense.fan_out` everywhere): every recorded spike of
    neuron ``j`` adds its synapses in the projection, its non-zero weights or,
    with ``nominal``, all its connections. Use it to check that an engine's
    ``Result.sops`` match its own spikes (record every population with
    ``record="all"``).

    Parameters
    ----------
    model : SpikingModel
    rasters : mapping of str -> Raster
        ``Result.rasters``; every population that feeds a projection must be there.
    n_samples, steps : int
    input_events : (sample, step, neuron) arrays, optional
        Input spikes, e.g. ``EncodedInput.spike_events(0, N)``; without them,
        projections from the input are left out (with analog input they are MACs).
    nominal : bool
        Count zero weights too.

    Returns
    -------
    dict of str -> int64 array, shape (n_samples, steps)
    """
    out = {}
    for pr in model.projections:
        if pr.source == INPUT:
            if input_events is None:
                continue
            sample, step, neuron = (np.asarray(a, dtype=np.int64) for a in input_events)
        else:
            if pr.source not in rasters:
                raise InputError(f"sops_from_rasters: population {pr.source!r} (source of projection "
                                 f"{pr.name!r}) must be recorded; simulate with record='all'.")
            r = rasters[pr.source]
            sample, step, neuron = r.sample, r.step, r.neuron
        fan = pr.op.fan_out()[1 if nominal else 0]
        counts = np.bincount(sample * steps + step, weights=fan[neuron], minlength=n_samples * steps)
        out[pr.name] = np.rint(counts).astype(np.int64).reshape(n_samples, steps)
    return out


def event_ops(events: np.ndarray, op: Operator, *, nominal: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """SOPs and graded MACs of ``events`` (..., n_in) sent through ``op``, per leading index (e.g. sample, step).

    The SOP rule (:meth:`~evsnn.ops.Dense.fan_out`) for events that need not
    be spikes: an event of value 1 costs one accumulate per synapse of its
    neuron, an event of any other non-zero value (graded: a multiply of the
    value and the weight is needed) one multiply-accumulate per synapse.
    ``nominal``: count zero weights too. Returns two int64 arrays of the
    leading shape: ``(sops, graded_macs)``.
    """
    events = np.asarray(events)
    if events.shape[-1] != op.n_in:
        raise InputError(f"event_ops: events must have the operator's {op.n_in} inputs on their last axis, got shape "
                         f"{events.shape}.")
    fan = op.fan_out()[1 if nominal else 0]
    spikes = events == 1
    graded = (events != 0) & ~spikes
    return spikes @ fan, graded @ fan


def ratio(a: float, b: float) -> float | None:
    """``a / b``, or None when ``b`` is 0 or not finite."""
    return a / b if b and math.isfinite(b) else None
