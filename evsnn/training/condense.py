"""Seed 004's weighted condense: four overlapping (dilated) windows recomposed into one map, with median spikes.

Seed 004 (Yao et al., supplementary Algorithm 1) processes a feature map of
size ``L`` as four windows of size ``M = 3L/4`` that overlap by ``w_o = 2M - L
= L/2`` (:func:`dilated_windows`: top-left, top-right, bottom-left,
bottom-right) and recomposes their outputs (:func:`weighted_condense`): where
two windows overlap their values are averaged (weight 2), where four do
(the centre) the averages are averaged again (weight 4). A spike of one
window in an overlap becomes a "median spike" (Ms) of 0.5, or 0.25, 0.5,
0.75 in the centre. The region threshold (:func:`region_threshold`,
``Th_R = 0.1`` in the seed) turns an Ms above it into a spike.

Algorithm 1 states only that branch (``X = G.where(Ms > Th_R) -> 1``); here an
Ms at or below ``Th_R`` stays a graded event of its value (with the seed's
0.1 none can, as the smallest Ms is 0.25). A graded event reaching the next
layer costs a multiply per synapse where a spike costs an add
(:func:`event_counts` tells them apart). The seed's layout is (batch, H, W,
C); this module uses torch's (batch, C, H, W) and condenses along W first,
then H, as Algorithm 1 does.
"""

from __future__ import annotations

import torch

__all__ = ["dilated_windows", "weighted_condense", "region_threshold", "event_counts"]


def _sizes(length: int) -> tuple[int, int]:
    if length % 4:
        raise ValueError(f"seed 004's dilated windows need a map size divisible by 4, got {length}.")
    return 3 * length // 4, length // 2  # M, w_o


def dilated_windows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four windows of size ``3L/4`` of a square map ``x`` (batch, C, L, L): G1 top-left, G2 top-right, G3
    bottom-left, G4 bottom-right."""
    length = x.shape[-1]
    if x.shape[-2] != length:
        raise ValueError(f"dilated_windows: the map must be square, got {tuple(x.shape[-2:])}.")
    m, _ = _sizes(length)
    lo = length - m
    return x[..., :m, :m], x[..., :m, lo:], x[..., lo:, :m], x[..., lo:, lo:]


def _condense(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """Algorithm 1's steps 1-2 along ``dim``: ``a``'s first ``w_o/2``, the mean of the overlap, ``b``'s last
    ``w_o/2``."""
    m = a.shape[dim]
    length = 4 * m // 3
    _, wo = _sizes(length)
    cover = (a.narrow(dim, wo // 2, wo) + b.narrow(dim, 0, wo)) / 2
    return torch.cat([a.narrow(dim, 0, wo // 2), cover, b.narrow(dim, wo, wo // 2)], dim=dim)


def weighted_condense(g1: torch.Tensor, g2: torch.Tensor, g3: torch.Tensor, g4: torch.Tensor) -> torch.Tensor:
    """Algorithm 1's recomposition of the four windows' outputs (batch, C, M, M) into one map (batch, C, L, L),
    ``L = 4M/3``: G1 with G2 and G3 with G4 along W, then the two along H."""
    if not g1.shape == g2.shape == g3.shape == g4.shape or g1.shape[-1] != g1.shape[-2] or (4 * g1.shape[-1]) % 3:
        raise ValueError(f"weighted_condense: four square windows of one size 3L/4 needed, got "
                         f"{[tuple(g.shape) for g in (g1, g2, g3, g4)]}.")
    return _condense(_condense(g1, g2, dim=-1), _condense(g3, g4, dim=-1), dim=-2)


def region_threshold(g: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """Median spikes above ``threshold`` become spikes (1); the rest keep their value. Backward: the identity
    (a straight-through estimator), so the windows' spikes keep their surrogate gradient."""
    hard = torch.where(g > threshold, torch.ones_like(g), g)
    return g + (hard - g).detach()


def event_counts(x: torch.Tensor) -> tuple[int, int]:
    """``(spikes, graded)``: the entries of ``x`` that are 1 (an add per synapse downstream) and those strictly
    between 0 and 1 (a graded event: a multiply-add per synapse)."""
    spikes = int((x == 1).sum())
    graded = int(((x > 0) & (x < 1)).sum())
    if int((x != 0).sum()) != spikes + graded:
        raise ValueError("event_counts: events must lie in [0, 1].")
    return spikes, graded
