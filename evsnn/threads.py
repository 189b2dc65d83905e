"""How many cores a run uses, and the one place that sets every thread pool it touches.

A run splits its batch over ``threads`` cores (the event engine's compiled
loops, numba's ``prange``); BLAS (numpy's, through threadpoolctl) and torch
(its matmul / conv2d, which the event engine uses for dense steps) get the
same number, so that nothing runs ``threads x threads`` threads on a busy
machine. :func:`limit_threads` sets them for the run and restores them after.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["available_cores", "limit_threads"]


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or ``taskset`` narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        return os.cpu_count() or 1


@contextmanager
def limit_threads(threads: int) -> Iterator[None]:
    """Run the body with BLAS, OpenMP and torch limited to ``threads`` threads; restore them after."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)
