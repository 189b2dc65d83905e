"""The text of an energy report: quantities in readable units, the table ``evsnn report`` prints, the brief summary.

Every function here reads the plain data of :meth:`EnergyReport.to_dict`, so
that a report written as JSON can be printed again without the run.
"""

from __future__ import annotations

import math
from typing import Any

from ..display import table

__all__ = ["format_energy", "energy_unit", "format_brief", "format_report", "OP_LABELS", "UNITS"]

#: Names of the operation classes in text (singular).
OP_LABELS = {"sop": "SOP", "input_mac": "input MAC", "graded_mac": "graded MAC", "update_if": "IF update",
             "update_lif": "LIF update", "update_srm": "SRM update", "update_cuba_lif": "CubaLIF update",
             "update_li": "LI update", "update_cuba_li": "CubaLI update", "update_i": "I update",
             "update_threshold": "threshold update",
             "bias_add": "bias add", "ann_mac": "ANN MAC", "ann_bias_add": "ANN bias add"}
#: The classes of the events a run sends through synapses: named in the brief line, listed even when zero.
EVENT_OPS = ("sop", "input_mac", "graded_mac")


def format_energy(pj: float | None, *, unit: str | None = None) -> str:
    """Picojoules as a readable quantity, e.g. ``12.3 μJ`` (``unit`` forces pJ/nJ/μJ/mJ/J)."""
    if pj is None or not math.isfinite(pj):
        return "n/a"
    unit = unit or energy_unit(pj)
    return f"{pj / UNITS[unit]:.4g} {unit}"


UNITS = {"pJ": 1.0, "nJ": 1e3, "μJ": 1e6, "mJ": 1e9, "J": 1e12}


def energy_unit(pj: float) -> str:
    """The unit in which ``pj`` picojoules reads best."""
    for unit in ("J", "mJ", "μJ", "nJ"):
        if abs(pj) >= UNITS[unit]:
            return unit
    return "pJ"


def _pm(stats: dict[str, float], fmt: str = ",.0f") -> str:
    return f"{stats['mean']:{fmt}} ± {stats['std']:{fmt}}"


def _e_pm(stats: dict[str, float] | None, unit: str) -> str:
    if stats is None:
        return "unpriced"
    return f"{stats['mean'] / UNITS[unit]:.4g} ± {stats['std'] / UNITS[unit]:.2g} {unit}"


def format_brief(d: dict[str, Any]) -> str:
    """Short summary of a report dict (see :meth:`EnergyReport.brief`)."""
    snn, ann, r = d["snn"], d["ann"], d["ratios"]
    unit = energy_unit(snn["energy_pj"]["mean"])
    ops = ", ".join(f"{v['count']['mean']:,.0f} {OP_LABELS[op]}s" for op, v in snn["totals"].items()
                    if op in EVENT_OPS)
    lines = [f"energy ({d['preset']['name']}): SNN {_e_pm(snn['energy_pj'], unit)} per sample "
             f"({ops}; {d['steps']} steps, mean ± std over {d['samples']} samples)"]
    ann_e = ann["energy_pj"]
    if not ann["layers"]:
        lines.append(f"ANN: {ann['source']}")
    elif ann_e["dense"] is not None:
        eff = "" if ann_e["effective"] is None else f", effective {format_energy(ann_e['effective']['mean'])}"
        lines.append(f"ANN ({d['ann_preset']['name']}): {ann['dense_macs']:,} MACs, dense "
                     f"{format_energy(ann_e['dense'])}{eff} per sample")
        ratios = [f"{r['snn_over_ann_energy_dense']:.3g} (dense ANN)"]
        if r["snn_over_ann_energy_effective"] is not None:
            ratios.append(f"{r['snn_over_ann_energy_effective']:.3g} (effective ANN)")
        lines.append("SNN/ANN energy: " + ", ".join(ratios))
    else:
        lines.append(f"ANN: {ann['dense_macs']:,} MACs per sample (preset {d['ann_preset']['name']!r} gives no MAC "
                     "cost; pass ann_preset=... for an energy ratio)")
    if snn["unpriced"]:
        lines.append("unpriced (not in the energy): " + ", ".join(snn["unpriced"]))
    return "\n".join(lines)


def format_report(d: dict[str, Any]) -> str:
    """Text report of a report dict (see :meth:`EnergyReport.format`)."""
    st, pol, pre = d["settings"], d["policy"], d["preset"]
    snn, ann = d["snn"], d["ann"]
    unit = energy_unit(snn["energy_pj"]["mean"])
    enc = st.get("encoding", "?")
    enc_text = f"encoding={enc}" + (f" scale={st.get('scale', 1):g}" if enc == "current" else
                                    f" max_rate={st['max_rate']:g} Hz" if "max_rate" in st else "")
    lines = [
        f"evsnn energy report: {d['model']}  (evsnn {d['evsnn_version']})",
        f"run: engine={st.get('engine', '?')} steps={d['steps']} dt={st.get('dt', float('nan')):g} s {enc_text} "
        f"seed={st.get('seed')} dtype={st.get('dtype')} batch={st.get('batch_size')}, {d['samples']} samples"
        + (f" ({st['data']})" if "data" in st else ""),
        "counting policy:",
        *(f"  {k}: {v}" for k, v in pol.items()),
        f"preset: {pre['name']} ({pre['description']})" if pre["description"] else f"preset: {pre['name']}",
        f"  source: {pre['source']}",
    ]
    if pre["notes"]:
        lines.append(f"  notes: {pre['notes']}")
    if d["ann_preset"]["name"] != pre["name"]:
        lines.append(f"ANN preset: {d['ann_preset']['name']} ({d['ann_preset']['source']})")
    lines += ["", f"SNN per sample (mean ± std over {d['samples']} samples; {d['steps']} steps):"]
    rows = []
    for it in snn["items"]:
        if it["count"]["mean"] == 0 and it["count"]["std"] == 0 and it["op"] not in EVENT_OPS:
            continue
        cost = "unpriced" if it["cost_pj"] is None else f"{it['cost_pj']:g}"
        rows.append([it["item"], OP_LABELS[it["op"]], it["detail"], _pm(it["count"]), cost,
                     _e_pm(it["energy_pj"], unit)])
    for op, v in snn["totals"].items():
        cost = "unpriced" if v["cost_pj"] is None else f"{v['cost_pj']:g}"
        rows.append(["total", OP_LABELS[op], "", _pm(v["count"]), cost, _e_pm(v["energy_pj"], unit)])
    rows.append(["total", "energy", "", "", "", _e_pm(snn["energy_pj"], unit)])
    lines += table(["item", "op", "what", "operations", "pJ/op", "energy"], rows, right={3, 4, 5})
    if snn["unpriced"]:
        lines.append(f"  not in the energy total (preset {pre['name']!r} gives no cost): "
                     + ", ".join(snn["unpriced"]))
    lines += ["", f"ANN per sample: {ann['source']}"]
    lines += _ann_table(d) if ann["layers"] else []
    r = d["ratios"]

    def fr(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4g}"
    lines += [
        "",
        f"SNN/ANN energy: {fr(r['snn_over_ann_energy_dense'])} (dense ANN), "
        f"{fr(r['snn_over_ann_energy_effective'])} (effective ANN)   [ratio of means]",
        f"SOPs per ANN MAC: {fr(r['sops_per_ann_mac_dense'])} (dense), {fr(r['sops_per_ann_mac_effective'])} "
        "(effective)",
        "spikes per neuron per step: " + "  ".join(f"{k}: {v:.4f}" for k, v in d["spikes_per_neuron_per_step"].items()),
        "",
        "operations, energy and accuracy vs step (cumulative, mean per sample):",
    ]
    t = d["time"]
    header = ["step"] + (["accuracy"] if t["accuracy"] is not None else [])
    header += [f"{OP_LABELS[op]}s" for op in t["ops_cumulative"]] + ["energy", "SNN/ANN dense"]
    ann_dense = ann["energy_pj"]["dense"]
    rows = []
    for i, step in enumerate(t["checkpoints"]):
        row = [str(step)] + ([f"{100 * t['accuracy'][i]:.2f}%"] if t["accuracy"] is not None else [])
        row += [f"{v[i]:,.0f}" for v in t["ops_cumulative"].values()]
        energy = t["energy_pj_cumulative"][i]
        row += [format_energy(energy, unit=unit), "n/a" if not ann_dense else f"{energy / ann_dense:.3g}"]
        rows.append(row)
    lines += table(header, rows, right=set(range(len(header))))
    for w in d["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def _ann_table(d: dict[str, Any]) -> list[str]:
    """The ANN's layers, MACs and energy (lines of :func:`format_report`)."""
    ann = d["ann"]
    unit = energy_unit(d["snn"]["energy_pj"]["mean"])
    lines, rows = [], []
    ann_mac = d["ann_preset"]["costs_pj"]["ann_mac"]
    for a in ann["layers"]:
        eff = "n/a (no inputs)" if a["effective_macs"] is None else _pm(a["effective_macs"])
        rows.append([a["name"], a["detail"], f"{a['dense_macs']:,}", eff, f"{a['bias_adds']:,}"])
    eff_total = "n/a" if ann["effective_macs"] is None else _pm(ann["effective_macs"])
    rows.append(["total", "", f"{ann['dense_macs']:,}", eff_total, f"{sum(a['bias_adds'] for a in ann['layers']):,}"])
    lines += table(["layer", "what", "dense MACs", "effective MACs", "bias adds"], rows, right={2, 3, 4})
    e = ann["energy_pj"]
    if e["dense"] is None:
        lines.append(f"  ANN energy: unpriced (preset {d['ann_preset']['name']!r} gives no ann_mac cost)")
    else:
        eff = "" if e["effective"] is None else f", effective {_e_pm(e['effective'], unit)}"
        lines.append(f"  ANN energy ({ann_mac:g} pJ per MAC): dense {format_energy(e['dense'], unit=unit)}{eff}")
    return lines
