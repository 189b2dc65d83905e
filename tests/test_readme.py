"""The README's examples run as written, and the outputs it shows are what the code prints.

Conventions of README.md that these tests read:

- a ```python block runs as written; a ``print(...)`` statement directly followed by ``# `` comment
  lines shows its output there, and the comment lines must equal what it prints;
- a ``` block whose first line starts with ``$ `` shows commands and their output: each ``$ cmd`` line,
  then the lines it prints. A line ``...`` stands for any number of lines left out. The ``evsnn`` commands
  run here, in one temporary directory, after ``evsnn demo --quiet`` (whose ``model.h5`` the others use);
  timings (``TIMINGS``) are the only parts not compared. The other commands (long benchmarks and studies)
  are listed in ``NOT_RUN`` with the reason, and every ``$`` command must be one or the other.

After a change of output, regenerate the README's blocks with ``python tests/test_readme.py --regenerate``
(never edit the numbers by hand).
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
TIMINGS = [  # (pattern, replacement): the machine-dependent parts of the outputs, all of them wall times
    (re.compile(r"(trained \d+ epochs in )[\d.]+ s"), r"\1<time> s"),
    (re.compile(r"(wall time: )[\d.]+ s \([\d.]+ ms/sample\), set-up [\d.]+ s"), r"\1<times>"),
]
NOT_RUN = {  # commands whose output the README quotes but the suite does not run, and why
    "python examples/spikingjelly_comparison.py": "needs SpikingJelly and trains the CNN (minutes)",
    "python benchmarks/conversion.py": "its output is wall times only",
    "python benchmarks/event_engine.py": "11 minutes of wall times, with SpikingJelly",
    "python benchmarks/event_engine.py --no-brian2": "10 minutes of wall times; the README quotes some of its lines",
    "python benchmarks/event_engine.py --no-brian2 --only mlp --batch 1": "3 minutes of wall times, of two versions",
    "python benchmarks/event_engine.py --no-brian2 --only mlp --batch 64": "3 minutes of wall times",
    "python benchmarks/torch_engine.py": "4 minutes of wall times, with SpikingJelly",
}


def command_blocks(text: str) -> list[list[tuple[str, list[str]]]]:
    """Every ``$`` block of ``text`` as a list of (command, output lines)."""
    blocks = []
    for body in re.findall(r"^```\n(\$ .*?)^```$", text, flags=re.S | re.M):
        commands = []
        for line in body.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            else:
                commands[-1][1].append(line)
        blocks.append(commands)
    return blocks


COMMANDS = [c for block in command_blocks(README.read_text()) for c in block]
EVSNN = [(cmd, out) for cmd, out in COMMANDS if cmd.startswith("evsnn ")]


def normalise(lines: list[str]) -> list[str]:
    for pattern, replacement in TIMINGS:
        lines = [pattern.sub(replacement, line) for line in lines]
    return [line.rstrip() for line in lines]


def mismatch(expected: list[str], actual: list[str]) -> str | None:
    """None when ``actual`` is ``expected`` with each ``...`` line standing for any lines; else what differs."""
    expected, actual = normalise(expected), normalise(actual)
    chunks, chunk = [], []
    for line in expected:
        if line == "...":
            chunks.append(chunk)
            chunk = []
        else:
            chunk.append(line)
    chunks.append(chunk)
    pos = 0
    for i, chunk in enumerate(chunks):
        if i == 0:
            found = 0 if actual[:len(chunk)] == chunk else -1
        elif i == len(chunks) - 1:
            start = len(actual) - len(chunk)
            found = start if start >= pos and actual[start:] == chunk else -1
        else:
            found = next((k for k in range(pos, len(actual) - len(chunk) + 1) if actual[k:k + len(chunk)] == chunk),
                         -1)
        if found < 0 or (i == len(chunks) - 1 and found + len(chunk) != len(actual)):
            return "README shows:\n" + "\n".join(chunk) + "\n\nthe command printed:\n" + "\n".join(actual)
        pos = found + len(chunk)
    return None


def run_block(code: str) -> list[tuple[str, list[str], list[str]]]:
    """Execute ``code`` statement by statement; return (statement, shown output, printed output) of each
    ``print`` statement directly followed by ``# `` comment lines."""
    lines, namespace, shown = code.splitlines(), {"__name__": "__readme__"}, []
    for node in ast.parse(code).body:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(ast.Module([node], type_ignores=[]), str(README), "exec"), namespace)
        is_print = (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                    and getattr(node.value.func, "id", None) == "print")
        comments = []
        for line in lines[node.end_lineno:]:
            if not line.startswith("# "):
                break
            comments.append(line[2:])
        if is_print and comments:
            shown.append((ast.get_source_segment(code, node), comments, printed.getvalue().splitlines()))
    return shown


def test_readme_has_examples():
    assert len(BLOCKS) >= 2 and any(re.search(r"^print\(.*\n# ", block, flags=re.M) for block in BLOCKS)
    assert [cmd for cmd, _ in EVSNN][0] == "evsnn demo --quiet" and len(EVSNN) >= 4


def test_only_timings_and_left_out_lines_may_differ():
    shown = ["trained 10 epochs in 11.0 s (final loss 0.0576, seed 0)", "...", "accuracy: 98.20%",
             "wall time: 2.94 s (1.47 ms/sample), set-up 0.01 s"]
    printed = ["trained 10 epochs in 9.5 s (final loss 0.0576, seed 0)", "a", "b", "accuracy: 98.20%",
               "wall time: 3.10 s (1.55 ms/sample), set-up 0.02 s"]
    assert mismatch(shown, printed) is None
    assert mismatch(shown, [printed[0], *printed[3:]]) is None  # "..." may stand for no line
    assert mismatch(shown, [printed[0].replace("0.0576", "0.0577"), *printed[1:]])  # any other number counts
    assert mismatch(shown, [*printed[:3], "accuracy: 98.25%", printed[4]])
    assert mismatch(shown, [*printed, "one more line"])
    assert mismatch(shown[2:], printed)  # without "...", nothing may be left out


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs_and_prints_what_it_shows(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples write files into the working directory
    for statement, shown, printed in run_block(code):
        assert printed == shown, f"{statement}\nREADME shows: {shown}\nit prints:    {printed}"


def test_every_command_is_run_or_excused():
    others = {cmd for cmd, _ in COMMANDS if not cmd.startswith("evsnn ")}
    assert others == set(NOT_RUN), "a README command neither runs in this test nor is listed in NOT_RUN"


def run_command(cmd: str, cwd: Path) -> list[str]:
    """Run a README ``evsnn ...`` command in ``cwd`` with this checkout's evsnn; its output lines."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-m", "evsnn", *shlex.split(cmd)[1:]], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"$ {cmd}\n{out.stderr[-2000:]}"
    return out.stdout.splitlines()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory where the README's first command, the demo, has run: (directory, its output lines)."""
    cwd = tmp_path_factory.mktemp("readme")
    (cwd / "docs").mkdir()  # the report's --plot docs/energy-report.png
    return cwd, run_command(EVSNN[0][0], cwd)


@pytest.mark.slow
@pytest.mark.parametrize("cmd,shown", EVSNN, ids=[cmd.split(" --")[0] for cmd, _ in EVSNN])
def test_readme_command_prints_what_it_shows(cmd, shown, workdir):
    cwd, demo = workdir
    printed = demo if cmd == EVSNN[0][0] else run_command(cmd, cwd)
    problem = mismatch(shown, printed)
    assert problem is None, f"$ {cmd}: {problem}\n(regenerate: python tests/test_readme.py --regenerate)"


def regenerate() -> None:
    """Rewrite the output of every ``evsnn`` command in README.md with what it prints now.

    Kept parts around a ``...`` line keep their line counts (the first from the top, the last from the end)."""
    import tempfile

    text = README.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "docs").mkdir()
        for cmd, shown in EVSNN:
            printed = run_command(cmd, cwd)
            assert shown.count("...") <= 1, f"{cmd}: regenerate keeps one left-out part at most"
            if "..." in shown:
                k = shown.index("...")
                new = printed[:k] + ["..."] + printed[len(printed) - (len(shown) - k - 1):]
            else:
                new = printed
            old_block, new_block = "\n".join([f"$ {cmd}", *shown]), "\n".join([f"$ {cmd}", *new])
            assert text.count(old_block) == 1, cmd
            text = text.replace(old_block, new_block)
    README.write_text(text)


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: python tests/test_readme.py --regenerate")
    regenerate()
