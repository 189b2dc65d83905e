"""evsnn.training.CondensedNetwork: seed 004's condensed windows in a classifier; its exact counts, export, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import evsnn
from evsnn.errors import ConversionError
from evsnn.io.datasets import mnist_split
from evsnn.training import CondensedNetwork, train_condensed
from evsnn.training.condense import dilated_windows
from test_event_engine import brute_fan_out


@pytest.fixture(scope="module")
def images():
    data = mnist_split()
    return data.x_test[:6], data.y_test[:6]


def active(net: CondensedNetwork) -> CondensedNetwork:
    """The untrained network with its head's weights scaled up, so that every layer spikes within 3 steps."""
    with torch.no_grad():
        for w in net.head.weights:
            w.mul_(4)
    return net


def per_item(report, op):
    return {s.item: s.per_sample for s in report.snn if s.op == op}


def test_report_counts_every_spike_and_graded_event_per_synapse(images):
    """Th_R = 1 keeps every median spike graded. The report's counts against an independent per-synapse count
    (brute_fan_out, synapse by synapse) of the events the network emitted: spikes (1) as SOPs, other non-zero
    values as graded MACs; the image's pixels in each window as input MACs; each window spike as one SOP."""
    x, y = images
    net = active(CondensedNetwork(steps=3, region_threshold=1.0, seed=0))
    with torch.no_grad():
        spikes, events, head = net.run(torch.as_tensor(x))
    rep = net.energy_report(x, y, batch_size=4)  # two batches, one of them short
    head_model = net.head.to_model()
    trains = {"input": events.numpy(), **{k: v.numpy() for k, v in head.items()}}
    sops, graded = per_item(rep, "sop"), per_item(rep, "graded_mac")
    for pr in head_model.projections:
        synapses = brute_fan_out(pr.op)[0]
        train = trains[pr.source]  # (steps, N, n)
        np.testing.assert_array_equal(sops[pr.name], ((train == 1) * synapses).sum(axis=(0, 2)))
        graded_events = (train != 0) & (train != 1)
        np.testing.assert_array_equal(graded[pr.name], (graded_events * synapses).sum(axis=(0, 2)))
    assert graded["conv1"].min() > 0 and sops["conv1"].min() > 0 and sops["fc1"].min() > 0
    assert graded["fc1"].sum() == 0  # the head's own neurons spike
    np.testing.assert_array_equal(sops["condense"], spikes.numpy().sum(axis=(0, 1, 3, 4, 5)))
    window_synapses = brute_fan_out(net.windows.to_model().projections[0].op)[0]
    pixels = sum((w.reshape(len(x), -1).numpy() != 0) @ window_synapses for w in dilated_windows(torch.as_tensor(x)))
    np.testing.assert_array_equal(per_item(rep, "input_mac")["windows"], 3 * pixels)
    updates = {(s.item, s.op): int(s.per_sample[0]) for s in rep.snn if s.op.startswith("update")}
    assert updates == {("windows", "update_if"): 3 * 4 * 12 * 21 * 21, ("conv1", "update_if"): 3 * 64 * 10 * 10,
                       ("condensed", "update_threshold"): 3 * 12 * 28 * 28, ("fc1", "update_if"): 3 * 10}
    totals = json.loads(rep.to_json())["snn"]["totals"]
    assert totals["graded_mac"]["count"]["mean"] == graded["conv1"].mean() and "graded MAC" in rep.format()
    logits = head["fc1"].sum(dim=0).numpy()
    assert rep.accuracy_curve[-1] == np.mean(logits.argmax(axis=1) == y)


def test_export_is_the_same_network_on_the_event_engine(images):
    """With the seed's Th_R = 0.1 every recomposed event is a spike: the IR model runs the same spikes on the
    event engine (float64, where the two sum the same values in different orders) and its report counts the same
    operations as the network's own."""
    x, _ = images
    net = active(CondensedNetwork(steps=3, seed=1, dtype="float64"))
    model = net.to_model()
    result = evsnn.simulate(model, x, steps=3, encoding="current", dtype="float64")
    with torch.no_grad():
        spikes, events, head = net.run(torch.as_tensor(x, dtype=torch.float64))
    assert set(np.unique(events.numpy())) <= {0.0, 1.0}
    np.testing.assert_array_equal(result.spike_counts["windows"], spikes.numpy().sum(axis=(1, 3, 4, 5)).T)
    np.testing.assert_array_equal(result.spike_counts["condensed"], events.numpy().sum(axis=2).T)
    for name in ("conv1", "fc1"):
        np.testing.assert_array_equal(result.spike_counts[name], head[name].numpy().sum(axis=2).T)
    ours, theirs = net.energy_report(x), evsnn.energy_report(result, model)
    assert {(s.item, s.op): s.per_sample.tolist() for s in ours.snn if s.per_sample.any()} == \
        {(s.item, s.op): s.per_sample.tolist() for s in theirs.snn if s.per_sample.any()}
    assert result.spike_counts["condensed"].sum() > 0 and result.spike_counts["fc1"].sum() > 0


def test_graded_events_are_refused_on_export():
    with pytest.raises(ConversionError, match=r"region_threshold=0\.5.*graded events.*below 0\.25"):
        CondensedNetwork(steps=2, region_threshold=0.5).to_model()


def test_training_is_seeded_and_moves_the_shared_weights(images):
    data = mnist_split()
    x, y = data.x_train[:64], data.y_train[:64]
    start = CondensedNetwork(steps=2, seed=3).windows.weights[0].detach().clone()
    a, losses = train_condensed(x, y, steps=2, epochs=1, batch_size=32, seed=3)
    b, _ = train_condensed(x, y, steps=2, epochs=1, batch_size=32, seed=3)
    assert len(a.windows.weights) == 1 and np.isfinite(losses).all()  # one kernel for the four windows
    assert not torch.equal(a.windows.weights[0], start)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_an_interrupted_training_resumes_from_its_checkpoint_to_the_same_weights(tmp_path, monkeypatch):
    data = mnist_split()
    x, y = data.x_train[:64], data.y_train[:64]
    settings = dict(steps=2, epochs=2, batch_size=32, seed=5)
    reference, want = train_condensed(x, y, **settings)
    forward, calls = CondensedNetwork.forward, {"n": 0}

    def counted(self, xb):
        calls["n"] += 1
        if calls["n"] == 3 and calls.get("die"):  # the first batch of the second epoch
            raise KeyboardInterrupt
        return forward(self, xb)

    path = tmp_path / "run.pt"
    monkeypatch.setattr(CondensedNetwork, "forward", counted)
    calls["die"] = True
    with pytest.raises(KeyboardInterrupt):
        train_condensed(x, y, checkpoint=str(path), **settings)
    calls.update(n=0, die=False)
    resumed, losses = train_condensed(x, y, checkpoint=str(path), **settings)
    assert calls["n"] == 2 and losses == want  # only the second epoch's two batches ran again
    for p, q in zip(resumed.parameters(), reference.parameters()):
        assert torch.equal(p, q)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"region_threshold must be in \(0, 1\]"):
        CondensedNetwork(steps=2, region_threshold=0)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        CondensedNetwork(steps=2)(torch.zeros(2, 1, 24, 24))
    with pytest.raises(ValueError, match="events must have shape"):
        CondensedNetwork(steps=2).head.run(events=torch.zeros(3, 1, 5))
