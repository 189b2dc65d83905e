"""Hostile model files and a crash-proof fuzzer, shared by the tests and ``benchmarks/hdf5_fuzz.py``.

``CRAFTED`` makes files a hostile sender could write with h5py (links and
storage outside the file, declared sizes the file does not hold, unknown
members and filters); ``restamp`` gives any file a valid digest, so that the
structural checks can be tested on their own. ``fuzz`` loads mutated copies
of a saved model in worker subprocesses and attributes every crash (signal)
or hang (timeout) to the file that caused it.

Run as a script, this module is the worker: ``python hostile.py ORIGINAL LIST``
loads each file named in LIST and prints one line per file.
"""

from __future__ import annotations

import collections
import itertools
import os
import shutil
import signal
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parent.parent


def restamp(path: str | os.PathLike) -> None:
    """Give the file at ``path`` a valid digest header (what a hostile sender can always do)."""
    from evsnn.io import integrity

    data = Path(path).read_bytes()
    with open(path, "r+b") as fh:
        fh.write(integrity.header(data[integrity.USERBLOCK_SIZE:], len(data)))


def edit(path: str | os.PathLike, fn: Callable[[h5py.File], object], *, stamp: bool = True) -> None:
    """Change a saved file with h5py, then (by default) re-stamp its digest."""
    with h5py.File(path, "r+") as f:
        fn(f)
    if stamp:
        restamp(path)


def text(value: str) -> np.bytes_:
    """A string as h5py writes a fixed-length string attribute (version-2 files hold no variable-length ones)."""
    return np.bytes_(value.encode("utf-8"))


def _array(group: h5py.Group, name: str, **kwargs) -> h5py.Dataset:
    ds = group.create_dataset(name, **kwargs)
    ds.attrs["encoding-type"] = text("array")
    ds.attrs["encoding-version"] = text("1.0.0")
    return ds


def _replace(f: h5py.File, name: str, **kwargs) -> None:
    parent, _, leaf = name.rpartition("/")
    del f[name]
    _array(f[parent], leaf, **kwargs)


def _bomb(f: h5py.File) -> None:
    """A 1 GiB weight of zeros in 256 gzip chunks of 4 MiB, each a few KiB on disk."""
    _replace(f, "projections/fc1/weight", shape=(16384, 16384), dtype="<f4", chunks=(1024, 1024),
             compression="gzip")
    chunk = zlib.compress(bytes(1024 * 1024 * 4), 9)
    ds = f["projections/fc1/weight"]
    for i in range(16):
        for j in range(16):
            ds.id.write_direct_chunk((i * 1024, j * 1024), chunk)


def _vds(f: h5py.File) -> None:
    layout = h5py.VirtualLayout(shape=(16, 48), dtype="<f4")
    layout[:] = h5py.VirtualSource("../secret.h5", "data", shape=(16, 48))
    del f["projections/fc1/weight"]
    ds = f["projections/fc1"].create_virtual_dataset("weight", layout)
    ds.attrs["encoding-type"] = text("array")
    ds.attrs["encoding-version"] = text("1.0.0")


#: name -> (edit of a file saved from ``make_everything(np.float32)``, what the error must say)
CRAFTED: dict[str, tuple[Callable[[h5py.File], object], str]] = {
    "external link": (lambda f: f["provenance"].__setitem__("leak", h5py.ExternalLink("/etc/passwd", "/")),
                      "/provenance/leak: external link"),
    "external link ../": (lambda f: f["projections/fc1"].__setitem__("other", h5py.ExternalLink("../m.h5", "/w")),
                          "/projections/fc1/other: external link"),
    "soft link": (lambda f: f["provenance"].__setitem__("alias", h5py.SoftLink("/projections/fc1/weight")),
                  "/provenance/alias: soft link"),
    "soft link out": (lambda f: f["provenance"].__setitem__("up", h5py.SoftLink("/../../etc/passwd")),
                      "/provenance/up: soft link"),
    "external storage": (lambda f: _array(f["provenance"], "passwd", shape=(64,), dtype="u1",
                                          external=[("/etc/passwd", 0, 64)]),
                         "/provenance/passwd: external raw storage"),
    "external storage ../": (lambda f: (_replace(f, "projections/fc1/weight", shape=(16, 48), dtype="<f4",
                                                 external=[("../weights.bin", 0, 16 * 48 * 4)])),
                             "/projections/fc1/weight: external raw storage"),
    "virtual dataset": (_vds, "/projections/fc1/weight: virtual dataset"),
    "huge declared shape": (lambda f: _replace(f, "projections/fc1/weight", shape=(16384, 16384), dtype="<f4",
                                               chunks=(256, 256), compression="gzip"),
                            "/projections/fc1/weight: declares shape (16384, 16384) but stores 0"),
    "compression bomb": (_bomb, "/projections/fc1/weight: must have shape (16, 48)"),
    "1 GB provenance": (lambda f: _array(f["provenance"], "blob", shape=(2**28,), dtype="<f4", chunks=(2**20,),
                                         compression="gzip"),
                        "/provenance/blob: declares shape (268435456,) but stores 0"),
    "delay 2**64-1": (lambda f: f["projections/skip"].attrs.__setitem__("delay", np.uint64(2**64 - 1)),
                      "/projections/skip: Projection 'skip': delay must be at most MAX_DELAY = 65536 steps"),
    "huge population": (lambda f: f["populations/out"].attrs.__setitem__("shape", np.array([2**40], "<i8")),
                        "/populations/out: Population 'out': shape (1099511627776,) holds"),
    "extra member": (lambda f: _array(f["populations/fc1"], "extra", data=np.ones(3)),
                     "/populations/fc1/extra: unknown member"),
    "extra root group": (lambda f: f.create_group("payload"), "/payload: unknown member"),
    "extra attribute": (lambda f: f["input"].attrs.__setitem__("evil", 1), "/input: unknown attribute(s) ['evil']"),
    "threshold twice": (lambda f: f["populations/conv1"].attrs.__setitem__("threshold", 1.0),
                        "/populations/conv1: threshold is both an attribute and a dataset"),
    "variable-length string": (lambda f: f["input"].attrs.__setitem__("encoding", "poisson"),
                               "/input: attribute 'encoding': variable-length string refused"),
    "compound attribute": (lambda f: f["input"].attrs.__setitem__("scale", np.zeros(1, "<f8,<i8")[0]),
                           "/input: attribute 'scale': datatype compound (16 bytes) refused"),
    "reference attribute": (lambda f: f["provenance"].attrs.__setitem__("ref", f["input"].ref),
                            "/provenance: attribute 'ref': datatype reference (8 bytes) refused"),
    "opaque attribute": (lambda f: f.attrs.__setitem__("dt", np.void(b"\x00" * 8)),
                         "/: attribute 'dt': datatype opaque (8 bytes) refused"),
    "enum dataset": (lambda f: _array(f["provenance"], "mood", data=np.zeros(3, "u1"),
                                      dtype=h5py.enum_dtype({"SAD": 0, "GLAD": 1, "MAD": 2}, basetype="u1")),
                     "/provenance/mood: datatype enum (1 bytes) refused"),
    "variable-length dataset": (lambda f: _array(f["provenance"], "notes", data=["x" * 10] * 4,
                                                 dtype=h5py.string_dtype()),
                                "/provenance/notes: datatype variable-length string refused"),
    "unsupported filter": (lambda f: _replace(f, "projections/fc1/weight", data=np.ones((16, 48), "<f4"),
                                              compression="lzf"),
                           "/projections/fc1/weight: HDF5 filter(s) [32000] refused"),
}


def craft(original: str | os.PathLike, out: str | os.PathLike, case: str, *, stamp: bool = True) -> Path:
    """Copy ``original`` to ``out`` and apply the crafted case ``case``."""
    shutil.copyfile(original, out)
    edit(out, CRAFTED[case][0], stamp=stamp)
    return Path(out)


# --------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------
def mutations(data: bytes, n: int, seed: int, *, body_only: bool = False) -> Iterable[tuple[str, bytes]]:
    """``n`` seeded mutants of ``data``: (description, bytes); single-byte changes, bit flips, truncations.

    ``body_only`` changes only bytes after the 512-byte user block and never truncates into it
    (for files that are re-stamped afterwards).
    """
    rng = np.random.default_rng(seed)
    low = 512 if body_only else 0
    for _ in range(n):
        kind = rng.choice(["byte", "bit", "truncate"], p=[0.45, 0.45, 0.10])
        buf = bytearray(data)
        if kind == "truncate":
            cut = int(rng.integers(low, len(data)))
            yield f"truncate to {cut}", bytes(buf[:cut])
            continue
        at = int(rng.integers(low, len(data)))
        if kind == "byte":
            buf[at] = (buf[at] + int(rng.integers(1, 256))) % 256
            yield f"byte {at} {data[at]:#04x}->{buf[at]:#04x}", bytes(buf)
        else:
            bit = int(rng.integers(0, 8))
            buf[at] ^= 1 << bit
            yield f"bit {bit} of byte {at}", bytes(buf)


def fuzz(original: Path, mutants: Iterable[tuple[str, bytes]], workdir: Path, *, restamped: bool = False,
         batch: int = 250, timeout: float = 60.0, jobs: int = 1) -> dict[str, list[str]]:
    """Load each mutant in worker subprocesses; return outcome kind -> descriptions.

    Kinds: ``identical``, ``different`` (loaded, != original), ``FormatError:<category>``,
    ``error:<type>`` (any other exception), ``crash:<signal>`` and ``hang``. Mutants are
    written one batch at a time and deleted once loaded, so a long run needs little disk.
    """
    outcomes: dict[str, list[str]] = collections.defaultdict(list)
    numbers = itertools.count()
    source = iter(mutants)
    retry: list[list[tuple[str, Path]]] = []
    running: list[tuple[subprocess.Popen, list[tuple[str, Path]]]] = []

    def next_batch() -> list[tuple[str, Path]]:
        if retry:
            return retry.pop()
        todo = []
        for what, data in itertools.islice(source, batch):
            path = workdir / f"m{next(numbers):06d}.h5"
            path.write_bytes(data)
            if restamped and len(data) >= 512:
                restamp(path)
            todo.append((what, path))
        return todo

    while True:
        while len(running) < jobs:
            todo = next_batch()
            if not todo:
                break
            listing = todo[0][1].with_suffix(".txt")
            listing.write_text("\n".join(str(p) for _, p in todo))
            running.append((_start(original, listing), todo))
        if not running:
            return dict(outcomes)
        proc, todo = running.pop(0)
        try:
            out, _ = proc.communicate(timeout=timeout)
            hung = False
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            hung = True
        done = _parse(out, outcomes, todo)
        if done < len(todo):  # the file in flight crashed or hung the worker; the rest go to a new one
            outcomes["hang" if hung else f"crash:{_signal_name(proc.returncode)}"].append(todo[done][0])
            if todo[done + 1:]:
                retry.append(todo[done + 1:])
        for _, path in todo[:done]:
            path.unlink()


def _start(original: Path, listing: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-X", "faulthandler", __file__, str(original), str(listing)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)


def _parse(out: str, outcomes: dict[str, list[str]], todo: list[tuple[str, Path]]) -> int:
    """Record finished results; return how many files of ``todo`` finished."""
    done = 0
    for line in out.splitlines():
        if line.startswith("RESULT "):
            _, index, kind = line.split(" ", 2)
            outcomes[kind].append(todo[int(index)][0])
            done = int(index) + 1
    return done


def _signal_name(returncode: int) -> str:
    if returncode is not None and returncode < 0:
        return signal.Signals(-returncode).name
    return f"exit {returncode}"


def _category(message: str) -> str:
    if "checksum mismatch" in message:
        return "checksum mismatch"
    if "starts with neither" in message:
        return "not an evsnn file"
    if "unreadable or truncated" in message:
        return "not HDF5"
    return "structure"


def _worker(original: str, listing: str) -> None:
    import warnings

    import evsnn
    from evsnn.errors import FormatError

    warnings.simplefilter("ignore")
    reference = evsnn.load(original)
    for i, path in enumerate(Path(listing).read_text().splitlines()):
        try:
            model = evsnn.load(path)
            kind = "identical" if model == reference else "different"
        except FormatError as err:
            kind = f"FormatError:{_category(str(err))}"
            if "\n" in str(err):
                kind += " (multi-line)"
        except Exception as err:  # noqa: BLE001 - every other exception is a finding
            kind = f"error:{type(err).__name__}"
        print(f"RESULT {i} {kind}", flush=True)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
