"""Running jobs on a Dask distributed cluster (the optional extra ``pip install 'sbbench[dask]'``).

Jobs are pure functions of their spec, so they can run anywhere: the submitting process sends
each job to the cluster, receives its :class:`~sbbench.results.RunResult` and is the only
process that reads or writes the result cache and the leaderboard. Workers must have sbbench
installed and see submission folders under the same path (a shared file system on a cluster).
``docs/scale-out.md`` shows Slurm and PBS set-ups with dask-jobqueue.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sbbench.isolation import SLOW_MALLOC_SETTINGS

K = TypeVar("K")


class ClusterError(RuntimeError):
    """Dask is not installed, or the scheduler cannot be reached."""


@contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[Any]:
    """A ``distributed.Client`` of the scheduler at ``scheduler``, or of a fresh local cluster.

    With ``scheduler=None`` a ``LocalCluster`` of ``workers`` worker processes (one thread each)
    is started for the duration of the block and closed after it. Its workers keep glibc's
    default allocator settings: Dask's usual ``MALLOC_TRIM_THRESHOLD_`` makes torch's large
    temporary tensors page-fault on every allocation (see :data:`sbbench.isolation.SLOW_MALLOC_SETTINGS`).
    """
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as error:
        raise ClusterError("the Dask executors need the optional extra: pip install 'sbbench[dask]'") from error
    if scheduler is None:
        import dask

        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
        for key in SLOW_MALLOC_SETTINGS:
            environ.pop(key, None)
            # A nanny copies its settings into this process's environment, where workers of
            # any later cluster would inherit them.
            os.environ.pop(key, None)
        with (dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
              LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR) as cluster,
              Client(cluster) as client):
            yield client
        return
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError, ValueError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler!r}: {error}") from None
    with client:
        yield client


def map_on_dask(client: Any, function: Callable[..., Any], items: Sequence[tuple[K, Any]], args: tuple = (),
                name: Callable[[K], str] = str) -> Iterator[tuple[K, Any]]:
    """Run ``function(item, *args)`` for every ``(key, item)`` on the cluster; yield ``(key, outcome)`` as each ends.

    The outcome is the return value, or the exception the task ended with (for instance
    ``KilledWorker`` after the workers running it died repeatedly). ``name(key)`` is the task's
    key on the cluster. Tasks still running when the caller stops iterating are cancelled.
    """
    from dask.distributed import as_completed

    futures = {client.submit(function, item, *args, key=name(key), pure=False): key for key, item in items}
    try:
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except Exception as error:
                yield futures[future], error
    finally:
        client.cancel(list(futures))
