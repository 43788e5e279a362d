"""One sweep trial: train on part of what a track may see, score on a selection set, never read the test split.

A trial is a job like a scored one (same method code, hyperparameters, task and data seed, same
:data:`~sbbench.runner.Fitter`, so the same isolation and limits), except for its data and its
result:

* T0, T1 and oracle: a seeded random ``holdout`` share of the *training split* becomes the
  selection set and the method trains on the rest;
* T2: the method trains on the whole training split (as when scored) and the selection set is
  the labeled decorrelated validation set the track already grants.

The result's only metric is :data:`SELECTION_METRIC`. :mod:`sbbench.executors` runs trials as
it runs scored jobs; :mod:`sbbench.sweep` draws the settings and chooses one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from sbbench.data.dataset import Dataset, LabeledSet
from sbbench.methods.base import Track
from sbbench.methods.registry import MethodInfo
from sbbench.metrics.classification import accuracy, predict_logits
from sbbench.results import RunResult
from sbbench.runner import Fitter, build_data, default_device, describe_error, failed_result, fit_job, method_fields
from sbbench.seeding import derive_seed
from sbbench.tasks import Task

SELECTION_METRIC = "selection_acc"
"""The metric key of a trial's result: accuracy on its selection set."""


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


def run_trial(info: MethodInfo, hparams: dict[str, Any], task: Task, seed: int, holdout: float, *, fit: Fitter,
              device: torch.device | None = None, log: Callable[[str], None] = lambda message: None) -> RunResult:
    """Train the method (configured with the validated ``hparams``) on ``task`` at data seed ``seed``, minus
    the selection set, and score it on the selection set.

    ``fit`` trains, as in :func:`sbbench.runner.run_job` (an
    :class:`~sbbench.isolation.IsolatedFit` trains in a child process under the limits); the data,
    the model check and the selection accuracy stay in this process. Returns a :class:`RunResult`
    whose only metric is :data:`SELECTION_METRIC`; failures are recorded (``status="failed"``),
    never raised.
    """
    device = device or default_device()
    started = time.perf_counter()
    try:
        fit_data, selection = selection_split(build_data(task, seed), info.track, seed, holdout)
        model = fit_job(info, hparams, task, fit_data, seed, device=device, log=log, fit=fit)
        trained = time.perf_counter()
        score = accuracy(predict_logits(model, selection.x.to(device)), selection.y.to(device))
    except Exception as error:
        return failed_result(info, hparams, task, seed, describe_error(error), time.perf_counter() - started)
    return RunResult(**method_fields(info, hparams), task=task.name, task_hash=task.content_hash(), seed=seed,
                     status="ok", metrics={SELECTION_METRIC: score}, train_seconds=trained - started,
                     eval_seconds=time.perf_counter() - trained)
