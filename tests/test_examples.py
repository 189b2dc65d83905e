"""Every example runs in its --quick mode in a temporary directory and writes nowhere else; every benchmark imports.

The examples' full outputs are quoted in the docs. An example that writes files takes an output option
(``OUTPUT_OPTIONS``); each runs with a fresh empty working directory, and the checkout is compared before
and after, so that a default path (such as a resumable log) can never land in the checkout, where a second
run would silently resume from it.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
OUTPUT_OPTIONS = {"l4_study.py": "--out"}  # the examples that write files, and their output-directory option
OUTPUTS = {"l4_study.py": {"sweep.jsonl", "sweep.csv", "summary.json", "sweep.png"}}
OPTIONAL = {"spikingjelly_comparison.py": "spikingjelly"}  # examples comparing with an optional package
NOT_CHECKOUT = {".git", ".venv", "__pycache__", ".hypothesis", ".pytest_cache"}  # caches, and CI's environment


def checkout_files() -> dict:
    """Every file of the checkout (caches left out) -> (size, mtime): what an example must not change."""
    files = {}
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in NOT_CHECKOUT]
        for name in names:
            st = os.stat(os.path.join(folder, name))
            files[os.path.relpath(os.path.join(folder, name), ROOT)] = (st.st_size, st.st_mtime_ns)
    return files


def run_example(script: Path, cwd: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    """Run ``script --quick *args`` in ``cwd``; fail if it created or changed any file of the checkout."""
    before = checkout_files()
    out = subprocess.run([sys.executable, str(script), "--quick", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=600)
    after = checkout_files()
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"{script.name} wrote into the checkout: {changed[:10]}"
    return out


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    module = OPTIONAL.get(script.name)
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: examples/{script.name} compares with it (install commands at "
                    "the top of the script)")
    cwd, out_dir = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    args = [OUTPUT_OPTIONS[script.name], str(out_dir)] if script.name in OUTPUT_OPTIONS else []
    out = run_example(script, cwd, *args)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()
    assert not list(cwd.iterdir()), f"{script.name} wrote into its working directory: {list(cwd.iterdir())}"
    if script.name in OUTPUTS:
        assert {p.name for p in out_dir.iterdir()} == OUTPUTS[script.name]
        assert (out_dir / "sweep.jsonl").read_text().count("\n") > 1  # the resumable log holds the runs
    else:
        assert not out_dir.exists()


def test_spikingjelly_example_fails_without_spikingjelly(tmp_path):
    """Without SpikingJelly the comparison exits non-zero and says why, before training anything."""
    blocked = tmp_path / "blocked" / "spikingjelly"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(blocked.parent),
                                                                      os.environ.get("PYTHONPATH")]))}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = run_example(ROOT / "examples" / "spikingjelly_comparison.py", cwd, env=env)
    assert out.returncode == 1 and not out.stdout
    assert "SpikingJelly cannot be imported (hidden by the test)" in out.stderr and "Traceback" not in out.stderr
    assert not list(cwd.iterdir())


BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py"))


def test_benchmarks_import():
    """Every benchmark script imports (they are too slow to run here; a renamed helper must not break them)."""
    code = ("import importlib.util, sys\n"
            "for path in sys.argv[1:]:\n"
            "    spec = importlib.util.spec_from_file_location('benchmark', path)\n"
            "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n")
    out = subprocess.run([sys.executable, "-c", code, *map(str, BENCHMARKS)], capture_output=True, text=True,
                         timeout=300)
    assert len(BENCHMARKS) >= 4 and out.returncode == 0, out.stderr[-2000:]
