"""Scale-out on Dask (``distributed``): the client checks and the ``--scheduler`` of the command line.

``evsnn.simulate(..., client=...)`` and ``evsnn.sweep.sweep(..., client=...)``
take a :class:`distributed.Client`; this module is where evsnn imports
``distributed`` (only when a client or a scheduler is asked for, so that
``import evsnn`` does not import Dask), checks what it was given, and opens a
client for a scheduler named on the command line: ``local`` or ``local:N`` (a
``LocalCluster`` of N single-threaded worker processes on this machine, closed
at the end) or the address of a running scheduler (``tcp://HOST:PORT``).
How to run on a cluster: docs/scaling.md.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import DependencyError, InputError

__all__ = ["require_distributed", "check_client", "ship", "local_cluster", "parse_scheduler", "scheduler_client",
           "total_threads"]

#: Seconds to wait for a scheduler named by address before giving up.
CONNECT_TIMEOUT = 10.0

_ADDRESS = re.compile(r"(?:tcp|tls|ucx|ws|wss)://[^\s/]+:\d+")


def require_distributed(where: str) -> Any:
    """The ``distributed`` module, or a DependencyError saying how to install it."""
    try:
        import distributed
    except ImportError as err:
        raise DependencyError(f'{where}: running on Dask needs dask and distributed; install them with pip install '
                              f'"evsnn[dask]".') from err
    return distributed


def check_client(client: object, where: str) -> None:
    """Refuse anything but a running :class:`distributed.Client` (InputError), and a missing Dask (DependencyError)."""
    distributed = require_distributed(where)
    if not isinstance(client, distributed.Client):
        raise InputError(f"{where}: client must be a distributed.Client, got {type(client).__name__}. Pass e.g. "
                         "client=distributed.Client('tcp://HOST:8786').")
    if client.status != "running":
        raise InputError(f"{where}: client must be connected to a scheduler, got a client whose status is "
                         f"{client.status!r}.")


def ship(client: Any, value: Any) -> Any:
    """A future of ``value`` on the cluster, for the tasks that take it: sent once, not once per task.

    Not ``client.scatter``: scattered data lives only on the workers, and Dask's active memory manager keeps
    one copy of data no task is waiting for yet, so a lost worker can take it with it and every task that
    needs it fails ("lost dependencies"). ``value`` is sent with a task that returns it, once; the scheduler
    keeps that task, so it is recomputed if the worker holding ``value`` is lost, and workers copy the result
    from each other.
    """
    with large_graph_intended():  # the large graph is one value, embedded once, as intended
        return client.submit(_identity, value, pure=False)


@contextmanager
def large_graph_intended() -> Iterator[None]:
    """Silence distributed's "Sending large graph" warning for data that must travel with its task (the model
    in :func:`ship`; a simulate shard's input rows, which only its task needs)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        yield


def _identity(value: Any) -> Any:
    return value


def total_threads(client: Any) -> int:
    """Threads of all the client's workers (at least 1: tasks wait for a worker to join)."""
    return max(1, sum(client.nthreads().values()))


def local_cluster(n_workers: int) -> Any:
    """A ``distributed.LocalCluster`` of ``n_workers`` single-threaded worker processes, set up for evsnn.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which turns off glibc's adaptive mmap
    threshold, so every numpy temporary above 128 KiB is mapped and unmapped again: the event engine ran
    ~1.5x slower in such a worker than in a plain process (docs/scaling.md, "Threads and memory"). These
    workers start without it; the nanny still sets the BLAS and OpenMP pools to one thread. It does so by
    writing ``OMP_NUM_THREADS=1`` and the like into *this* process's environment before it spawns a worker,
    where every later subprocess would inherit it (a training run started afterwards then sums in another
    order): the environment is restored once the workers are up.
    """
    import dask

    distributed = require_distributed("local_cluster")
    saved = dict(os.environ)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                            dashboard_address=":0")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def parse_scheduler(text: str) -> tuple[str, Any]:
    """``("local", N)`` for ``local[:N]`` (N default: the cores this process may use), or ``("address", text)``.

    Raises
    ------
    InputError
        Naming the text, for anything else.
    """
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2]
        if not count:
            return "local", len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if count.isdigit() and int(count) >= 1:
            return "local", int(count)
        raise InputError(f"--scheduler {text}: local:N needs a number of workers N >= 1, e.g. local:2.")
    if _ADDRESS.fullmatch(text):
        return "address", text
    raise InputError(f"--scheduler {text}: must be local, local:N or a Dask scheduler address such as "
                     "tcp://HOST:8786.")


@contextmanager
def scheduler_client(text: str) -> Iterator[Any]:
    """A Client of the scheduler ``text`` (:func:`parse_scheduler`), closed at the end, with a ``local`` cluster.

    Raises
    ------
    InputError
        A malformed ``text``, or no scheduler answering at its address within :data:`CONNECT_TIMEOUT` seconds.
    DependencyError
        Dask is not installed.
    """
    kind, value = parse_scheduler(text)
    distributed = require_distributed(f"--scheduler {text}")
    if kind == "local":
        with local_cluster(value) as cluster, distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = distributed.Client(value, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as err:
        raise InputError(f"--scheduler {value}: no Dask scheduler answered there within {CONNECT_TIMEOUT:g} s "
                         f"({type(err).__name__}). Check the address, or start one with: dask scheduler "
                         "(and dask worker ADDRESS on each machine).") from None
    with client:
        yield client
