"""Fuzz the evsnn model reader: mutate a saved model, load every mutant in worker subprocesses.

Counts outcomes (refused with FormatError, by kind; loaded identical; loaded
different; other exceptions; crashes; hangs) and, for each crafted hostile file
(tests/hostile.py), the time and peak memory of one load in a fresh process.

    python benchmarks/hdf5_fuzz.py --mutations 20000 --seed 0 --jobs 2
    python benchmarks/hdf5_fuzz.py --mutations 2000 --restamped   # body mutated, digest re-stamped
    python benchmarks/hdf5_fuzz.py --model nir-neurons --restamped --no-crafted   # population encoding 1.1.0

``--restamped`` exercises the parser behind a valid digest (what a hostile
sender can produce); there, a "different" load is a valid file with other values.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402

import evsnn  # noqa: E402
from factories import make_everything, make_nir_neurons  # noqa: E402
from hostile import CRAFTED, craft, fuzz, mutations  # noqa: E402

#: Models to fuzz; the crafted cases edit paths of "everything".
MODELS = {"everything": make_everything, "nir-neurons": make_nir_neurons}

_MEASURE = """
import resource, sys, time, warnings
import evsnn
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    evsnn.load(sys.argv[1]); outcome = "LOADED"
except evsnn.FormatError as err:
    outcome = "FormatError" + (" (multi-line)" if "\\n" in str(err) else "")
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{outcome}|{dt:.4f}|{peak / 1024:.1f}|{(peak - base) / 1024:.1f}")
"""


def measure_crafted(original: Path, workdir: Path) -> None:
    """One load per crafted file (and a FIFO and a directory), each in a fresh process."""
    fifo = workdir / "fifo.h5"
    os.mkfifo(fifo)
    cases = [(f"{case} ({'re-stamped' if stamp else 'no new digest'})",
              craft(original, workdir / f"crafted{i}_{stamp}.h5", case, stamp=stamp))
             for i, case in enumerate(CRAFTED) for stamp in (True, False)]
    cases += [("FIFO", fifo), ("directory", workdir)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    print(f"{'crafted case':44s} {'outcome':12s} {'load s':>7s} {'peak MB':>8s} {'+MB':>6s}")
    for name, path in cases:
        done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True,
                              timeout=60, env=env)
        outcome, dt, peak, grown = (done.stdout.strip().split("|") if done.returncode == 0
                                    else (f"rc {done.returncode}", "-", "-", "-"))
        print(f"{name:44s} {outcome:12s} {dt:>7s} {peak:>8s} {grown:>6s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mutations", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes at once")
    parser.add_argument("--restamped", action="store_true", help="mutate only the HDF5 body, then re-stamp the digest")
    parser.add_argument("--no-crafted", action="store_true", help="skip the crafted-file measurements")
    parser.add_argument("--model", choices=MODELS, default="everything",
                        help="the saved model to mutate (crafted cases need 'everything')")
    args = parser.parse_args()
    if args.model != "everything" and not args.no_crafted:
        parser.error("the crafted cases edit the 'everything' model; add --no-crafted")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        original = workdir / "model.h5"
        evsnn.save(MODELS[args.model](np.float32), original)
        data = original.read_bytes()
        if not args.no_crafted:
            (workdir / "crafted").mkdir()
            measure_crafted(original, workdir / "crafted")
        print(f"\nmodel file: {len(data)} bytes; {args.mutations} mutations, seed {args.seed}, "
              f"{'body mutated then digest re-stamped' if args.restamped else 'digest as saved'}")
        start = time.perf_counter()
        (workdir / "mutants").mkdir()
        outcomes = fuzz(original, mutations(data, args.mutations, args.seed, body_only=args.restamped),
                        workdir / "mutants", restamped=args.restamped, jobs=args.jobs, batch=500)
        elapsed = time.perf_counter() - start
    for kind in sorted(outcomes, key=lambda k: -len(outcomes[k])):
        shown = "; ".join(outcomes[kind][:3]) if not kind.startswith(("FormatError", "identical")) else ""
        print(f"{len(outcomes[kind]):7d}  {kind}  {shown}")
    counts = {k: sum(len(v) for kind, v in outcomes.items() if kind.startswith(k))
              for k in ("FormatError", "identical", "different", "error", "crash", "hang")}
    print(f"total {sum(map(len, outcomes.values()))}: rejected {counts['FormatError']}, identical "
          f"{counts['identical']}, silent different {counts['different']}, other errors {counts['error']}, "
          f"crashes {counts['crash']}, hangs {counts['hang']}; {elapsed:.0f} s")


if __name__ == "__main__":
    main()
