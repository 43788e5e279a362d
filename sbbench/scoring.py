"""Scoring a method on a suite: one job per (task, seed), cached on disk, resumable.

Each job's result is stored in the :class:`~sbbench.cache.ResultCache` under
:meth:`~sbbench.executors.JobSpec.key` as soon as it finishes, so a score that is
interrupted and started again recomputes only the jobs that are missing. The jobs run on one
of :data:`~sbbench.executors.EXECUTORS`; only this process reads and writes the cache. Without
a cache (``cache=None``: ``sbbench verify``) results stay in memory: nothing about the jobs, their
seeds included, is written to disk, where the fit processes (the same user) could read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sbbench.cache import ResultCache
from sbbench.executors import Batch, JobSpec, execute
from sbbench.isolation import Limits
from sbbench.methods.registry import MethodInfo
from sbbench.results import RunResult
from sbbench.suite import Suite
from sbbench.tasks import Task


@dataclass
class ScoreOutcome:
    """The results of a score, in suite order, and how many came from the cache."""

    results: list[RunResult]
    reused: int


def score(
    info: MethodInfo,
    hparams: dict[str, Any],
    suite: Suite,
    *,
    cache: ResultCache | None,
    workers: int = 1,
    executor: str = "isolated",
    scheduler: str | None = None,
    limits: Limits | None = None,
    on_result: Callable[[RunResult, bool], None] = lambda result, reused: None,
    log: Callable[[str], None] = lambda message: None,
) -> ScoreOutcome:
    """Run every (task, seed) job of ``suite`` not already cached and return all results.

    ``hparams`` must be the full, validated hyperparameters (``model_dump(mode="json")``).
    ``on_result(result, reused)`` is called once per job as it becomes available. Failed jobs
    are stored too, but retried by the next score. ``cache=None`` reads and stores nothing
    (every job runs; results are kept in memory only). ``workers`` is the number of parallel
    processes (ignored by ``inline``); ``scheduler`` the Dask scheduler address (``dask`` only);
    ``limits`` replace the suite's limits of one ``fit`` (``--fit-seconds``, ``--fit-memory-gb``).
    Raises :class:`sbbench.executors.ClusterError` when a Dask executor cannot start.
    """
    suite_hash = suite.content_hash()
    jobs = [JobSpec(hparams=hparams, task=task, seed=seed)
            for task in suite.tasks for seed in suite.seeds]
    keys = [job.key(info.code_hash, suite_hash) for job in jobs]
    results: dict[str, RunResult] = {}
    for key in keys if cache is not None else []:
        cached = cache.load(key)
        if cached is not None and cached.status == "ok":
            results[key] = cached
            on_result(cached, True)
    reused = len(results)
    pending = sorted(((key, job) for key, job in zip(keys, jobs, strict=True) if key not in results),
                     key=lambda item: -_work_estimate(item[1].task))
    batch = Batch(info=info, jobs=pending, limits=limits or Limits.of(suite), workers=workers, scheduler=scheduler,
                  log=log)
    for key, result in execute(executor, batch):
        if cache is not None:
            cache.store(key, result)
        results[key] = result
        on_result(result, False)
    return ScoreOutcome(results=[results[key] for key in keys], reused=reused)


def _work_estimate(task: Task) -> int:
    """A rough relative cost of one job of ``task``: backbone ``width^2 x depth`` times the epoch budget.

    Only the order it gives matters. Jobs start costliest first (longest-processing-time-first
    scheduling), so parallel workers do not end a score idling behind one long job.
    """
    return task.backbone.width ** 2 * max(task.backbone.depth, 1) * task.budget.max_epochs
