"""Executors: where the jobs of a score or a sweep run. One registry, one signature.

An executor takes a :class:`Batch` (the method, the pending jobs keyed by cache key, the
suite's limits, the parallelism) and yields ``(key, RunResult)`` as each job finishes, in any
order. Failures are results, never exceptions, except :class:`ClusterError` when a Dask
cluster cannot be reached at all. A job is a scored job (:func:`sbbench.runner.run_job`) or,
when its :attr:`JobSpec.holdout` is set, a sweep trial (:func:`sbbench.selection.run_trial`):
both kinds run on every executor, with the same isolation and limits (:func:`run_spec`).

* ``isolated`` (the default): ``fit`` in persistent child processes under the suite's limits
  (:mod:`sbbench.isolation`); data, checks and metrics stay in this process;
* ``inline``: everything in this process, for debugging: the method's code is imported here,
  so this executor is outside the trust boundary (``sbbench verify`` never uses it);
* ``dask``: the jobs on the Dask cluster at ``scheduler``, each worker isolating ``fit``;
* ``dask-local``: the same on a local Dask cluster of ``workers`` single-core processes.

Only the process that submits the jobs reads and writes the result cache; executors compute.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

import sbbench
from sbbench.isolation import SLOW_MALLOC_SETTINGS, IsolatedFit, Limits
from sbbench.methods.registry import MethodInfo
from sbbench.results import RunResult
from sbbench.runner import Fitter, describe_error, failed_result, fit_in_process, run_job
from sbbench.selection import run_trial
from sbbench.tasks import Task


class ClusterError(RuntimeError):
    """Dask is not installed, or the scheduler cannot be reached."""


class JobSpec(BaseModel):
    """Everything a worker needs to run one job; a pure description, cheap to pickle.

    Attributes:
        hparams: the full, validated hyperparameters.
        task: the task.
        seed: the data seed.
        holdout: ``None`` for a scored job (evaluated on the test split); for a sweep trial the
            share of the training split held out as its selection set (T0, T1, oracle; a T2
            trial is scored on the validation set), see :mod:`sbbench.selection`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    hparams: dict[str, Any]
    task: Task
    seed: int
    holdout: float | None = None

    def key(self, code_hash: str, suite_hash: str) -> str:
        """The job's result-cache key.

        A scored job: sha256 of (sbbench version, suite, code, hyperparameters, task, seed). A
        trial: sha256 of (``"sweep-trial"``, sbbench version, code, hyperparameters, task, seed,
        holdout), without the suite (a trial's result does not depend on it); the leading tag
        keeps the two kinds of keys apart.
        """
        if self.holdout is None:
            payload = [sbbench.__version__, suite_hash, code_hash, self.hparams, self.task.name,
                       self.task.content_hash(), self.seed]
        else:
            payload = ["sweep-trial", sbbench.__version__, code_hash, self.hparams, self.task.name,
                       self.task.content_hash(), self.seed, self.holdout]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Batch:
    """The jobs an executor runs and how.

    Attributes:
        info: the resolved method (the submitting process's code; workers check theirs against it).
        jobs: ``(cache key, job)`` pairs, in the order to start them.
        limits: the suite's time and memory limits of one ``fit``.
        workers: parallel processes (ignored by ``inline``).
        scheduler: the Dask scheduler address (``dask`` only).
        log: progress messages of the running jobs.
    """

    info: MethodInfo
    jobs: Sequence[tuple[str, JobSpec]]
    limits: Limits
    workers: int = 1
    scheduler: str | None = None
    log: Callable[[str], None] = lambda message: None


Executor = Callable[[Batch], Iterator[tuple[str, RunResult]]]


def run_spec(info: MethodInfo, job: JobSpec, *, fit: Fitter,
             log: Callable[[str], None] = lambda message: None) -> RunResult:
    """Run one job with ``fit`` as its training step: a sweep trial or a scored job, as ``job`` says."""
    if job.holdout is not None:
        return run_trial(info, job.hparams, job.task, job.seed, job.holdout, fit=fit, log=log)
    return run_job(info, job.hparams, job.task, job.seed, log=log, fit=fit)


def run_inline(batch: Batch) -> Iterator[tuple[str, RunResult]]:
    """Every job in this process, one after another (no isolation, no limits; the method's code runs here)."""
    for key, job in batch.jobs:
        yield key, run_spec(batch.info, job, fit=fit_in_process, log=_job_log(batch, job))


def _job_log(batch: Batch, job: JobSpec) -> Callable[[str], None]:
    """``batch.log`` with each message prefixed by its job (parallel jobs' messages interleave)."""
    what = f"{job.task.name} seed {job.seed}" + (" (sweep trial)" if job.holdout is not None else "")
    return lambda message: batch.log(f"{what}: {message}")


def run_isolated(batch: Batch) -> Iterator[tuple[str, RunResult]]:
    """Every job with ``fit`` in a child process, ``workers`` at once; yield as they finish.

    Children get all of this process's torch threads when ``workers == 1`` and one thread each
    otherwise. Each of ``workers`` job threads here prepares a job's data, waits for its child's
    fit and evaluates the model, with as many torch threads as a child: at any moment each job
    slot runs either a fit or an evaluation, so the cores are never oversubscribed (overlapping
    them cost 38% more wall time on 2 cores, OpenMP threads spinning against each other).
    """
    info, workers = batch.info, batch.workers
    fitter = IsolatedFit(limits=batch.limits, threads=None if workers == 1 else 1,
                         slots=threading.Semaphore(workers))

    def one(job: JobSpec) -> RunResult:
        return run_spec(info, job, fit=fitter, log=_job_log(batch, job))

    parent_threads = torch.get_num_threads()
    if workers > 1:
        torch.set_num_threads(1)
    threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sbbench-job")
    try:
        futures = {threads.submit(one, job): key for key, job in batch.jobs}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        fitter.stop()
        threads.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(parent_threads)


def run_on_dask(batch: Batch) -> Iterator[tuple[str, RunResult]]:
    """Every job on the Dask cluster at ``batch.scheduler`` (``None``: a local cluster of ``workers``)."""
    if not batch.jobs:
        return
    info = batch.info
    jobs = dict(batch.jobs)
    with dask_client(batch.scheduler, batch.workers) as client:
        for key, outcome in map_on_dask(client, execute_job, batch.jobs, (info, batch.limits),
                                        name=lambda key: f"sbbench-job-{key}"):
            if isinstance(outcome, RunResult):
                yield key, outcome
                continue
            job = jobs[key]
            reason = f"the Dask cluster could not run this job: {describe_error(outcome)}"
            yield key, failed_result(info, job.hparams, job.task, job.seed, reason)


def run_on_local_dask(batch: Batch) -> Iterator[tuple[str, RunResult]]:
    """:func:`run_on_dask` on a fresh local cluster of ``batch.workers`` single-core processes."""
    yield from run_on_dask(Batch(info=batch.info, jobs=batch.jobs, limits=batch.limits, workers=batch.workers,
                                 scheduler=None, log=batch.log))


EXECUTOR_REGISTRY: dict[str, Executor] = {
    "isolated": run_isolated,
    "inline": run_inline,
    "dask": run_on_dask,
    "dask-local": run_on_local_dask,
}
"""Executor name -> executor; ``sbbench score --executor NAME``, ``sbbench sweep --executor NAME``."""

EXECUTORS: tuple[str, ...] = tuple(EXECUTOR_REGISTRY)


def execute(executor: str, batch: Batch) -> Iterator[tuple[str, RunResult]]:
    """Run ``batch`` on the executor named ``executor`` (raises ``KeyError`` for an unknown name)."""
    if executor not in EXECUTOR_REGISTRY:
        raise KeyError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "dask" and not batch.scheduler:
        raise ClusterError("the dask executor needs a scheduler address")
    return EXECUTOR_REGISTRY[executor](batch)


# --- the Dask side --------------------------------------------------------------------------------------------


def execute_job(job: JobSpec, info: MethodInfo, limits: Limits) -> RunResult:
    """Run one job (scored or trial) in this process with ``fit`` isolated (what Dask workers execute).

    ``info`` is the method as the submitting process resolved it (data: the worker imports no
    method code); the worker's fit child refuses when its copy of the code has another hash,
    and the job fails with that reason. The job uses one torch thread, here and in the fit
    child: a Dask worker runs one job per worker thread, so its threads are its cores.
    """
    torch.set_num_threads(1)
    fitter = IsolatedFit(limits=limits, threads=1)
    return run_spec(info, job, fit=fitter)


@contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[Any]:
    """A ``distributed.Client`` of the scheduler at ``scheduler``, or of a fresh local cluster.

    With ``scheduler=None`` a ``LocalCluster`` of ``workers`` worker processes (one thread each)
    is started for the duration of the block and closed after it. Its workers keep glibc's
    default allocator settings: Dask's usual ``MALLOC_TRIM_THRESHOLD_`` makes torch's large
    temporary tensors page-fault on every allocation (see :data:`sbbench.isolation.SLOW_MALLOC_SETTINGS`).
    Workers must have sbbench installed and see submission folders under the same path.
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


def map_on_dask(client: Any, function: Callable[..., Any], items: Sequence[tuple[Any, Any]], args: tuple = (),
                name: Callable[[Any], str] = str) -> Iterator[tuple[Any, Any]]:
    """Run ``function(item, *args)`` for every ``(key, item)`` on the cluster; yield ``(key, outcome)`` as each ends.

    The outcome is the return value, or the exception the task ended with (for instance
    ``KilledWorker`` after the workers running it died repeatedly). ``name(key)`` is the task's
    key on the cluster. Tasks still running when the caller stops iterating are cancelled.
    """
    from dask.distributed import as_completed as dask_completed

    futures = {client.submit(function, item, *args, key=name(key), pure=False): key for key, item in items}
    try:
        for future in dask_completed(futures):
            try:
                yield futures[future], future.result()
            except Exception as error:
                yield futures[future], error
    finally:
        client.cancel(list(futures))
