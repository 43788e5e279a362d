"""Seeded random hyperparameter search, with a selection rule that never reads a test set.

A sweep of ``K`` trials on a suite:

1. **Draws.** Trial 0 is the method's defaults; trials ``1 .. K-1`` draw every hyperparameter
   that declares a search range (``hparam(low=, high=, log=)`` or ``hparam(choices=)``)
   independently: log-uniform or uniform on ``[low, high]`` (rounded for integer fields) or
   uniform over the choices. Fields without a range keep their defaults. The draws come from
   their own generator, ``derive_seed(seed, "sweep draws")``, so they depend on the sweep seed
   only: not on the training seeds, torch's global RNG or anything a trial does.
2. **Trials.** Each trial trains once per task of the suite, at the single data and training
   seed ``TRIAL_SEED_BASE + seed`` (10000 + seed: never one of a suite's scoring seeds, and the
   same for every trial, so trials differ only in their hyperparameters).
3. **Selection data**, by the method's track:

   * T0, T1 and oracle: a held-out share (``holdout``, default 20%) of the *training split*,
     carved inside the job with a seeded permutation; the method trains on the rest.
   * T2: the labeled decorrelated validation set the track already grants (the method trains
     on the whole training split, as when scored).

   The test split is never read: a trial builds its training context from the training split,
   pool and validation set only, and scores on the selection set.
4. **Choice.** The trial with the highest selection accuracy, averaged over the suite's tasks,
   wins; a failed trial never wins; ties go to the lowest trial index (the defaults first).
5. The chosen setting is then scored over the suite's own seeds with the normal
   :func:`sbbench.scoring.score` path, and the entry records the search in ``hparams_source``.

Trials are cached in the result cache like scored jobs, under keys of their own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import sbbench
from sbbench.cache import ResultCache
from sbbench.data.dataset import Dataset, LabeledSet
from sbbench.methods.base import Method, Track
from sbbench.methods.registry import MethodInfo
from sbbench.metrics.classification import accuracy, predict_logits
from sbbench.results import RunResult
from sbbench.runner import build_data, default_device, describe_error, failed_result, fit_job, method_fields
from sbbench.seeding import derive_seed
from sbbench.suite import Suite
from sbbench.tasks import Task

TRIAL_SEED_BASE = 10_000
"""Trials train at seed ``TRIAL_SEED_BASE + sweep seed``, outside every suite's scoring seeds."""

SELECTION_METRIC = "selection_acc"
"""The metric key of a trial's result: accuracy on its selection set."""


def search_space(cls: type[Method]) -> dict[str, dict[str, Any]]:
    """Field name -> search spec (``{"low", "high", "log"}`` or ``{"choices"}``) plus ``"type"``.

    Read from the JSON schema of ``cls.HParams``, in declaration order; fields without a
    range are absent.
    """
    properties = cls.HParams.model_json_schema()["properties"]
    return {name: {**prop["search"], "type": prop.get("type")} for name, prop in properties.items()
            if "search" in prop}


def draw_hparams(cls: type[Method], trials: int, seed: int) -> list[dict[str, Any]]:
    """The full, validated hyperparameters of ``trials`` trials (trial 0: the defaults).

    Args:
        cls: the method class; its ``HParams`` fields declare the ranges.
        trials: number of trials ``K >= 1``.
        seed: the sweep seed; the only source of randomness.

    Returns:
        ``K`` dicts as ``HParams.model_dump(mode="json")`` gives them.
    """
    if trials < 1:
        raise ValueError(f"a sweep needs at least one trial, got {trials}")
    space = search_space(cls)
    rng = np.random.default_rng(derive_seed(seed, "sweep draws"))
    drawn = [cls.defaults().model_dump(mode="json")]
    for _ in range(trials - 1):
        overrides = {name: _draw(spec, rng) for name, spec in space.items()}
        drawn.append(cls.with_overrides(overrides).hparams.model_dump(mode="json"))
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


def selection_rule(track: Track, holdout: float) -> str:
    """How trials of ``track`` are scored, in words (recorded in the entry)."""
    if track == Track.T2:
        return "accuracy on the labeled decorrelated validation set (track T2)"
    return f"accuracy on a held-out {holdout:.0%} of the training split (the method trains on the rest)"


def selection_split(data: Dataset, track: Track, seed: int, holdout: float) -> tuple[Dataset, LabeledSet]:
    """What a trial trains on and what it is scored on; ``data.test`` is never read.

    T0, T1, oracle: a seeded random ``holdout`` share of the training split becomes the
    selection set and is removed from the training split. T2: the training data are unchanged
    and the selection set is the labeled decorrelated validation set.

    Returns:
        ``(data with the reduced training split, selection set)``.
    """
    if track == Track.T2:
        if data.val is None:
            raise ValueError("a T2 sweep needs the task's labeled decorrelated validation set, but it has none")
        return data, data.val
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must lie in (0, 1), got {holdout}")
    n = len(data.train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, "sweep holdout")))
    held, kept = order[: round(holdout * n)], order[round(holdout * n):]
    if len(held) == 0 or len(kept) == 0:
        raise ValueError(f"holdout {holdout} leaves an empty split of the {n} training examples")
    train = LabeledSet(x=data.train.x[kept], y=data.train.y[kept])
    selection = LabeledSet(x=data.train.x[held], y=data.train.y[held])
    return dataclasses.replace(data, train=train), selection


def run_trial(info: MethodInfo, hparams: dict[str, Any], task: Task, seed: int, holdout: float, *,
              device: torch.device | None = None, log: Callable[[str], None] = lambda message: None) -> RunResult:
    """Train one setting on one task at ``seed`` and score it on the selection set.

    Returns a :class:`RunResult` whose only metric is ``selection_acc``; failures are recorded
    (``status="failed"``), never raised.
    """
    device = device or default_device()
    started = time.perf_counter()
    try:
        fit_data, selection = selection_split(build_data(task, seed), info.cls.track, seed, holdout)
        model = fit_job(info, info.make(hparams), task, fit_data, seed, device=device, log=log)
        trained = time.perf_counter()
        score = accuracy(predict_logits(model, selection.x.to(device)), selection.y.to(device))
    except Exception as error:
        return failed_result(info, hparams, task, seed, describe_error(error), time.perf_counter() - started)
    return RunResult(**method_fields(info, hparams), task=task.name, task_hash=task.content_hash(), seed=seed,
                     status="ok", metrics={SELECTION_METRIC: score}, train_seconds=trained - started,
                     eval_seconds=time.perf_counter() - trained)


def trial_key(info: MethodInfo, hparams: dict[str, Any], task: Task, seed: int, holdout: float) -> str:
    """Cache key of a trial; disjoint from scored jobs' keys by its leading tag."""
    rule = selection_rule(info.cls.track, holdout)
    payload = json.dumps(["sweep-trial", sbbench.__version__, info.code_hash, hparams, task.name,
                          task.content_hash(), seed, rule], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Trial:
    """One setting's trial results over the suite's tasks and its selection score."""

    index: int
    hparams: dict[str, Any]
    results: list[RunResult]

    @property
    def score(self) -> float:
        """Mean over tasks of ``selection_acc``; ``-inf`` when any task failed."""
        if any(r.status != "ok" for r in self.results):
            return -math.inf
        return float(np.mean([r.metrics[SELECTION_METRIC] for r in self.results]))


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
    """Every trial, the chosen one, and the ``hparams_source`` text describing the search."""

    trials: list[Trial]
    best: Trial
    source: str


def run_sweep(info: MethodInfo, suite: Suite, trials: int, seed: int, *, cache: ResultCache, holdout: float = 0.2,
              on_trial: Callable[[Trial], None] = lambda trial: None,
              log: Callable[[str], None] = lambda message: None) -> SweepOutcome:
    """Run the random search of ``trials`` settings on ``suite`` and select one (module docstring).

    Trials found in ``cache`` (status ok) are reused; new ones are stored.
    """
    seed_of_trials = trial_seed(seed)
    done = []
    for index, hparams in enumerate(draw_hparams(info.cls, trials, seed)):
        results = []
        for task in suite.tasks:
            key = trial_key(info, hparams, task, seed_of_trials, holdout)
            result = cache.load(key)
            if result is None or result.status != "ok":
                result = run_trial(info, hparams, task, seed_of_trials, holdout,
                                   log=lambda message, i=index, t=task.name: log(f"trial {i}, {t}: {message}"))
                cache.store(key, result)
            results.append(result)
        trial = Trial(index=index, hparams=hparams, results=results)
        on_trial(trial)
        done.append(trial)
    best = select_trial(done)
    source = (f"random search, {trials} trials (trial 0 = defaults, the rest drawn from the declared ranges), "
              f"seed {seed}; each trial trained once per task at seed {seed_of_trials}; selected by "
              f"{selection_rule(info.cls.track, holdout)}, mean over tasks; chosen: trial {best.index} "
              f"({best.score:.4f})")
    return SweepOutcome(trials=done, best=best, source=source)
