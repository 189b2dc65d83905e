"""The NIR conformance table of docs/nir.md: every framework's NIR import and export against NIR's ODEs, in one run.

Frameworks that cannot share one environment's ``nir`` (sinabs 3.1.3 pins
``nir<=1.0.4``; SpikingJelly 2.0.0's NIR support needs ``nir>=1.0.7``) run in
their own virtual environments: pass each environment's interpreter with
``--python``; the checker runs in each (``python -m evsnn conformance
--framework all --json``, this repository on its ``PYTHONPATH``) and the
reports are merged into one table. Run from the repository root:

    python benchmarks/nir_conformance.py                                  # the frameworks installed here
    python benchmarks/nir_conformance.py --python .venv/bin/python --python venv-sinabs/bin/python \\
        --python venv-sj/bin/python                                       # the table of docs/nir.md

Environments as docs/nir.md ("Conformance with other frameworks") lists them.
Each case's weights and input are seeded (``--seed``) and the checker runs with ``PYTHONHASHSEED=0`` (one
framework's result depends on Python's string hashing): the same command gives the same table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from evsnn.nir_conformance import ConformanceReport, format_table

ROOT = Path(__file__).resolve().parent.parent


def reports_from(python: str, args: argparse.Namespace) -> tuple[list[ConformanceReport], list[str]]:
    cmd = [python, "-m", "evsnn", "conformance", "--framework", "all", "--json", "--dt", str(args.dt),
           "--steps", str(args.steps), "--seed", str(args.seed)] + (["--no-brian2"] if args.no_brian2 else [])
    # a fixed hash seed: Norse 1.1.0 runs a graph with a Scale node in an order that follows Python's string
    # hashing (with PYTHONHASHSEED=0 it fails on the shapes, with 3 it runs), so the table pins it
    env = {**os.environ, "PYTHONHASHSEED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode not in (0, 1) or not out.stdout.strip():
        raise SystemExit(f"{python}: evsnn conformance failed (status {out.returncode}):\n{out.stderr}")
    data = json.loads(out.stdout)
    return [ConformanceReport.from_dict(r) for r in data["reports"]], [f"{python}: {s}" for s in data["skipped"]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--python", action="append", default=None,
                   help="an interpreter whose environment has frameworks installed (repeatable; default: this one)")
    p.add_argument("--dt", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-brian2", action="store_true", help="skip the Brian2 run of every case (faster)")
    args = p.parse_args()
    reports: list[ConformanceReport] = []
    skipped: list[str] = []
    for python in args.python or [sys.executable]:
        got, missing = reports_from(python, args)
        taken = {r.framework for r in reports}
        reports += [r for r in got if r.framework not in taken]  # a framework in two environments: the first
        skipped += missing
    print(format_table(reports))
    print()
    for rep in reports:
        print(rep.to_markdown())
    found = {r.framework for r in reports}
    absent = [s for s in skipped if s.split(": ", 2)[1] not in found]
    if absent:
        print("not available in any environment given:", *absent, sep="\n  ")


if __name__ == "__main__":
    main()
