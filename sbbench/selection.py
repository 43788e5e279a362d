"""One sweep trial: train on part of what a track may see, score on a selection set, never read the test split.

A trial is a job like a scored one (same method code, hyperparameters, task and data seed, same
:data:`~sbbench.runner.Fitter`, so the same isolation and limits), except for its data and its
result. The selection rule depends on the method's track:

* T0 and T1: a seeded random ``holdout`` share of the *training split* becomes the selection
  set and the method trains on the rest; the trial's value is the accuracy on it
  (:data:`SELECTION_ACC`).
* T2 and oracle: the method trains on the whole training split (as when scored) and the
  trial's value is the worst-group accuracy on the labeled decorrelated validation set
  ``data.val`` with each row's S block taken from a random training example
  (:data:`SELECTION_WGA`, :func:`selection_wga`): groups label x "S came from a training
  example of the same label", as the suite's ``s_rand_wga`` groups the test split. A model that
  relies on S alone scores about 0, one that uses S^c keeps its accuracy on its worst class. The harness
  computes the value in the trusted process from the model the method returned; the method is
  never told which block is S (outside the oracle track, whose context holds it anyway) nor
  sees the number. A T2 method also sees the validation set in its training context, as when
  scored; an oracle method does not.

The result's only metric is the rule's key (:func:`selection_metric`). :mod:`sbbench.executors`
runs trials as it runs scored jobs; :mod:`sbbench.sweep` draws the settings and chooses one.
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
from sbbench.metrics.randomization import donor_block_worst_group
from sbbench.results import RunResult
from sbbench.runner import Fitter, build_data, default_device, describe_error, failed_result, fit_job, method_fields
from sbbench.seeding import derive_seed
from sbbench.tasks import Task

SELECTION_ACC = "selection_acc"
"""The metric key of a T0 or T1 trial's result: accuracy on the held-out share of the training split."""

SELECTION_WGA = "selection_wga"
"""The metric key of a T2 or oracle trial's result: S-permuted worst-group accuracy on the validation set."""

SELECTION_METRIC = SELECTION_ACC
"""The first name of :data:`SELECTION_ACC`, kept for code that imports it."""

WGA_REPEATS = 5
"""Permutations of the S block behind a trial's :data:`SELECTION_WGA` (groups pooled over them)."""

VALIDATION_TRACKS = (Track.T2, Track.ORACLE)
"""The tracks whose trials are selected on the validation set (worst-group accuracy)."""


def uses_validation(track: Track) -> bool:
    """Whether trials of ``track`` are selected by worst-group accuracy on the validation set (T2, oracle)."""
    return track in VALIDATION_TRACKS


def selection_metric(track: Track) -> str:
    """The metric key of a trial's result for ``track``: :data:`SELECTION_WGA` or :data:`SELECTION_ACC`."""
    return SELECTION_WGA if uses_validation(track) else SELECTION_ACC


def selection_name(track: Track) -> str:
    """The trial value of ``track`` in a few words, for messages."""
    return "selection worst-group accuracy" if uses_validation(track) else "selection accuracy"


def selection_rule(track: Track, holdout: float) -> str:
    """How trials of ``track`` are scored, in words (recorded in the entry)."""
    if uses_validation(track):
        return (f"worst-group accuracy on the labeled decorrelated validation set with each row's S taken from a "
                f"random training example ({WGA_REPEATS} draws; groups: label x whether S came from an example of "
                f"the same label), computed by the harness (track {track.value}: the method trains on the whole "
                f"training split)")
    return f"accuracy on a held-out {holdout:.0%} of the training split (the method trains on the rest)"


def selection_wga(model: torch.nn.Module, data: Dataset, selection: LabeledSet, seed: int,
                  device: torch.device) -> float:
    """Worst-group accuracy of ``model`` on ``selection`` with its S block taken from training examples.

    :func:`~sbbench.metrics.randomization.donor_block_worst_group` with the training split as
    donors (their S predicts their label, so "S agrees with the label" is known for every row)
    and ``WGA_REPEATS`` draws from ``derive_seed(seed, "sweep selection wga")`` (``seed``: the
    trial's data seed), so every trial of a sweep sees the same draws. On a ``rho < 1`` task the
    ``1 - rho`` share of donors whose S conflicts with their label blurs the groups by as much.
    """
    return donor_block_worst_group(model, selection.x.to(device), selection.y.to(device), data.train.x.to(device),
                                   data.train.y, data.space, "S", repeats=WGA_REPEATS,
                                   seed=derive_seed(seed, "sweep selection wga"))


def selection_split(data: Dataset, track: Track, seed: int, holdout: float) -> tuple[Dataset, LabeledSet]:
    """What a trial trains on and what it is scored on; ``data.test`` is never read.

    T0, T1: a seeded random ``holdout`` share of the training split becomes the selection set
    and is removed from the training split. T2, oracle: the training data are unchanged and the
    selection set is the labeled decorrelated validation set.

    Returns:
        ``(data with the reduced training split, selection set)``.

    Raises:
        ValueError: a T2 or oracle track and no validation set, or a ``holdout`` outside (0, 1).
    """
    if uses_validation(track):
        if data.val is None:
            raise ValueError(f"a {track.value} sweep selects on the task's labeled decorrelated validation set, "
                             "but the task has none")
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
    the selection set, and score it on the selection set by the track's rule.

    ``fit`` trains, as in :func:`sbbench.runner.run_job` (an
    :class:`~sbbench.isolation.IsolatedFit` trains in a child process under the limits); the data,
    the model check and the selection value stay in this process. Returns a :class:`RunResult`
    whose only metric is :func:`selection_metric` of the track (accuracy on the held-out share,
    or the S-permuted worst-group accuracy on the validation set); failures are recorded
    (``status="failed"``), never raised.
    """
    device = device or default_device()
    started = time.perf_counter()
    try:
        fit_data, selection = selection_split(build_data(task, seed), info.track, seed, holdout)
        model = fit_job(info, hparams, task, fit_data, seed, device=device, log=log, fit=fit)
        trained = time.perf_counter()
        if uses_validation(info.track):
            score = selection_wga(model, fit_data, selection, seed, device)
        else:
            score = accuracy(predict_logits(model, selection.x.to(device)), selection.y.to(device))
    except Exception as error:
        return failed_result(info, hparams, task, seed, describe_error(error), time.perf_counter() - started)
    return RunResult(**method_fields(info, hparams), task=task.name, task_hash=task.content_hash(), seed=seed,
                     status="ok", metrics={selection_metric(info.track): score}, train_seconds=trained - started,
                     eval_seconds=time.perf_counter() - trained)
