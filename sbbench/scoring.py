"""Scoring a method on a suite: one job per (task, seed), cached on disk, resumable.

Each job's result is stored under a key hashed from (sbbench version, suite hash, method
code hash, hyperparameters, task, seed) as soon as it finishes, so a score that is
interrupted and started again recomputes only the jobs that are missing. Only the process
that submits the jobs reads and writes the cache; workers just compute.

Executors: ``isolated`` (the default: ``fit`` in persistent child processes under the suite's
limits, see :mod:`sbbench.isolation`), ``inline`` (everything in this process, for debugging),
``dask`` (the jobs on a Dask cluster at ``scheduler``) and ``dask-local`` (a local Dask cluster
of ``workers`` processes); on Dask, each worker isolates ``fit`` the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

import sbbench
from sbbench.cluster import dask_client, map_on_dask
from sbbench.isolation import IsolatedFit, Limits, run_isolated
from sbbench.methods.registry import MethodInfo, resolve_method
from sbbench.results import RunResult
from sbbench.runner import describe_error, method_fields, run_job
from sbbench.suite import Suite
from sbbench.tasks import Task

Executor = Literal["isolated", "inline", "dask", "dask-local"]
EXECUTORS: tuple[str, ...] = ("isolated", "inline", "dask", "dask-local")


class JobSpec(BaseModel):
    """Everything a worker needs to run one job; a pure description, cheap to pickle."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method_ref: str
    hparams: dict[str, Any]
    task: Task
    seed: int

    def key(self, code_hash: str, suite_hash: str) -> str:
        """The job's cache key."""
        payload = json.dumps([sbbench.__version__, suite_hash, code_hash, self.hparams, self.task.name,
                              self.task.content_hash(), self.seed], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


class CachedResult(BaseModel):
    """On-disk form of a cached job: the result plus a checksum of its JSON."""

    model_config = ConfigDict(extra="forbid")

    checksum: str
    result: RunResult


def _checksum(result: RunResult) -> str:
    return hashlib.sha256(result.model_dump_json().encode()).hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new file, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class ResultCache:
    """Finished job results under ``root/<key[:2]>/<key>.json``, checksummed.

    A file that does not parse or whose checksum does not match is treated as missing (and
    removed), so a job is recomputed rather than trusted.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def load(self, key: str) -> RunResult | None:
        path = self.path(key)
        try:
            cached = CachedResult.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError, ValueError):
            path.unlink(missing_ok=True)
            return None
        if cached.checksum != _checksum(cached.result):
            path.unlink(missing_ok=True)
            return None
        return cached.result

    def store(self, key: str, result: RunResult) -> None:
        record = CachedResult(checksum=_checksum(result), result=result)
        atomic_write_text(self.path(key), record.model_dump_json())


def default_cache_dir() -> Path:
    """``$SBBENCH_CACHE`` or ``.sbbench/cache`` under the working directory."""
    return Path(os.environ.get("SBBENCH_CACHE", ".sbbench/cache"))


def method_ref(info: MethodInfo) -> str:
    """How a worker finds the method again: a folder path for submissions, else the name."""
    if info.meta is not None:
        return info.source.removeprefix("folder ")
    return info.name


def execute_job(job: JobSpec, code_hash: str, limits: Limits) -> RunResult:
    """Run one job in this process with ``fit`` isolated (what Dask workers execute).

    ``code_hash`` is the method code the submitting process scored; a worker that finds other
    code records a failed job. The job uses one torch thread, here and in the fit child: a
    Dask worker runs one job per worker thread, so its threads are its cores.
    """
    info = resolve_method(job.method_ref)
    method = info.cls(info.cls.HParams.model_validate(job.hparams))
    if info.code_hash != code_hash:
        return RunResult(**method_fields(info, method), task=job.task.name, task_hash=job.task.content_hash(),
                         seed=job.seed, status="failed",
                         error=f"this worker has other code for {info.name!r} (hash {info.code_hash[:12]}, "
                               f"expected {code_hash[:12]}): install the same version on every worker")
    torch.set_num_threads(1)
    fitter = IsolatedFit(method_ref=job.method_ref, code_hash=code_hash, limits=limits, threads=1)
    return run_job(info, method, job.task, job.seed, fit=fitter)


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
    cache: ResultCache,
    workers: int = 1,
    executor: Executor = "isolated",
    scheduler: str | None = None,
    on_result: Callable[[RunResult, bool], None] = lambda result, reused: None,
    log: Callable[[str], None] = lambda message: None,
) -> ScoreOutcome:
    """Run every (task, seed) job of ``suite`` not already cached and return all results.

    ``hparams`` must be the full, validated hyperparameters (``model_dump(mode="json")``).
    ``on_result(result, reused)`` is called once per job as it becomes available. Failed jobs
    are stored too, but retried by the next score. ``workers`` is the number of parallel
    processes (ignored by ``inline``); ``scheduler`` the Dask scheduler address (``dask`` only).
    Raises :class:`sbbench.cluster.ClusterError` when a Dask executor cannot start.
    """
    ref = method_ref(info)
    suite_hash = suite.content_hash()
    jobs = [JobSpec(method_ref=ref, hparams=hparams, task=task, seed=seed)
            for task in suite.tasks for seed in suite.seeds]
    keys = [job.key(info.code_hash, suite_hash) for job in jobs]
    results: dict[str, RunResult] = {}
    for key in keys:
        cached = cache.load(key)
        if cached is not None and cached.status == "ok":
            results[key] = cached
            on_result(cached, True)
    reused = len(results)
    pending = sorted(((key, job) for key, job in zip(keys, jobs, strict=True) if key not in results),
                     key=lambda item: -_work_estimate(item[1].task))
    for key, result in _execute(pending, info, hparams, suite, workers, executor, scheduler, log):
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


def _execute(pending: list[tuple[str, JobSpec]], info: MethodInfo, hparams: dict[str, Any], suite: Suite,
             workers: int, executor: Executor, scheduler: str | None,
             log: Callable[[str], None]) -> Iterator[tuple[str, RunResult]]:
    if executor == "inline":
        for key, job in pending:
            method = info.cls(info.cls.HParams.model_validate(job.hparams))
            yield key, run_job(info, method, job.task, job.seed, log=log)
        return
    if executor == "isolated":
        yield from run_isolated([(key, job.task, job.seed) for key, job in pending], info, hparams,
                                method_ref(info), Limits.of(suite), workers, log)
        return
    if not pending:
        return
    local = executor == "dask-local"
    jobs = dict(pending)
    with dask_client(None if local else scheduler, workers) as client:
        for key, outcome in map_on_dask(client, execute_job, pending, (info.code_hash, Limits.of(suite)),
                                        name=lambda key: f"sbbench-job-{key}"):
            if isinstance(outcome, RunResult):
                yield key, outcome
                continue
            job = jobs[key]
            method = info.cls(info.cls.HParams.model_validate(job.hparams))
            reason = f"the Dask cluster could not run this job: {describe_error(outcome)}"
            yield key, RunResult(**method_fields(info, method), task=job.task.name, task_hash=job.task.content_hash(),
                                 seed=job.seed, status="failed", error=reason)
