"""Output for people: tables, one-line operator descriptions, model summaries, and matplotlib for figures.

The one place for the formatting that model summaries, validation reports and
energy reports share, and for the one import of the optional plotting dependency.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DependencyError
from .ops import Conv2d, Operator

if TYPE_CHECKING:
    from .model import SpikingModel

__all__ = ["table", "describe_op", "summary", "provenance_lines", "require_matplotlib"]


def describe_op(op: Operator) -> str:
    """One line naming an operator, e.g. ``dense 784→1200`` or ``conv2d 1→12 5x5 stride=2``."""
    if isinstance(op, Conv2d):
        co, ci, kh, kw = op.weight.shape
        extra = "".join(f" {n}={v[0] if v[0] == v[1] else v}" for n, v, default in
                        (("stride", op.stride, (1, 1)), ("padding", op.padding, (0, 0))) if v != default)
        return f"conv2d {ci}→{co} {kh}x{kw}{extra}"
    return f"{op.kind} {op.n_in}→{op.n_out}"


def table(header: list[str], rows: list[list[str]], right: Collection[int] = ()) -> list[str]:
    """Lines of a text table: columns two spaces apart, those in ``right`` right-aligned, the others left."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return [fmt(header), *(fmt(r) for r in rows)]


def summary(m: SpikingModel) -> str:
    """:meth:`SpikingModel.summary`: layers, shapes, neurons, parameters, synapses and provenance."""
    syn = {pr.name: (pr.op.n_synapses(), pr.op.n_connections()) for pr in m.projections}
    total_syn = sum(s for s, _ in syn.values())
    inp = m.input
    enc = f"scale={inp.scale:g}" if inp.encoding == "current" else f"max_rate={inp.max_rate:g} Hz"
    lines = [
        f"SpikingModel: {len(m.populations)} populations, {m.n_neurons:,} neurons, "
        f"{len(m.projections)} projections, {total_syn:,} synapses, {m.n_params:,} parameters",
        f"dt={m.dt:g} s, readout={m.readout} of {m.output!r}",
        f"input: shape={inp.shape}, encoding={inp.encoding}, {enc}",
        "",
    ]
    lines += table(
        ["population", "shape", "neurons", "neuron", "bias"],
        [[p.name, str(p.shape), f"{p.size:,}", p.neuron.describe(), "-" if p.bias is None else "yes"]
         for p in m.populations],
    )
    lines.append("")
    lines += table(
        ["projection", "source → target", "op", "delay", "weights", "synapses", "connections"],
        [[pr.name, f"{pr.source} → {pr.target}", describe_op(pr.op), str(pr.delay), f"{pr.op.n_params:,}",
          f"{syn[pr.name][0]:,}", f"{syn[pr.name][1]:,}"] for pr in m.projections],
    )
    if m.provenance:
        lines += ["", "provenance:"]
        lines += provenance_lines(m.provenance, "  ")
    return "\n".join(lines)


def provenance_lines(prov: Mapping[str, Any], indent: str) -> list[str]:
    """Provenance as indented ``key: value`` lines (arrays by dtype and shape, long values cut)."""
    lines = []
    for key, value in prov.items():
        if isinstance(value, Mapping):
            lines.append(f"{indent}{key}:")
            lines += provenance_lines(value, indent + "  ")
        elif isinstance(value, np.ndarray):
            lines.append(f"{indent}{key}: array {value.dtype} {value.shape}")
        else:
            text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
            text = " ".join(text.split())  # one line, even for a multi-line repr
            lines.append(f"{indent}{key}: {text if len(text) <= 100 else text[:97] + '...'}")
    return lines


def require_matplotlib():
    """``matplotlib.pyplot`` with the Agg backend (files only, no display), or a DependencyError saying how to install it."""
    try:
        import matplotlib
    except ImportError as err:
        raise DependencyError('Plotting needs matplotlib; install it with pip install "evsnn[plot]".') from err
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
