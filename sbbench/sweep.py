"""Seeded random hyperparameter search, with a selection rule that never reads a test set.

The protocol (``docs/sweep.md``): a sweep of ``K`` trials (:data:`DEFAULT_TRIALS` = 8 by
default; an entry is ``tuned`` only when ``K >= 8``, ``exploratory`` below) on a suite:

1. **Draws.** Trial 0 is the method's defaults; trials ``1 .. K-1`` draw every hyperparameter
   that declares a search range (``hparam(low=, high=, log=)`` or ``hparam(choices=)``)
   independently: log-uniform or uniform on ``[low, high]`` (rounded for integer fields) or
   uniform over the choices. Fields without a range keep their defaults. The draws come from
   their own generator, ``derive_seed(seed, "sweep draws")``, so they depend on the sweep seed
   only: not on the training seeds, torch's global RNG or anything a trial does. The ranges and
   defaults are read from the method's description (its ``HParams`` JSON schema), and all draws
   are validated by the method's ``HParams`` in one call (one child process for a method that is
   not built in): no method code runs in this process.
2. **Trials.** Each trial trains once per task of the suite, at the single data and training
   seed ``TRIAL_SEED_BASE + seed`` (10000 + seed: never one of a suite's scoring seeds, and the
   same for every trial, so trials differ only in their hyperparameters). Every (trial, task)
   is a job (:class:`~sbbench.executors.JobSpec` with a ``holdout``) run by the same executors
   as a score: by default ``fit`` runs in an isolated child process under the suite's time and
   memory limits (:mod:`sbbench.isolation`), and a failure is a failed result with its reason.
3. **Selection value**, by the method's track (:mod:`sbbench.selection`):

   * T0 and T1: accuracy on a held-out share (``holdout``, default 20%) of the *training
     split*, carved inside the job with a seeded permutation; the method trains on the rest.
   * T2 and oracle: worst-group accuracy on the labeled decorrelated validation set with S
     permuted across its rows (groups: label x "S came from a row of the same label"), computed
     by the harness; the method trains on the whole training split, as when scored. A task
     without a validation set is refused before anything trains.

   The test split is never read: a trial builds its training context from the training split,
   pool and validation set only, and scores on the selection set.
4. **Choice.** The trial with the highest selection value, averaged over the suite's tasks,
   wins; a failed trial never wins; ties go to the lowest trial index (the defaults first).
5. The chosen setting is then scored over the suite's own seeds with the normal
   :func:`sbbench.scoring.score` path, and the entry records the search: every trial in its
   :class:`~sbbench.tuning.Tuning` record (:func:`tuning_record`), and a summary in
   ``hparams_source``.

Trials are cached in the result cache like scored jobs, under keys of their own
(:meth:`sbbench.executors.JobSpec.key`), so an interrupted sweep reruns only the trials that
are missing or failed (or whose cached result lacks the rule's metric: a T2 trial cached
before the worst-group rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sbbench.cache import ResultCache
from sbbench.executors import Batch, JobSpec, execute
from sbbench.isolation import Limits
from sbbench.methods.base import Track
from sbbench.methods.registry import HParamsError, MethodInfo
from sbbench.results import RunResult
from sbbench.seeding import derive_seed
from sbbench.selection import (
    SELECTION_ACC,
    SELECTION_METRIC,
    SELECTION_WGA,
    selection_metric,
    selection_rule,
    uses_validation,
)
from sbbench.suite import Suite
from sbbench.tuning import MIN_TUNED_TRIALS, TrialRecord, TrialTask, Tuning, sweep_status

TRIAL_SEED_BASE = 10_000
"""Trials train at seed ``TRIAL_SEED_BASE + sweep seed``, outside every suite's scoring seeds."""

DEFAULT_TRIALS = MIN_TUNED_TRIALS
"""The protocol's K (``sbbench sweep --trials``): 8, the fewest trials that make an entry ``tuned``."""

__all__ = ["DEFAULT_TRIALS", "SELECTION_ACC", "SELECTION_METRIC", "SELECTION_WGA", "TRIAL_SEED_BASE",
           "SweepOutcome", "Trial", "check_selection_data", "draw_hparams", "run_sweep", "search_space",
           "select_trial", "selection_rule", "trial_jobs", "trial_seed", "tuning_record"]


def search_space(info: MethodInfo) -> dict[str, dict[str, Any]]:
    """Field name -> search spec (``{"low", "high", "log"}`` or ``{"choices"}``) plus ``"type"``.

    Read from the method's ``HParams`` JSON schema (``info.description.hparams_schema``), in
    declaration order; fields without a range are absent.
    """
    properties = info.description.hparams_schema.get("properties", {})
    return {name: {**prop["search"], "type": prop.get("type")} for name, prop in properties.items()
            if "search" in prop}


def draw_hparams(info: MethodInfo, trials: int, seed: int) -> list[dict[str, Any]]:
    """The full, validated hyperparameters of ``trials`` trials (trial 0: the defaults).

    Args:
        info: the method; its description holds the ranges (the ``HParams`` JSON schema) and
            the defaults.
        trials: number of trials ``K >= 1``.
        seed: the sweep seed; the only source of randomness.

    Returns:
        ``K`` dicts as ``HParams.model_dump(mode="json")`` gives them.

    Raises:
        HParamsError: a drawn setting that the method's ``HParams`` refuses (naming the trial).
    """
    if trials < 1:
        raise ValueError(f"a sweep needs at least one trial, got {trials}")
    space = search_space(info)
    rng = np.random.default_rng(derive_seed(seed, "sweep draws"))
    overrides = [{name: _draw(spec, rng) for name, spec in space.items()} for _ in range(trials - 1)]
    validated = info.validate(overrides) if overrides else []
    drawn = [dict(info.defaults)]
    for index, outcome in enumerate(validated, start=1):
        if outcome.error is not None or outcome.values is None:
            raise HParamsError(f"trial {index} drew a setting that method {info.name} refuses: {outcome.error} "
                               f"(drawn: {overrides[index - 1]}); fix the declared range")
        drawn.append(outcome.values)
    return drawn


def _draw(spec: dict[str, Any], rng: np.random.Generator) -> Any:
    """One value from a search spec: a choice, or (log-)uniform on ``[low, high]``."""
    if "choices" in spec:
        return spec["choices"][int(rng.integers(len(spec["choices"])))]
    low, high = float(spec["low"]), float(spec["high"])
    value = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if spec["log"] else float(rng.uniform(low, high))
    return round(value) if spec["type"] == "integer" else value


def trial_seed(seed: int) -> int:
    """The data and training seed of every trial of a sweep with seed ``seed``."""
    return TRIAL_SEED_BASE + seed


@dataclass(frozen=True)
class Trial:
    """One setting's trial results over the suite's tasks and its selection score.

    ``metric`` is the results' selection metric (:func:`sbbench.selection.selection_metric` of
    the method's track).
    """

    index: int
    hparams: dict[str, Any]
    results: list[RunResult]
    metric: str = SELECTION_ACC

    @property
    def failed(self) -> bool:
        """Whether any task of the trial failed (such a trial is never chosen)."""
        return any(r.status != "ok" for r in self.results)

    @property
    def score(self) -> float:
        """Mean over tasks of the selection metric; ``-inf`` when any task failed."""
        if self.failed:
            return -math.inf
        return float(np.mean([r.metrics[self.metric] for r in self.results]))


def select_trial(trials: list[Trial]) -> Trial:
    """The trial with the highest :attr:`Trial.score`; ties go to the lowest index.

    Raises ``ValueError`` when every trial failed.
    """
    best = max(trials, key=lambda trial: (trial.score, -trial.index))
    if best.score == -math.inf:
        raise ValueError("every trial failed: " + "; ".join(
            f"trial {t.index} {r.task}: {r.error}" for t in trials for r in t.results if r.status != "ok"))
    return best


@dataclass(frozen=True)
class SweepOutcome:
    """Every trial, the chosen one, the entry's record of the search, and the job counts.

    ``source`` is the ``hparams_source`` text describing the search and ``tuning`` the entry's
    structured record of it; ``best`` and ``tuning`` are ``None`` (and ``source`` empty) when
    every trial failed. ``jobs`` counts the distinct trial jobs (trials that drew the same
    setting share theirs), ``reused`` those taken from the cache.
    """

    trials: list[Trial]
    best: Trial | None
    source: str
    jobs: int = 0
    reused: int = 0
    tuning: Tuning | None = None


def tuning_record(trials: list[Trial], best: Trial, track: Track, seed: int, holdout: float) -> Tuning:
    """The entry's :class:`~sbbench.tuning.Tuning` record of a sweep whose choice is ``best``.

    Status ``tuned`` when ``len(trials) >= 8`` (failed trials count), else ``exploratory``; every
    trial with its hyperparameters, its selection value per task and its mean over tasks (``None``
    when failed), and the error of each failed task. ``holdout`` is recorded only for the tracks
    whose rule uses it (T0, T1).
    """
    records = []
    for trial in trials:
        tasks = [TrialTask(task=r.task, status=r.status, error=r.error,
                           value=r.metrics.get(trial.metric) if r.status == "ok" else None) for r in trial.results]
        records.append(TrialRecord(index=trial.index, hparams=trial.hparams, status="failed" if trial.failed else "ok",
                                   value=None if trial.failed else trial.score, tasks=tasks))
    return Tuning(status=sweep_status(len(trials)), rule=selection_rule(track, holdout) + ", mean over tasks",
                  metric=selection_metric(track), k=len(trials), sweep_seed=seed, trial_seed=trial_seed(seed),
                  holdout=None if uses_validation(track) else holdout, chosen=best.index, trials=records)


def check_selection_data(info: MethodInfo, suite: Suite) -> None:
    """Refuse, before anything trains, a T2 or oracle sweep on a suite with a task that has no validation set.

    Raises ``ValueError`` naming the tasks.
    """
    if not uses_validation(info.track):
        return
    missing = [task.name for task in suite.tasks if task.data.n_val == 0]
    if missing:
        raise ValueError(f"a {info.track.value} sweep selects by worst-group accuracy on each task's labeled "
                         f"decorrelated validation set, but {', '.join(missing)} of suite {suite.label} has none "
                         "(n_val = 0): sweep on a suite whose tasks have one")


def trial_jobs(info: MethodInfo, suite: Suite, draws: list[dict[str, Any]], seed: int,
               holdout: float) -> dict[str, tuple[JobSpec, list[int]]]:
    """Cache key -> (job, indices of the trials it belongs to) for every trial x task of the sweep.

    In trial order, tasks in suite order; trials that drew the same setting share their jobs.
    """
    suite_hash = suite.content_hash()
    jobs: dict[str, tuple[JobSpec, list[int]]] = {}
    for index, hparams in enumerate(draws):
        for task in suite.tasks:
            job = JobSpec(hparams=hparams, task=task, seed=trial_seed(seed), holdout=holdout)
            jobs.setdefault(job.key(info.code_hash, suite_hash), (job, []))[1].append(index)
    return jobs


def run_sweep(info: MethodInfo, suite: Suite, trials: int, seed: int, *, cache: ResultCache, holdout: float = 0.2,
              executor: str = "isolated", workers: int = 1, scheduler: str | None = None,
              limits: Limits | None = None,
              on_result: Callable[[RunResult, bool], None] = lambda result, reused: None,
              on_trial: Callable[[Trial, bool], None] = lambda trial, reused: None,
              log: Callable[[str], None] = lambda message: None) -> SweepOutcome:
    """Run the random search of ``trials`` settings on ``suite`` and select one (module docstring).

    Every trial x task is a job run by ``executor`` (``isolated`` by default: ``fit`` in a child
    process under ``limits``, the suite's unless given), exactly as :func:`sbbench.scoring.score`
    runs scored jobs, with ``workers`` parallel processes and the Dask ``scheduler``. Trial jobs
    found in ``cache`` with status ok are reused; the others run and are stored as they finish.
    ``on_result(result, reused)`` is called once per distinct trial job, ``on_trial(trial, reused)``
    once per trial when its last task is in (``reused``: every task of it came from the cache).
    A cached trial result is reused only when it holds the track's selection metric.
    Raises :class:`~sbbench.methods.registry.HParamsError` for a drawn setting the method refuses,
    ``ValueError`` for a T2 or oracle sweep on a task without a validation set
    (:func:`check_selection_data`) and :class:`sbbench.executors.ClusterError` when a Dask
    executor cannot start.
    """
    check_selection_data(info, suite)
    metric = selection_metric(info.track)
    draws = draw_hparams(info, trials, seed)
    jobs = trial_jobs(info, suite, draws, seed, holdout)
    keys_of = {index: [key for key, (_, indices) in jobs.items() if index in indices] for index in range(trials)}
    results: dict[str, RunResult] = {}
    ran: set[str] = set()
    done: dict[int, Trial] = {}

    def arrived(key: str, result: RunResult, reused: bool) -> None:
        results[key] = result
        if not reused:
            ran.add(key)
        on_result(result, reused)
        for index in jobs[key][1]:
            if index not in done and all(k in results for k in keys_of[index]):
                done[index] = Trial(index=index, hparams=draws[index], results=[results[k] for k in keys_of[index]],
                                    metric=metric)
                on_trial(done[index], not ran.intersection(keys_of[index]))

    for key in jobs:
        cached = cache.load(key)
        if cached is not None and cached.status == "ok" and metric in cached.metrics:
            arrived(key, cached, True)
    reused = len(results)
    pending = [(key, job) for key, (job, _) in jobs.items() if key not in results]
    batch = Batch(info=info, jobs=pending, limits=limits or Limits.of(suite), workers=workers, scheduler=scheduler,
                  log=log)
    for key, result in execute(executor, batch):
        cache.store(key, result)
        arrived(key, result, False)
    ordered = [done[index] for index in range(trials)]
    if all(trial.failed for trial in ordered):
        return SweepOutcome(trials=ordered, best=None, source="", jobs=len(jobs), reused=reused)
    best = select_trial(ordered)
    source = (f"random search, {trials} trials (trial 0 = defaults, the rest drawn from the declared ranges), "
              f"seed {seed}; each trial trained once per task at seed {trial_seed(seed)}; selected by "
              f"{selection_rule(info.track, holdout)}, mean over tasks; chosen: trial {best.index} "
              f"({best.score:.4f})")
    return SweepOutcome(trials=ordered, best=best, source=source, jobs=len(jobs), reused=reused,
                        tuning=tuning_record(ordered, best, info.track, seed, holdout))
