"""Architectures for direct training, built as IR models with PyTorch's default initialization.

- :func:`plain_cnn`: seed 003's Table 2 networks, ``c3`` convolutions (3x3, padding 1) and a dense classifier;
- :func:`residual_cnn`: seed 003's residual networks (eqs. 8-9, Fig. 3), pre- or post-activation blocks.

Seed 003's residual stream ``h`` is a membrane potential (a sum of weighted PSPs) and its Func layer is
Spike-PSP-Norm (a spiking population reading ``h``, whose spikes' PSP is normalized before the next conv).
The IR has no non-spiking adder, but an SRM population's potential is linear in its inputs, so the blocks
are exact as projections:

- **pre-activation** (eq. 8, ``h_{k+1} = h_k + G(h_k)``, ``G`` = Func-Conv-Func-Conv): ``h_k`` is the stem conv
  plus every earlier block's second conv, so the population ``a{k}`` that spikes on ``h_k`` receives the stem
  projection and a projection from each earlier block's ``b{j}``; the projections of one conv share one weight
  (one operator object, which :class:`~evsnn.training.SpikingNetwork` trains as one parameter);
- **post-activation** (eq. 9, ``h_{k+1} = F(h_k + G(h_k))``, ``G`` = Conv-Func-Conv): ``a{k+1}`` receives the
  identity from ``a{k}`` (a fixed 1x1 convolution: ``h_k`` is ``a{k}``'s normalized PSP) and ``b{k}``'s second
  conv.

The identity is carried by synapses, so a spike of ``b{j}`` in a pre-activation network is delivered to every
later block (SOPs grow with depth where a chip would add the potentials once); docs/training.md says so.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..model import INPUT, InputSpec, NeuronSpec, Population, Projection, SpikingModel
from ..ops import Conv2d, Dense

__all__ = ["plain_cnn", "residual_cnn", "IDENTITY_PREFIX"]

#: Name prefix of the fixed identity projections of post-activation blocks (kept fixed in training).
IDENTITY_PREFIX = "identity"


def _default_init(generator: torch.Generator, shape: tuple[int, ...], scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A weight of ``shape`` (out, in, ...) and its bias as ``nn.Conv2d`` and ``nn.Linear`` initialize them
    (uniform in +-1/sqrt(fan_in): Kaiming-uniform with a = sqrt(5)), times ``scale``, drawn from ``generator``."""
    bound = scale / np.sqrt(np.prod(shape[1:]))
    weight = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    bias = (torch.rand(shape[0], generator=generator, dtype=torch.float64) * 2 - 1) * bound
    return weight.numpy().astype(np.float32), bias.numpy().astype(np.float32)


def _out_size(size: int, stride: int) -> int:
    return (size + 2 - 3) // stride + 1  # 3x3, padding 1


def plain_cnn(channels: Sequence[int], neuron: NeuronSpec, *, strides: Sequence[int] | None = None,
              input_shape: tuple[int, int, int] = (1, 28, 28), classes: int = 10, encoding: str = "current",
              bias: bool = True, scale: float = 1.0, seed: int = 0) -> SpikingModel:
    """``c3`` convolutions of ``channels`` (3x3, padding 1, ``strides``, default 1) and a dense classifier, every
    population of ``neuron``: seed 003's ``n16c3-{n32c3}*5-...-10`` without the normalizations, which
    :class:`~evsnn.training.SpikingNetwork` adds (``norm=``). Weights and biases as PyTorch initializes them
    times ``scale`` (seed 003's "weight scale", 10 with its threshold 10: Table 1), seeded by ``seed``."""
    strides = list(strides) if strides is not None else [1] * len(channels)
    if len(strides) != len(channels):
        raise ValueError(f"plain_cnn: {len(strides)} strides for {len(channels)} conv layers.")
    g = torch.Generator().manual_seed(seed)
    populations, projections, source, shape = [], [], INPUT, tuple(input_shape)
    for k, (c, s) in enumerate(zip(channels, strides), start=1):
        out = (c, _out_size(shape[1], s), _out_size(shape[2], s))
        weight, b = _default_init(g, (c, shape[0], 3, 3), scale)
        populations.append(Population(f"conv{k}", out, neuron, bias=np.repeat(b, out[1] * out[2]).reshape(out)
                                      if bias else None))
        projections.append(Projection(f"conv{k}", source, f"conv{k}", Conv2d(weight, input_shape=shape,
                                                                              stride=(s, s), padding=(1, 1))))
        source, shape = f"conv{k}", out
    weight, b = _default_init(g, (classes, int(np.prod(shape))), scale)
    populations.append(Population("fc", (classes,), neuron, bias=b if bias else None))
    projections.append(Projection("fc", source, "fc", Dense(weight)))
    return SpikingModel(input=InputSpec(tuple(input_shape), encoding=encoding), populations=populations,
                        projections=projections, provenance={"architecture": "plain_cnn",
                                                             "channels": list(channels), "strides": strides})


def residual_cnn(kind: str, blocks: int, channels: int, neuron: NeuronSpec, *, stem_stride: int = 2,
                 input_shape: tuple[int, int, int] = (1, 28, 28), classes: int = 10, encoding: str = "current",
                 scale: float = 1.0, seed: int = 0) -> SpikingModel:
    """A stem conv (``channels``, stride ``stem_stride``), ``blocks`` residual blocks of two ``c3`` convs each at
    that size, and a dense classifier: ``2 * blocks + 2`` weight layers. ``kind``: ``"pre"`` (eq. 8) or
    ``"post"`` (eq. 9) activation (module docstring). No biases (the convs of seed 003's blocks are followed by
    normalization); weights as :func:`plain_cnn`'s."""
    if kind not in ("pre", "post"):
        raise ValueError(f"residual_cnn: kind must be 'pre' or 'post', got {kind!r}.")
    if blocks < 1:
        raise ValueError(f"residual_cnn: blocks must be >= 1, got {blocks}.")
    g = torch.Generator().manual_seed(seed)
    c_in = input_shape[0]
    shape = (channels, _out_size(input_shape[1], stem_stride), _out_size(input_shape[2], stem_stride))
    stem = Conv2d(_default_init(g, (channels, c_in, 3, 3), scale)[0], input_shape=tuple(input_shape),
                  stride=(stem_stride,) * 2, padding=(1, 1))
    populations = [Population("a1", shape, neuron)]
    projections = [Projection("stem_a1", INPUT, "a1", stem)]
    second: list[tuple[int, Conv2d]] = []  # per block, its second conv (pre-activation: shared by later blocks)
    identity = Conv2d(np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1), input_shape=shape)
    for k in range(1, blocks + 1):
        first = Conv2d(_default_init(g, (channels, channels, 3, 3), scale)[0], input_shape=shape, padding=(1, 1))
        conv2 = Conv2d(_default_init(g, (channels, channels, 3, 3), scale)[0], input_shape=shape, padding=(1, 1))
        second.append((k, conv2))
        populations += [Population(f"b{k}", shape, neuron), Population(f"a{k + 1}", shape, neuron)]
        projections.append(Projection(f"conv1_b{k}", f"a{k}", f"b{k}", first))
        if kind == "pre":  # h_{k+1} = h_0 + sum_j G_j: the stem and every block's second conv so far
            projections.append(Projection(f"stem_a{k + 1}", INPUT, f"a{k + 1}", stem))
            projections += [Projection(f"conv2_b{j}_a{k + 1}", f"b{j}", f"a{k + 1}", op) for j, op in second]
        else:  # h_{k+1} = F(h_k + G_k): the identity from a{k}, block k's second conv
            projections += [Projection(f"{IDENTITY_PREFIX}_a{k}_a{k + 1}", f"a{k}", f"a{k + 1}", identity),
                            Projection(f"conv2_b{k}_a{k + 1}", f"b{k}", f"a{k + 1}", conv2)]
    weight, b = _default_init(g, (classes, int(np.prod(shape))), scale)
    populations.append(Population("fc", (classes,), neuron, bias=b))
    projections.append(Projection("fc", f"a{blocks + 1}", "fc", Dense(weight)))
    return SpikingModel(input=InputSpec(tuple(input_shape), encoding=encoding), populations=populations,
                        projections=projections, provenance={"architecture": f"residual_cnn ({kind}-activation)",
                                                             "blocks": blocks, "channels": channels})
