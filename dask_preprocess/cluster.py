"""The Dask client the stage computes on: a local cluster sized to the machine, or an
existing cluster (which is how users outgrow one machine)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask
import psutil
from distributed import Client, LocalCluster, progress

logger = logging.getLogger(__name__)

# All local workers together stay under this: with worker processes, the driver and the
# scheduler come on top; with threads, the worker watches the whole process, driver included.
DEFAULT_MEMORY_BUDGET_BYTES = int(2.8 * 1024**3)


def local_cluster_size(
    n_workers: int | None = None, memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES
) -> tuple[int, int]:
    """How many workers (threads or processes) a local cluster gets, and the memory of each.

    Args:
        n_workers: Workers wanted; default one per CPU core (at most 8), fewer when
            the machine's available memory cannot give each at least 512 MiB.
        memory_budget_bytes: Memory for all workers together (never more than 70% of the
            memory available now).

    Returns:
        ``(n_workers, memory_limit_bytes_per_worker)``.
    """
    budget = min(memory_budget_bytes, int(psutil.virtual_memory().available * 0.7))
    if n_workers is None:
        n_workers = max(1, min(os.cpu_count() or 1, 8, budget // (512 * 1024**2)))
    return n_workers, max(budget // n_workers, 256 * 1024**2)


@contextmanager
def dask_client(
    scheduler_address: str | None = None,
    *,
    n_workers: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    processes: bool = False,
) -> Iterator[Client]:
    """A Dask client: to ``scheduler_address`` when given, else to a new local cluster.

    The local cluster runs one worker with a thread per worker slot inside this process (the
    stage's Arrow and NumPy work releases the GIL; threads start at once and share tables
    without copies), or with ``processes`` one worker process per slot, one thread each. Either
    way it has a memory limit, so that it spills to disk, and pauses, before the machine runs
    out of memory.

    Args:
        scheduler_address: Address of an existing scheduler (``tcp://host:8786``); None starts
            a local cluster that is closed on exit.
        n_workers: Local worker slots, threads or processes (default: sized to the machine).
        memory_budget_bytes: Memory of all local workers together.
        processes: Worker processes instead of threads of this process (for work that holds
            the GIL, or to isolate the workers' memory from the caller's).

    Yields:
        A connected :class:`distributed.Client`.
    """
    if scheduler_address:
        logger.info("Connecting to the Dask scheduler at %s", scheduler_address)
        with Client(scheduler_address) as client:
            yield client
        return
    workers, limit = local_cluster_size(n_workers, memory_budget_bytes)
    if processes:
        logger.info(
            "Starting a local Dask cluster: %d worker process(es), %.0f MiB each",
            workers,
            limit / 1024**2,
        )
        shape: dict[str, Any] = {
            "n_workers": workers,
            "threads_per_worker": 1,
            "memory_limit": limit,
            "host": "127.0.0.1",
        }
    else:
        logger.info(
            "Starting an in-process Dask cluster: %d thread(s), %.0f MiB",
            workers,
            limit * workers / 1024**2,
        )
        shape = {"n_workers": 1, "threads_per_worker": workers, "memory_limit": limit * workers}
    with (
        # The workers' statistical profiler (sys._current_frames() every 10 ms, for the
        # dashboard's profile page) can deadlock CPython 3.11 when a task starts a thread:
        # the frames are collected under the interpreter's thread-list lock, a garbage
        # collection then runs distributed's GC callback, which gives up the GIL, and the
        # thread being started waits for that lock while holding the GIL (CPython
        # gh-106883; seen here as a 10M run that hung in its aggregation step). Nothing here
        # reads those profiles.
        dask.config.set({"distributed.worker.profile.enabled": False}),
        # no fixed dashboard port: other clusters may run here
        LocalCluster(processes=processes, dashboard_address=":0", **shape) as cluster,
        Client(cluster) as client,
    ):
        yield client


def worker_slots(client: Client) -> int:
    """Worker threads of the cluster (tasks that can run at once)."""
    workers = client.scheduler_info().get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))


def gather(client: Client, futures: Any, show_progress: bool) -> Any:
    """The results of ``futures`` (one, a list, or a collection's), with Dask's progress bar
    in the terminal when ``show_progress``."""
    if show_progress:
        progress(futures)
    return client.gather(futures)
