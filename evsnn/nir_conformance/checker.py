"""Run the reference suite through a framework's NIR import, and its own exports through evsnn, and report.

Both directions compare the framework's output with evsnn's event engine on
the identical input (float64), and record whether Brian2, the
continuous-time reference, agrees with the event engine on the same run.
"""

from __future__ import annotations

import importlib
import math
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..encoding import encode, encode_spikes
from ..errors import EvsnnError
from ..io.nir import _nir, from_nir, hard_reset
from ..model import SpikingModel
from ..simulation import simulate
from .adapter import EXPORT_CASES, Adapter
from .compare import Comparison, compare, explain, ode_update
from .suite import Case, reference_suite

__all__ = ["FRAMEWORKS", "adapter", "check", "CaseResult", "ConformanceReport", "format_table"]

#: framework name -> (module, adapter class)
FRAMEWORKS = {
    "snntorch": ("._snntorch", "SnntorchAdapter"),
    "norse": ("._norse", "NorseAdapter"),
    "sinabs": ("._sinabs", "SinabsAdapter"),
    "spikingjelly": ("._spikingjelly", "SpikingJellyAdapter"),
    "rockpool": ("._rockpool", "RockpoolAdapter"),
}


def adapter(name: str) -> Adapter:
    """The adapter of framework ``name`` (one of :data:`FRAMEWORKS`)."""
    if name not in FRAMEWORKS:
        raise EvsnnError(f"no NIR conformance adapter for {name!r}; known: {', '.join(sorted(FRAMEWORKS))}.")
    module, cls = FRAMEWORKS[name]
    return getattr(importlib.import_module(module, __package__), cls)()


@dataclass
class CaseResult:
    """One case in one direction: the framework against evsnn's event engine, and Brian2 against the event engine.

    ``status``: "identical", "diverges", "error" (the framework, or evsnn, raised: ``detail`` has it verbatim)
    or "not available" (the framework has no such module to export).
    """

    direction: str  # "import" | "export"
    case: str
    primitive: str
    input_kind: str
    status: str
    detail: str
    explanation: list[str] = field(default_factory=list)
    brian2: str = ""
    comparison: dict | None = None


@dataclass
class ConformanceReport:
    """Everything one framework's check found, with the versions it ran on."""

    framework: str
    versions: dict[str, str]
    dt: float
    steps: int
    seed: int
    results: list[CaseResult]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ConformanceReport":
        """The report :meth:`to_dict` gave (e.g. read back from ``evsnn conformance --json``)."""
        return cls(**{**d, "results": [CaseResult(**r) for r in d["results"]]})

    def to_markdown(self) -> str:
        """A table per direction: case, input, result, and the mapping that explains a divergence."""
        lines = [f"### {self.framework} {self.versions.get(self.framework, '')}",
                 "", f"dt = {self.dt:g} s, {self.steps} steps, seed {self.seed}; "
                 + ", ".join(f"{k} {v}" for k, v in self.versions.items() if k != self.framework), ""]
        for direction in ("import", "export"):
            rows = [r for r in self.results if r.direction == direction]
            if not rows:
                continue
            lines += [f"| {direction} | input | result | why (framework's update vs the ODE's) | Brian2 vs event |",
                      "| --- | --- | --- | --- | --- |"]
            for r in rows:
                why = "; ".join(r.explanation) if r.status != "identical" else ""
                lines.append(f"| {r.case} | {r.input_kind} | {_cell(r.status, r.detail)} | {_md(why)} | "
                             f"{_md(r.brian2)} |")
            lines.append("")
        return "\n".join(lines)


def _md(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _cell(status: str, detail: str) -> str:
    return _md(detail if status != "error" else f"error: {detail}")


def _error(err: BaseException) -> str:
    """The exception as the framework raised it, one line, with the innermost frame it came from."""
    frames = traceback.extract_tb(err.__traceback__)
    where = f" ({frames[-1].filename.rsplit('site-packages/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return f"{type(err).__name__}: {' '.join(str(err).split())[:300]}{where}"


def _run_evsnn(model: SpikingModel, x: np.ndarray, input_kind: str, engine: str) -> np.ndarray:
    """evsnn's output of every step, ``(steps, batch, *out_shape)``, float64, on ``x`` ``(steps, batch, *in)``."""
    steps, batch = x.shape[:2]
    if input_kind == "spike":
        encoded = encode_spikes(model, np.moveaxis(x, 0, 1))
    else:
        if not np.all(x == x[:1]):
            raise ValueError("analog input must be constant over the steps (held, as evsnn's 'current' encoding)")
        encoded = encode(model, x[0], steps=steps, encoding="current", scale=1.0)
    result = simulate(model, encoded, engine=engine, dtype="float64",
                      options={"brian2": {"codegen": "numpy"}})
    out_shape = next(p.shape for p in model.populations if p.name == model.output)
    return np.moveaxis(result.output.astype(np.float64), 0, 1).reshape(steps, batch, *out_shape)


def _kind(model: SpikingModel) -> str:
    return "membrane" if model.readout == "membrane" else "spikes"


def _references(model: SpikingModel, x: np.ndarray, input_kind: str, brian2: bool) -> tuple[np.ndarray, str]:
    """The event engine's output, and how Brian2 compares with it (or why it did not run)."""
    event = _run_evsnn(model, x, input_kind, "event")
    if not brian2:
        return event, "not run"
    try:
        b2 = _run_evsnn(model, x, input_kind, "brian2")
    except EvsnnError as err:
        return event, f"refused: {' '.join(str(err).split())}"
    return event, compare(event, b2, kind=_kind(model)).summary()


def _outcome(reference: np.ndarray, theirs: object, kind: str) -> tuple[str, str, Comparison | None]:
    theirs = np.asarray(theirs, dtype=np.float64)
    if theirs.shape != reference.shape:
        if theirs.size != reference.size:
            return "error", (f"the framework's output has shape {theirs.shape}, the graph's Output "
                             f"{reference.shape[2:]} per step and sample ({reference.shape})"), None
        theirs = theirs.reshape(reference.shape)  # the framework flattened (or unflattened) the output
    c = compare(reference, theirs, kind=kind)
    return ("identical" if c.identical else "diverges"), c.summary(), c


def _import_case(fw: Adapter, case: Case, dt: float, brian2: bool, explanations: dict) -> CaseResult:
    model = from_nir(case.graph, dt=dt)
    reference, b2 = _references(model, case.x, case.input_kind, brian2)
    row = CaseResult("import", case.name, case.primitive, case.input_kind, "", "", brian2=b2)
    try:
        theirs = fw.run_imported(case.graph, case.x, dt)
    except Exception as err:  # the framework's failure is the finding, reported verbatim
        row.status, row.detail = "error", _error(err)
    else:
        row.status, row.detail, c = _outcome(reference, theirs, _kind(model))
        row.comparison = asdict(c) if c else None
    if case.neuron_key is not None:
        if case.primitive not in explanations:
            node = case.graph.nodes[case.neuron_key]
            try:
                effective = fw.effective(case.graph, dt)
                explanations[case.primitive] = explain(effective, node, dt, hard_reset=hard_reset())
                measured = [v for k, v in asdict(effective).items() if k != "notes" and v is not None]
                if not measured and effective.notes:  # nothing to compare: the adapter says why
                    explanations[case.primitive] = effective.notes[:1]
            except NotImplementedError as err:
                explanations[case.primitive] = [f"update not measured: {err}"]
            except Exception as err:
                explanations[case.primitive] = [f"update not measured: {_error(err)}"]
        row.explanation = explanations[case.primitive]
    elif row.status == "diverges":
        if explanations.get("LIF"):  # the network cases are built of LIF neurons
            row.explanation = ["its LIF neurons, as in LIF above"]
    return row


def _export_case(fw: Adapter, name: str, dt: float, steps: int, batch: int, seed: int, brian2: bool) -> CaseResult:
    row = CaseResult("export", name, name, "spike", "", "")
    try:
        exported = fw.export(name, dt, seed)
    except NotImplementedError as err:
        row.status, row.detail = "not available", str(err)
        return row
    except Exception as err:
        row.status, row.detail = "error", "the framework's export: " + _error(err)
        return row
    row.case = f"{name}: {exported.description}"
    try:
        model = from_nir(exported.graph, dt=exported.dt)
    except EvsnnError as err:
        row.status, row.detail = "error", f"evsnn's import: {' '.join(str(err).split())}"
        return row
    rng = np.random.default_rng(seed)
    x = (rng.random((steps, batch, *model.input.shape)) < 0.3).astype(np.float64)
    reference, row.brian2 = _references(model, x, "spike", brian2)
    try:
        theirs = exported.run(x)
    except Exception as err:
        row.status, row.detail = "error", "the framework's run: " + _error(err)
        return row
    row.status, row.detail, c = _outcome(reference, theirs, _kind(model))
    row.comparison = asdict(c) if c else None
    if row.status == "diverges":
        row.explanation = _exported_neurons(exported.graph, exported.dt)
    return row


def _exported_neurons(graph: object, dt: float) -> list[str]:
    """What the export wrote for each kind of neuron (its first node), and the per-step decay its ODE gives."""
    seen, out = set(), []
    for key, node in graph.nodes.items():
        name = type(node).__name__
        if name in seen or name not in ("IF", "LIF", "CubaLIF", "LI", "CubaLI", "I"):
            continue
        seen.add(name)
        params = []
        for field in ("tau", "tau_mem", "tau_syn", "r", "v_threshold", "v_reset", "w_in"):
            if getattr(node, field, None) is not None:
                values = np.unique(np.asarray(getattr(node, field), dtype=np.float64))
                params.append(f"{field} = " + (f"{values[0]:.4g}" if values.size == 1
                                               else f"{values.min():.4g} to {values.max():.4g}"))
        exact = ode_update(node, dt, hard_reset=hard_reset())
        out.append(f"the export writes {name} '{key}' with {', '.join(params)}: over its dt = {dt:g} s the ODE "
                   f"decays by β = {exact.beta:.4g} per step")
    return out


def check(framework: str | Adapter, *, dt: float = 1e-3, steps: int = 50, batch: int = 4, seed: int = 0, brian2: bool = True,
          directions: Iterable[str] = ("import", "export"),
          only: Callable[[Case], bool] | None = None) -> ConformanceReport:
    """Check ``framework``'s NIR import and export against evsnn's event engine (and Brian2).

    Parameters
    ----------
    framework : str or Adapter
        One of :data:`FRAMEWORKS` (it must be installed), or an adapter of your own simulator.
    dt : float, seconds
        The step evsnn integrates the graphs over and the adapters pass to the framework's import.
    steps, batch, seed
        Length, number of samples and seed of the inputs (and of the reference graphs' weights).
    brian2 : bool
        Also run Brian2 on every case and report whether it equals the event engine.
    only : callable, optional
        Selects reference cases (``lambda case: case.primitive == "LIF"``).

    Raises
    ------
    EvsnnError
        An unknown framework, or one that is not installed (the reason says which import failed).
    """
    fw = framework if isinstance(framework, Adapter) else adapter(framework)
    missing = fw.missing()
    if missing:
        raise EvsnnError(f"conformance: framework {fw.name!r} is not available: {missing}")
    directions = tuple(directions)
    results: list[CaseResult] = []
    if "import" in directions:
        explanations: dict[str, list[str]] = {}
        for case in reference_suite(dt, steps=steps, batch=batch, seed=seed, only=only):
            results.append(_import_case(fw, case, dt, brian2, explanations))
    if "export" in directions:
        for name in EXPORT_CASES:
            results.append(_export_case(fw, name, dt, steps, batch, seed, brian2))
    from .. import __version__

    versions = {fw.name: fw.version(), "nir": _version("nir"), "evsnn": __version__, "torch": _version("torch")}
    if brian2:
        versions["brian2"] = _version("brian2")
    return ConformanceReport(fw.name, versions, dt, steps, seed, results)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def format_table(reports: list[ConformanceReport]) -> str:
    """One summary table: a row per case and direction, a column per framework (its version in the header)."""
    keys: list[tuple[str, str]] = []
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for rep in reports:
        for r in rep.results:
            key = (r.direction, r.primitive if r.direction == "export" else r.case)
            if key not in cells:
                keys.append(key)
                cells[key] = {}
            cells[key][rep.framework] = _short(r)
    head = [f"{rep.framework} {rep.versions.get(rep.framework, '')} (nir {rep.versions.get('nir', '?')})"
            for rep in reports]
    lines = ["| direction | case | " + " | ".join(head) + " |", "| --- | --- |" + " --- |" * len(reports)]
    for key in keys:
        lines.append(f"| {key[0]} | {key[1]} | "
                     + " | ".join(cells[key].get(rep.framework, "") for rep in reports) + " |")
    return "\n".join(lines)


def _short(r: CaseResult) -> str:
    if r.status == "identical":
        return "identical"
    if r.status == "not available":
        return "—"
    if r.status == "error":  # the message without the frame it came from
        return _md("error: " + re.sub(r" \([^()]*\.py:\d+\)$", "", r.detail))[:110]
    c = r.comparison or {}
    if c.get("kind") == "membrane":
        return f"differs from step {c['first_divergent_step']} (max Δv {c['max_abs_difference']:.3g})"
    corr = c.get("count_correlation")
    corr_text = "n/a" if corr is None or (isinstance(corr, float) and math.isnan(corr)) else f"{corr:.2f}"
    values = f", values in [{c['not_binary'][0]:.3g}, {c['not_binary'][1]:.3g}]" if c.get("not_binary") else ""
    return (f"differs from step {c.get('first_divergent_step')}: {100 * c.get('agreement', 0):.0f} % agree, "
            f"r = {corr_text}{values}")

