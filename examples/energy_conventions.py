"""One spiking run, counted by the formulas of evsnn, snntoolbox, sinabs, syops, SpikingJelly and NeuroBench.

Run from the repository root:  python examples/energy_conventions.py

The demo's MLP (784-1200-1200-10, bias-free, trained with the demo's recipe,
data-based normalization) runs on the event engine with analog (current)
input for 100 steps on the 2,000 evaluation images. Its spike counts are then
counted with each tool's formula, as read from the tool's source (paths and
commits in docs/energy.md). These are the formulas applied to evsnn's
spikes, not the tools run themselves; a dense MLP is used because there
every formula is unambiguous (convolutions add border and stride
differences, see docs/energy.md). "per step" assumes the image is fed to the
first layer at every step, as in a multi-step SpikingJelly/snnTorch model.
Per sample, mean over the 2,000 images.
"""

from __future__ import annotations

import argparse

import numpy as np

import evsnn
from evsnn.training import train_diehl
from evsnn.energy import energy_report
from evsnn.io.datasets import mnist_split

STEPS = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 epoch, 100 images")
    quick = parser.parse_args().quick
    data = mnist_split()
    net, _ = train_diehl("mlp", data.x_train, data.y_train, seed=0, epochs=1 if quick else None)
    model = evsnn.convert(net, input_shape=(1, 28, 28), norm="data", calibration=data.x_train)
    x, y = (data.x_test[:100], data.y_test[:100]) if quick else (data.x_test, data.y_test)
    result = evsnn.simulate(model, x, steps=STEPS)
    report = energy_report(result, model, x=x, labels=y, ann=net)

    sizes = [pr.op.n_in for pr in model.projections] + [model.populations[-1].size]  # 784, 1200, 1200, 10
    fc = [pr.op for pr in model.projections]
    spikes = {p.name: result.spike_counts[p.name].sum(axis=1).mean() for p in model.populations}
    s1, s2 = spikes["fc1"], spikes["fc2"]
    pixels = x.reshape(len(x), -1)
    nonzero_px = np.count_nonzero(pixels, axis=1).mean()
    pixel_sum = pixels.sum(axis=1).mean()
    neurons = model.n_neurons
    dense_ann = sum(op.n_in * op.n_out for op in fc)
    n_relu = sizes[1] + sizes[2]  # the ANN's two ReLU layers
    nz = [int(np.count_nonzero(op.weight)) for op in fc]
    nz_fan = [np.count_nonzero(op.weight, axis=0) for op in fc]  # non-zero synapses per source neuron
    # With no zero weight, "non-zero input and non-zero weight" (NeuroBench) = "non-zero input" (evsnn's ANN).
    all_nonzero = all(n == op.n_in * op.n_out for n, op in zip(nz, fc))

    d = report.to_dict()
    evsnn_syn = d["snn"]["totals"]["sop"]["count"]["mean"]
    evsnn_first = d["snn"]["totals"]["input_mac"]["count"]["mean"]
    evsnn_ann_eff = d["ann"]["effective_macs"]["mean"]
    syn_nominal = s1 * sizes[2] + s2 * sizes[3]  # every spike x the next layer's width (zero weights included)
    first_eff = (pixels != 0) @ nz_fan[0]  # non-zero pixels x their non-zero weights
    rows = [
        # tool, synaptic ops of spikes, first (analog) layer, neuron ops, ANN ops
        ("evsnn (default)", f"{evsnn_syn:,.0f} SOPs", f"{evsnn_first:,.0f} MACs (per step)",
         f"{neurons * STEPS:,} adds", f"{dense_ann:,} MACs dense, {evsnn_ann_eff:,.0f} effective"),
        ("snntoolbox", f"{syn_nominal:,.0f}", f"{2 * sizes[0] * sizes[1]:,} (once, x2)",
         "0 (bias neurons only)", f"{2 * dense_ann:,} (x2)"),
        ("sinabs", f"{syn_nominal:,.0f} synops", f"{pixel_sum * sizes[1] * STEPS:,.0f} synops (Σ pixel x fan-out)",
         "not counted", "not counted"),
        ("syops", f"{syn_nominal:,.0f} ACs", f"{sizes[0] * sizes[1] * STEPS:,} MACs (dense, per step)",
         f"{neurons * STEPS:,} ACs", f"{dense_ann + n_relu:,} MACs (ReLU outputs as MACs)"),
        ("SpikingJelly op_counter", f"{syn_nominal:,.0f} SynOps", f"{sizes[0] * sizes[1] * STEPS:,} MACs (dense, per step)",
         "the adds its neuron code runs", f"{dense_ann:,} MACs"),
        ("NeuroBench", f"{evsnn_syn:,.0f} effective ACs", f"{first_eff.mean() * STEPS:,.0f} effective MACs (per step)",
         f"{4 * neurons * STEPS:,} dense (4 per Leaky update)",
         f"{dense_ann:,} dense, " + (f"{evsnn_ann_eff:,.0f} effective" if all_nonzero else "n/a")),
    ]
    print(__doc__.split("\n\n")[0])
    print(f"\nrun: {len(x)} images, {STEPS} steps, analog input; mean spikes per sample: fc1 {s1:,.0f}, fc2 {s2:,.0f}, "
          f"fc3 {spikes['fc3']:,.0f}; non-zero pixels {nonzero_px:.1f} of 784; accuracy {result.accuracy(y):.2%}")
    widths = [max(len(r[i]) for r in rows + [("tool", "synaptic ops of spikes", "first (analog) layer",
                                                "neuron ops", "ANN ops")]) for i in range(5)]
    header = ("tool", "synaptic ops of spikes", "first (analog) layer", "neuron ops", "ANN ops")
    for r in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print("\nsyops and SpikingJelly price an AC at 0.9 pJ and a MAC at 4.6 pJ (45 nm); evsnn's report of the same run:")
    print(report.brief())


if __name__ == "__main__":
    main()
