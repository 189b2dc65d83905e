"""Kernels compile under a lock across processes, so that processes filling numba's cache at once cannot corrupt it
(evsnn.engines.jit; numba issues #4807 and #10128)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("fcntl", reason="the compile lock uses fcntl (POSIX); elsewhere numba compiles unlocked")

KERNEL = """\
from evsnn.engines.jit import compiled


@compiled()
def add(x, y):
    return x + y
"""

CHILD = """\
import sys, time
from pathlib import Path
from numba.core.dispatcher import Dispatcher

name, log, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
compile_ = Dispatcher.compile


def logged(self, sig):  # every compilation of this process, logged as it starts and ends, made slow
    with log.open("a") as f:
        f.write(f"start {name}\\n")
    time.sleep(1.0)
    try:
        return compile_(self, sig)
    finally:
        with log.open("a") as f:
            f.write(f"end {name}\\n")


Dispatcher.compile = logged  # before the kernel module makes its dispatcher
sys.path.insert(0, sys.argv[4])
import kern

(log.parent / f"ready-{name}").touch()
while not go.exists():
    time.sleep(0.01)
print(kern.add(*{"int": (1, 2), "float": (1.5, 2.25)}[name]))
"""


def test_processes_compiling_at_once_take_turns_and_both_signatures_reach_the_cache(tmp_path: Path):
    (tmp_path / "kern.py").write_text(KERNEL)
    (tmp_path / "child.py").write_text(CHILD)
    log, go = tmp_path / "log", tmp_path / "go"
    children = {name: subprocess.Popen([sys.executable, str(tmp_path / "child.py"), name, str(log), str(go),
                                        str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for name in ("int", "float")}
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{name}").exists() for name in children):
        assert time.monotonic() < deadline and all(c.poll() is None for c in children.values()), \
            {name: c.communicate() for name, c in children.items() if c.poll() is not None}
        time.sleep(0.05)
    go.touch()  # both start compiling together
    outputs = {name: c.communicate(timeout=120) for name, c in children.items()}
    assert [c.returncode for c in children.values()] == [0, 0], outputs
    assert outputs["int"][0].strip() == "3" and outputs["float"][0].strip() == "3.75"

    events = log.read_text().split("\n")[:-1]
    assert sorted(events) == ["end float", "end int", "start float", "start int"]  # each compiled once
    first = events[0].split()[1]
    assert events == [f"start {first}", f"end {first}", *[e for e in events if not e.endswith(first)]], events

    # the cache holds both signatures: a third process loads both without compiling
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""\
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        import kern
        print(kern.add(1, 2), kern.add(1.5, 2.25), sum(kern.add.stats.cache_hits.values()))""")],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "3.75", "2"]  # two results, both loaded from the cache
    assert (tmp_path / "__pycache__" / "evsnn-compile.lock").exists()
