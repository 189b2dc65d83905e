"""Conversion sweeps: leak × reset × method, with threshold and α chosen on held-out training images.

The grid is that of Allred & Roy (L4-norm adjustment, seed 000): five leak
factors per step (1.0 = no leak, then faster leaks) × soft (``subtract``) or
hard (``zero``) reset × ``baseline`` or ``l4`` conversion. In every cell the
threshold (a scale of the balanced threshold 1 of a normalized model) and,
for ``l4``, the smoothing ratio α are chosen by accuracy on *selection*
images, which must come from the training split, at the last step; ties
(common when held-out accuracy saturates) go to the higher accuracy averaged
over all steps, i.e. to the faster-converging configuration, and then to the
first in grid order. The evaluation images are only used, once per cell, to
report the chosen configuration.

Every simulation is appended to a JSON Lines log as soon as it finishes, so a
sweep that is interrupted resumes where it stopped: rerunning it skips every
run already in the log. All runs of one sweep share the same encoded input
(same Poisson spikes), so differences between cells are not sampling noise of
the encoder. With a Dask client the runs are tasks on its workers, and the
log is still written here, by the calling process, as their results arrive
(docs/scaling.md).
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .display import require_matplotlib
from .encoding import EncodedInput, encode_with
from .errors import EvsnnWarning, InputError
from .model import RESETS, NeuronSpec, SpikingModel  # RESETS: soft and hard, the sweep's default
from .settings import run_settings
from .simulation import simulate

__all__ = ["sweep", "SweepResult", "CHOICE", "METHODS", "LEAKS", "RESETS", "THRESHOLDS", "ALPHAS", "plot_sweep"]

#: Conversion methods compared in each cell.
METHODS = ("baseline", "l4")
#: Default leak factors per step (1.0: IF, no leak).
LEAKS = (1.0, 0.99, 0.98, 0.95, 0.9)
#: Default threshold scales tried in every cell.
THRESHOLDS = (0.4, 0.6, 0.8, 1.0, 1.2)
#: Default L4 smoothing ratios tried in every ``l4`` cell.
ALPHAS = (0.5, 1.0, 2.0, 4.0)

#: How each cell's threshold and α are chosen on the selection images (recorded in the settings).
CHOICE = "accuracy at the last step; ties: accuracy averaged over steps, then grid order"

#: How often a Dask task of a sweep that raised is tried again (a task whose worker was lost is rerun anyway).
RETRIES = 2

_KEY = ("kind", "leak", "reset", "method", "threshold", "alpha")


@dataclass(frozen=True)
class SweepResult:
    """All runs of a sweep and the configuration chosen in each cell.

    Attributes
    ----------
    settings : dict
        What the sweep ran with (steps, encoding, normalization, image ranges, seed, grid).
    runs : list of dict
        One record per simulation: ``kind`` (``"select"`` or ``"eval"``), ``leak``,
        ``reset``, ``method``, ``threshold``, ``alpha`` (None for baseline),
        ``accuracy`` (at the last step), ``mean_accuracy`` (averaged over all steps),
        ``sops_per_sample``, ``samples``.
    """

    settings: dict[str, Any]
    runs: list[dict[str, Any]]

    def best(self) -> list[dict[str, Any]]:
        """Per cell (leak, reset, method): the chosen selection run and, if evaluated, its evaluation run."""
        out = []
        for leak in self.settings["leaks"]:
            for reset in self.settings["resets"]:
                for method in self.settings["methods"]:
                    chosen = _choose(self.runs, leak, reset, method)
                    if chosen is None:
                        continue
                    ev = _find(self.runs, ("eval", leak, reset, method, chosen["threshold"], chosen["alpha"]))
                    out.append({"leak": leak, "reset": reset, "method": method, "threshold": chosen["threshold"],
                                "alpha": chosen["alpha"], "select_accuracy": chosen["accuracy"],
                                "select_mean_accuracy": chosen["mean_accuracy"],
                                "eval_accuracy": None if ev is None else ev["accuracy"],
                                "eval_mean_accuracy": None if ev is None else ev["mean_accuracy"],
                                "eval_sops_per_sample": None if ev is None else ev["sops_per_sample"]})
        return out

    def table(self) -> str:
        """Text table: the chosen configuration of every cell, baseline and L4 next to each other.

        ``(mean)`` columns: accuracy averaged over all steps (how fast it converges).
        """
        head = (f"{'leak':>5}  {'reset':<9} {'method':<9} {'θ':>5} {'α':>5} {'select %':>9} {'(mean)':>7}"
                f" {'eval %':>7} {'(mean)':>7} {'eval SOPs/sample':>17}")
        lines = [head, "-" * len(head)]
        for b in self.best():
            alpha = "-" if b["alpha"] is None else f"{b['alpha']:g}"
            ev = "-" if b["eval_accuracy"] is None else f"{100 * b['eval_accuracy']:.2f}"
            ev_mean = "-" if b["eval_mean_accuracy"] is None else f"{100 * b['eval_mean_accuracy']:.2f}"
            sops = "-" if b["eval_sops_per_sample"] is None else f"{b['eval_sops_per_sample']:,.0f}"
            lines.append(f"{b['leak']:>5g}  {b['reset']:<9} {b['method']:<9} {b['threshold']:>5g} {alpha:>5} "
                         f"{100 * b['select_accuracy']:>9.2f} {100 * b['select_mean_accuracy']:>7.2f} {ev:>7} "
                         f"{ev_mean:>7} {sops:>17}")
        return "\n".join(lines)

    def to_csv(self) -> str:
        """Every run as CSV."""
        buf = io.StringIO()
        fields = ["kind", "leak", "reset", "method", "threshold", "alpha", "accuracy", "mean_accuracy",
                  "sops_per_sample", "samples"]
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.runs)
        return buf.getvalue()

    def to_json(self) -> dict[str, Any]:
        """Settings, the chosen configuration per cell, and every run."""
        return {"settings": self.settings, "best": self.best(), "runs": self.runs}


def sweep(
    base: SpikingModel,
    *,
    x_select: np.ndarray,
    y_select: np.ndarray,
    log: str | os.PathLike,
    calibration: np.ndarray | None = None,
    x_eval: np.ndarray | None = None,
    y_eval: np.ndarray | None = None,
    leaks: Sequence[float] = LEAKS,
    resets: Sequence[str] = RESETS,
    methods: Sequence[str] = METHODS,
    thresholds: Sequence[float] = THRESHOLDS,
    alphas: Sequence[float] = ALPHAS,
    l4_batch: int = 128,
    describe: dict[str, Any] | None = None,
    client: Any = None,
    **settings: Any,
) -> SweepResult:
    """Run the leak × reset × method grid on a normalized model, resumably.

    Parameters
    ----------
    base : SpikingModel
        The converted, normalized model (threshold 1 is its balanced threshold),
        e.g. ``evsnn.convert(net, norm="data", calibration=...)``.
    x_select, y_select : arrays
        Held-out *training* images and labels on which threshold and α are chosen.
    log : path
        JSON Lines file the runs are appended to; if it exists, its runs are
        reused (it must have been written with the same settings).
    calibration : array, optional
        Training images for the L4 adjustment's mean pre-activations (the first
        ``l4_batch``); required when ``methods`` contains ``"l4"``.
    x_eval, y_eval : arrays, optional
        Evaluation images: each cell's chosen configuration is run on them once.
    leaks, resets, methods, thresholds, alphas : sequences
        The grid (see the module constants for the defaults).
    describe : dict, optional
        Extra settings to record (and check on resume), e.g. the source network and image ranges.
    client : distributed.Client, optional
        Run the configurations as Dask tasks (the model and inputs sent to the
        cluster once). The log is written by this process only, as results
        arrive, so a lost worker costs only its running tasks, which are run
        again; the result is identical to a serial sweep's (docs/scaling.md).
    **settings
        The run settings (:class:`evsnn.settings.RunSettings`), the same for
        every run: ``steps`` (required), ``encoding``, ``seed``, ``max_rate``,
        ``scale`` (default: the model's), ``dtype``, ``batch_size``,
        ``options``, and ``progress`` (a bar over runs).

    Returns
    -------
    SweepResult
    """
    rs = run_settings("sweep", settings)
    leaks, resets, methods = [float(v) for v in leaks], list(resets), list(methods)
    thresholds, alphas = [float(v) for v in thresholds], [float(v) for v in alphas]
    _check_grid(leaks, resets, methods, thresholds, alphas)
    if "l4" in methods and calibration is None:
        raise InputError("sweep: methods include 'l4', which needs calibration images (training images).")
    if (x_eval is None) != (y_eval is None):
        raise InputError("sweep: x_eval and y_eval must be given together.")
    select = encode_with(base, x_select, rs)
    evaluate = None if x_eval is None else encode_with(base, x_eval, rs)
    settings = {**rs.record(select), "select_samples": int(len(x_select)),
                "eval_samples": 0 if x_eval is None else int(len(x_eval)), "leaks": leaks, "resets": resets,
                "methods": methods, "thresholds": thresholds, "alphas": alphas, "l4_batch": int(l4_batch),
                "normalization": base.provenance.get("normalization", "unknown"), "choice": CHOICE,
                **(describe or {})}
    done = {tuple(r[k] for k in _KEY): r for r in _read_log(Path(log), settings)}
    order = _grid_order(settings)
    inputs = {"select": (select, np.asarray(y_select)),
              "eval": None if evaluate is None else (evaluate, np.asarray(y_eval))}
    shared = {"calibration": None if calibration is None else np.asarray(calibration[:l4_batch]),
              "run": {"dtype": rs.dtype, "batch_size": rs.batch_size, "threads": rs.threads,
                      "options": {name: dict(opts) for name, opts in rs.options.items()}}}
    cells = [(leak, reset, method) for leak in leaks for reset in resets for method in methods]

    def selections(cell: tuple) -> list[tuple]:
        """The selection runs of a cell, in grid order."""
        return [("select", *cell, threshold, alpha) for threshold in thresholds
                for alpha in (alphas if cell[2] == "l4" else [None])]

    def evaluation(cell: tuple) -> tuple | None:
        """The evaluation run of a cell (its chosen configuration), once all its selection runs are done."""
        if evaluate is None or any(key not in done for key in selections(cell)):
            return None
        chosen = _choose([done[key] for key in selections(cell)], *cell)
        return ("eval", *cell, chosen["threshold"], chosen["alpha"])

    def finished(record: dict) -> None:
        _append(Path(log), record)  # only this process writes the log, as each run arrives
        done[tuple(record[k] for k in _KEY)] = record

    total = sum(len(selections(cell)) for cell in cells) + (0 if evaluate is None else len(cells))
    with tqdm(total=total, desc="sweep", unit="run", disable=not rs.progress, leave=False) as bar:
        if client is None:
            def run(key: tuple) -> None:
                if key not in done:
                    finished(_run_configuration(base, key, *inputs[key[0]], **shared))
                bar.update()

            for cell in cells:
                for key in selections(cell):
                    run(key)
                if evaluate is not None:
                    run(evaluation(cell))  # chosen now that the cell's selection runs are in
        else:
            _run_on_dask(client, base, cells, selections, evaluation, inputs, shared, done, finished, bar)
    return SweepResult(settings, sorted(done.values(), key=order))


def _run_configuration(base: SpikingModel, key: tuple, encoded: EncodedInput, labels: np.ndarray, *,
                       calibration: np.ndarray | None, run: dict[str, Any]) -> dict[str, Any]:
    """The log record of one run of the grid: ``key`` is (kind, leak, reset, method, threshold, alpha).

    A module function of plain arguments, so that a Dask worker runs exactly what a serial sweep runs.
    """
    from .converters.l4 import l4_adjust

    _, leak, reset, method, threshold, alpha = key
    model = base.with_neuron(NeuronSpec(kind="if" if leak == 1.0 else "lif", beta=leak, threshold=threshold,
                                        reset=reset))
    if method == "l4":
        model = l4_adjust(model, calibration, alpha=alpha)[0]
    result = simulate(model, encoded, **run)
    curve = result.accuracy_over_time(labels)
    return dict(zip(_KEY, key), accuracy=float(curve[-1]), mean_accuracy=float(curve.mean()),
                sops_per_sample=float(result.total_sops().mean()), samples=int(len(labels)))


def _run_on_dask(client: Any, base: SpikingModel, cells: list[tuple], selections: Callable, evaluation: Callable,
                 inputs: dict, shared: dict, done: dict, finished: Callable, bar: Any) -> None:
    """The sweep's runs not yet in the log as Dask tasks; each record is logged here (never by a worker) as it
    arrives, and a cell's evaluation is submitted once its selection runs are all in.

    The model and the encoded inputs are sent once (:func:`evsnn.cluster.ship`). A task that raises is retried
    (:data:`RETRIES`); a task whose worker is lost is run again on another one by the scheduler. If a task still
    fails, the other tasks are cancelled and its error is raised; every run that finished is in the log.
    """
    from .cluster import check_client, ship

    check_client(client, "sweep")
    from distributed import as_completed

    data = {"base": base, "calibration": shared["calibration"]}
    for kind, pair in inputs.items():
        if pair is not None:
            data[kind], data[f"{kind} labels"] = pair
    shipped = {name: ship(client, value) for name, value in data.items()}  # once, not per task
    futures: dict[Any, tuple] = {}

    def submit(key: tuple):
        kind = key[0]
        future = client.submit(_run_configuration, shipped["base"], key, shipped[kind], shipped[f"{kind} labels"],
                               calibration=shipped["calibration"], run={**shared["run"], "threads": 1},  # one per
                               pure=False, retries=RETRIES)  # task: a worker runs one task per thread
        futures[future] = key
        return future

    keys = [key for cell in cells for key in [*selections(cell), evaluation(cell)] if key is not None]
    bar.update(sum(key in done for key in keys))
    pending = as_completed([submit(key) for key in keys if key not in done])
    try:
        for future in pending:
            record = future.result()  # a task that failed for good raises here
            finished(record)
            bar.update()
            key = evaluation(futures.pop(future)[1:4])
            if record["kind"] == "select" and key is not None and key not in done:
                pending.add(submit(key))
    finally:
        client.cancel(list(futures) + list(shipped.values()))


def plot_sweep(result: SweepResult, path: str | os.PathLike) -> None:
    """Bar chart of the chosen configuration's accuracy per cell: one panel per reset, baseline vs L4 per leak.

    Uses the evaluation accuracy where the sweep was evaluated, else the selection accuracy.
    Needs matplotlib (``pip install "evsnn[plot]"``).
    """
    plt = require_matplotlib()
    best = result.best()
    evaluated = all(b["eval_accuracy"] is not None for b in best)
    key = "eval_accuracy" if evaluated else "select_accuracy"
    resets, leaks, methods = result.settings["resets"], result.settings["leaks"], result.settings["methods"]
    fig, axes = plt.subplots(1, len(resets), figsize=(5 * len(resets), 3.6), sharey=True, squeeze=False)
    width = 0.8 / len(methods)
    values = [100 * b[key] for b in best]
    low = max(0.0, min(values) - 5) if values else 0.0
    for ax, reset in zip(axes[0], resets):
        for k, method in enumerate(methods):
            acc = [next((100 * b[key] for b in best if (b["leak"], b["reset"], b["method"]) == (leak, reset, method)),
                        np.nan) for leak in leaks]
            ax.bar(np.arange(len(leaks)) + (k - (len(methods) - 1) / 2) * width, acc, width, label=method)
        ax.set_xticks(np.arange(len(leaks)), [f"{v:g}" for v in leaks])
        ax.set_xlabel("leak factor per step (1 = no leak)")
        ax.set_title(f"{reset} reset")
        ax.set_ylim(low, 100)
    axes[0][0].set_ylabel(f"{'evaluation' if evaluated else 'selection'} accuracy (%)")
    axes[0][-1].legend(loc="lower left")
    s = result.settings
    fig.suptitle(f"{s['steps']} steps, {s['encoding']} input; threshold{' and α' if 'l4' in methods else ''} "
                 "chosen per cell on training images", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- helpers ------------------------------------------------------------------------------
def _check_grid(leaks, resets, methods, thresholds, alphas) -> None:
    def fail(name: str, need: str, got) -> None:
        raise InputError(f"sweep: {name} must be {need}, got {got!r}.")

    if not leaks or any(not 0 < v <= 1 for v in leaks):
        fail("leaks", "a non-empty list of leak factors in (0, 1]", leaks)
    if not resets or any(r not in RESETS for r in resets):
        fail("resets", f"a non-empty list of {RESETS}", resets)
    if not methods or any(m not in METHODS for m in methods):
        fail("methods", f"a non-empty list of {METHODS}", methods)
    if not thresholds or any(not 0 < v < np.inf for v in thresholds):
        fail("thresholds", "a non-empty list of positive numbers", thresholds)
    if "l4" in methods and (not alphas or any(not 0 <= v < np.inf for v in alphas)):
        fail("alphas", "a non-empty list of numbers >= 0", alphas)


def _choose(runs: list[dict], leak: float, reset: str, method: str) -> dict | None:
    """The selection run of a cell chosen by :data:`CHOICE` (``max`` keeps the first of equal keys)."""
    cell = [r for r in runs if r["kind"] == "select" and (r["leak"], r["reset"], r["method"]) == (leak, reset, method)]
    return max(cell, key=lambda r: (r["accuracy"], r["mean_accuracy"])) if cell else None


def _grid_order(settings: dict) -> Callable[[dict], tuple]:
    """Sort key of a run: its cell in grid order, the selection runs (threshold, then α) before the evaluation.

    The order a serial sweep runs them in; a sweep's runs are returned in it whatever order they finished in.
    """
    cells = {(leak, reset, method): i for i, (leak, reset, method) in enumerate(
        (leak, reset, method) for leak in settings["leaks"] for reset in settings["resets"]
        for method in settings["methods"])}
    thresholds = {v: i for i, v in enumerate(settings["thresholds"])}
    alphas = {v: i for i, v in enumerate(settings["alphas"])}
    return lambda r: (cells[r["leak"], r["reset"], r["method"]], r["kind"] == "eval", thresholds[r["threshold"]],
                      -1 if r["alpha"] is None else alphas[r["alpha"]])


def _find(runs: list[dict], key: tuple) -> dict | None:
    return next((r for r in runs if tuple(r[k] for k in _KEY) == key), None)


def _read_log(path: Path, settings: dict) -> list[dict]:
    """Runs already in the log; writes the settings line when the log is new.

    A last line cut short by an interruption is dropped (that run is repeated);
    any other damage is an error, so a log is never silently rewritten.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _append(path, {"settings": settings})
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        warnings.warn(f"sweep: dropping the unfinished last line of {path} (an interrupted write); that run is "
                      "repeated.", EvsnnWarning, stacklevel=3)
        with path.open("rb+") as f:
            f.truncate(keep)
        data = data[:keep]
    lines = data.decode().splitlines()
    try:
        first = json.loads(lines[0])["settings"]
    except (IndexError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(f"sweep: {path} is not a sweep log (its first line must hold the settings).") from err
    expected = json.loads(json.dumps(settings))
    if first != expected:
        diff = sorted(k for k in set(first) | set(expected) if first.get(k) != expected.get(k))
        raise InputError(f"sweep: {path} was written by a sweep with other settings ({', '.join(diff)} differ). "
                         "Resume with the same settings, or write to a new log.")
    runs = []
    for n, line in enumerate(lines[1:], start=2):
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            raise InputError(f"sweep: {path} line {n} is not valid JSON; the log is damaged.") from None
    return runs


def _append(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
