"""The report figure (matplotlib, Agg backend): operations and accuracy vs step, energy per layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..display import require_matplotlib
from ..errors import EngineError
from .text import OP_LABELS, UNITS, energy_unit

__all__ = ["plot_report", "SUFFIXES"]

#: File types a figure can be written as.
SUFFIXES = (".png", ".pdf", ".svg")

_COLORS = {"sop": "#1f77b4", "input_mac": "#d62728", "update_if": "#2ca02c", "update_lif": "#2ca02c",
           "update_srm": "#2ca02c", "update_cuba_lif": "#2ca02c", "update_li": "#2ca02c", "update_cuba_li": "#2ca02c",
           "update_i": "#2ca02c", "update_threshold": "#2ca02c", "bias_add": "#9467bd"}


def plot_report(d: dict[str, Any], path: str | Path, *, dpi: int = 120) -> Path:
    """Draw a report dict (:meth:`EnergyReport.to_dict`) into ``path`` (``.png``, ``.pdf`` or ``.svg``).

    Left: accuracy after each step (when labels were given) and the
    cumulative synaptic operations per sample (SOPs plus analog-input MACs),
    with the ANN's dense and effective MACs as reference lines. Right:
    energy per sample of each projection and population, stacked by
    operation class (unpriced classes left out).
    """
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise EngineError(f"plot: the file name must end in .png, .pdf or .svg, got {path.name!r}.")
    plt = require_matplotlib()

    t = d["time"]
    steps = np.arange(1, d["steps"] + 1)
    items = d["snn"]["items"]
    synaptic = np.zeros(d["steps"])
    for it in items:
        if it["op"] in ("sop", "input_mac"):
            synaptic += np.asarray(it["count_per_step"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1.15, 1]})

    # --- left: operations and accuracy vs step ---
    ops_color = "#1f77b4"
    ax.plot(steps, np.cumsum(synaptic), color=ops_color, lw=2, label="SNN: SOPs + input MACs (cumulative)")
    ann = d["ann"]
    ax.axhline(ann["dense_macs"], color=ops_color, ls="--", lw=1, label=f"ANN dense MACs ({ann['dense_macs']:,.0f})")
    if ann["effective_macs"] is not None:
        eff = ann["effective_macs"]["mean"]
        ax.axhline(eff, color=ops_color, ls=":", lw=1, label=f"ANN effective MACs ({eff:,.0f})")
    from matplotlib.ticker import EngFormatter

    ax.yaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel("step")
    ax.set_ylabel("operations per sample", color=ops_color)
    ax.tick_params(axis="y", colors=ops_color)
    ax.set_xlim(1, d["steps"])
    ax.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    if t["accuracy_per_step"] is not None:
        acc = ax.twinx()
        acc.plot(steps, 100 * np.asarray(t["accuracy_per_step"]), color="#ff7f0e", lw=2, label="SNN accuracy")
        acc.set_ylabel("accuracy (%)", color="#ff7f0e")
        acc.tick_params(axis="y", colors="#ff7f0e")
        acc.set_ylim(0, 100)
        h2, l2 = acc.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    ax.set_title("operations and accuracy vs step", fontsize=10)

    # --- right: energy per layer, stacked by operation class ---
    names = list(dict.fromkeys(it["item"] for it in items))
    priced = [it for it in items if it["energy_pj"] is not None and it["count"]["mean"] > 0]
    total = max(sum(it["energy_pj"]["mean"] for it in priced), 1e-30)
    unit = energy_unit(total / max(len(names), 1))
    scale = UNITS[unit]
    left = np.zeros(len(names))
    y = np.arange(len(names))[::-1]
    for op in _COLORS:
        widths = np.zeros(len(names))
        for it in priced:
            if it["op"] == op:
                widths[names.index(it["item"])] += it["energy_pj"]["mean"] / scale
        if widths.any():
            bx.barh(y, widths, left=left, color=_COLORS[op], label=f"{OP_LABELS[op]}s", height=0.6)
            left += widths
    for yi, width in zip(y, left):  # the total of each bar, readable however small the bar
        bx.text(width, yi, f" {width:.3g}", va="center", ha="left", fontsize=8)
    bx.set_xlim(0, 1.15 * max(left.max(), 1e-30))
    bx.set_yticks(y)
    bx.set_yticklabels(names)
    bx.set_xlabel(f"energy per sample ({unit})")
    bx.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8, frameon=False)
    bx.set_title(f"energy per layer, preset {d['preset']['name']}", fontsize=10)
    if d["snn"]["unpriced"]:
        bx.text(0.99, 0.99, "unpriced: " + ", ".join(d["snn"]["unpriced"]), transform=bx.transAxes,
                ha="right", va="top", fontsize=7)

    st = d["settings"]
    fig.suptitle(f"{d['model']}: {st.get('engine')} engine, {d['steps']} steps, {st.get('encoding')} input, "
                 f"{d['samples']} samples, SOPs {d['policy'].get('SOPs', '').split(',')[0]}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
