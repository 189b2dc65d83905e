"""Seed 004's weighted condense (supplementary Algorithm 1), on maps whose recomposition is known by hand."""

from __future__ import annotations

import pytest
import torch

from evsnn.training.condense import dilated_windows, event_counts, region_threshold, weighted_condense


def test_windows_of_one_map_recompose_to_it():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float64).reshape(2, 3, 8, 8)
    windows = dilated_windows(x)
    assert [tuple(g.shape) for g in windows] == [(2, 3, 6, 6)] * 4
    assert torch.equal(windows[1][..., 0, 0], x[..., 0, 2]) and torch.equal(windows[2][..., 0, 0], x[..., 2, 0])
    assert torch.equal(weighted_condense(*windows), x)


def test_a_spike_of_one_window_becomes_a_median_spike_by_its_overlap():
    """L = 8: windows of 6, overlaps of 4 (rows/columns 2-5). A spike seen by one window only is 1 outside the
    overlaps, 1/2 where two windows overlap, 1/4 in the centre where four do."""
    g = [torch.zeros(1, 1, 6, 6) for _ in range(4)]
    g[0][0, 0, 0, 0] = 1  # global (0, 0): G1 alone
    g[0][0, 0, 0, 3] = 1  # global (0, 3): G1 and G2 overlap
    g[0][0, 0, 3, 3] = 1  # global (3, 3): the centre
    g[3][0, 0, 5, 5] = 1  # global (7, 7): G4 alone
    g[1][0, 0, 4, 0] = g[3][0, 0, 2, 0] = g[2][0, 0, 2, 2] = 1  # global (4, 2): three of the four windows
    out = weighted_condense(*g)[0, 0]
    want = torch.zeros(8, 8)
    want[0, 0], want[0, 3], want[3, 3], want[7, 7], want[4, 2] = 1, 0.5, 0.25, 1, 0.75
    assert torch.equal(out, want)
    assert event_counts(out) == (2, 3)
    assert torch.equal(region_threshold(out), (out > 0).float())  # the seed's 0.1: every median spike fires
    kept = region_threshold(out, 0.6)
    assert event_counts(kept) == (3, 2) and kept[4, 2] == 1 and kept[3, 3] == 0.25


def test_region_threshold_passes_the_gradient_straight_through():
    g = torch.tensor([0.0, 0.25, 0.5, 1.0], requires_grad=True)
    region_threshold(g, 0.3).sum().backward()
    assert torch.equal(g.grad, torch.ones(4))


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="divisible by 4, got 6"):
        dilated_windows(torch.zeros(1, 1, 6, 6))
    with pytest.raises(ValueError, match="square"):
        dilated_windows(torch.zeros(1, 1, 8, 4))
    with pytest.raises(ValueError, match="four square windows"):
        weighted_condense(*[torch.zeros(1, 1, 6, 6)] * 3, torch.zeros(1, 1, 6, 5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        event_counts(torch.tensor([0.5, 2.0]))
