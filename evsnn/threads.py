"""How many cores a run uses, and the one place that sets every thread pool it touches.

A run splits its batch over ``threads`` cores (the event engine's compiled
loops, numba's ``prange``); BLAS (numpy's, through threadpoolctl) and torch
(its matmul / conv2d, which the event engine uses for dense steps) get the
same number, so that nothing runs ``threads x threads`` threads on a busy
machine. :func:`limit_threads` sets them for the run and restores them after.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["available_cores", "limit_threads", "one_blas_thread"]


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or ``taskset`` narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        return os.cpu_count() or 1


@functools.cache
def _controller():
    """threadpoolctl's view of the thread pools loaded in this process, built once, at the first run (after numpy
    and torch are imported): building it scans every loaded library, about 4 ms, which a batch-1 run of a few
    samples would otherwise pay on each call. A library loaded later in the process is not limited."""
    import torch  # noqa: F401 - its OpenMP runtime is loaded with it, and must be there for the scan
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def limit_threads(threads: int) -> Iterator[None]:
    """Run the body with BLAS, OpenMP and torch limited to ``threads`` threads; restore them after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with _controller().limit(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def one_blas_thread():
    """A context manager that holds numpy's BLAS to one thread (a product whose float32 sums must not depend
    on the thread count: BLAS splits a product's sums differently over threads)."""
    return _controller().limit(limits=1, user_api="blas")
