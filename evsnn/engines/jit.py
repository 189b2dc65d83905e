"""``numba.njit`` with an on-disk cache that several processes can fill at once.

numba's cache (``cache=True``) is not safe when two processes compile and save
the same functions at the same time (numba issues #4807 and #10128, open in
0.68): a cache filled that way can hold an entry that crashes every later
process that loads it. It happens where evsnn runs several processes on one
installation: Dask workers of a ``LocalCluster``, the CLI and a notebook, a
test suite that runs the CLI. :func:`compiled` keeps numba's cache but takes
an exclusive lock (``fcntl.flock`` on ``evsnn-compile.lock`` in the cache's
folder) around each compilation of a kernel, which is where numba loads,
compiles and saves: processes fill the cache one after another, as one process
would. Once a kernel is compiled in a process, calls take no lock. Where
``fcntl`` is missing (Windows) or the lock file cannot be opened, it compiles
without the lock, as numba does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

from numba import njit
from numba.core.compiler_lock import global_compiler_lock

try:
    import fcntl
except ImportError:  # Windows: no advisory file locks here
    fcntl = None

__all__ = ["compiled", "LOCK_NAME"]

#: The lock file's name, in the folder of numba's cache files.
LOCK_NAME = "evsnn-compile.lock"

_held = 0  # depth of nested compilations holding the lock in this process (under numba's compiler lock)


def compiled(**options: object) -> Callable:
    """``numba.njit(cache=True, nogil=True, **options)``, compiling under the cache folder's lock."""

    def decorate(func: Callable) -> Callable:
        dispatcher = njit(cache=True, nogil=True, **options)(func)
        compile_unlocked = dispatcher.compile

        def compile(sig):
            with _cache_lock(getattr(dispatcher._cache, "cache_path", None)):
                return compile_unlocked(sig)

        dispatcher.compile = compile  # numba calls self.compile for every signature it has not compiled yet
        return dispatcher

    return decorate


@contextlib.contextmanager
def _cache_lock(folder: str | None) -> Iterator[None]:
    """Hold the exclusive lock of cache ``folder`` (re-entrant: a kernel compiles the kernels it calls)."""
    global _held
    with global_compiler_lock:  # first numba's in-process lock, so that no two threads wait on each other
        handle = None
        if not _held and fcntl is not None and folder is not None:  # the outermost compilation takes the lock
            try:
                os.makedirs(folder, exist_ok=True)
                handle = open(os.path.join(folder, LOCK_NAME), "a")
            except OSError:  # a cache folder we cannot write to: numba will not save there either
                handle = None
        _held += 1
        try:
            if handle is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            _held -= 1
            if handle is not None:
                handle.close()  # closing releases the lock
