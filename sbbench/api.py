"""The Python API: train a method on one task and seed exactly as a scored job does, then evaluate it.

A job of ``sbbench score`` is (method, hyperparameters, task, data seed): the task's data for
the seed, the method's ``fit`` on what its track may see (in a child process under time and
memory limits), a check of the returned model, and the task's metrics on the test split.
:func:`train` runs the first three steps and hands back the model with everything needed to
look at it; :func:`evaluate` computes the metrics the job records, bit for bit.

Usage::

    from sbbench import api

    trained = api.train("erm", "lms5-ci", seed=0)      # fits in an isolated child process
    metrics = api.evaluate(trained)                    # {"acc": ..., "s_rand_auc": ..., ...}
    logits = trained.model(trained.data.test.x.to(trained.device))   # (n_test, 2)

Names that cannot be found raise :class:`KeyError` listing the known ones; hyperparameters the
method refuses raise :class:`~sbbench.methods.registry.HParamsError`; a method that fails to
train (an exception in ``fit``, a time or memory limit, a model that is not a usable 2-logit
model) raises :class:`TrainingFailed`. See docs/python-api.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sbbench.data.dataset import Dataset
from sbbench.isolation import DEFAULT_LIMITS, IsolatedFit, Limits
from sbbench.methods.registry import HParamsError, MethodInfo, RegistryError, claims, resolve_method
from sbbench.metrics.evaluate import Evaluation
from sbbench.runner import (
    FitFailure,
    Fitter,
    InvalidModel,
    build_data,
    default_device,
    describe_error,
    fit_in_process,
    fit_job,
)
from sbbench.runner import (
    evaluate_job as evaluate_model,
)
from sbbench.tasks import Task, get_task

__all__ = [
    "DEFAULT_LIMITS",
    "Evaluation",
    "FitFailure",
    "HParamsError",
    "InvalidModel",
    "Limits",
    "MethodInfo",
    "Task",
    "TrainedModel",
    "TrainingFailed",
    "evaluate",
    "evaluate_model",
    "get_method",
    "get_task",
    "train",
]


class TrainingFailed(RuntimeError):
    """The method did not produce a usable model for the job; a scored job would be recorded as failed.

    ``job`` names the job (``"erm on lms5-ci, seed 0"``) and ``reason`` is the reason alone, as a
    failed :class:`~sbbench.results.RunResult` records it; ``__cause__`` is the original
    exception (:class:`~sbbench.runner.FitFailure` from a fit process,
    :class:`~sbbench.runner.InvalidModel`, or what an in-process ``fit`` raised).
    """

    def __init__(self, job: str, reason: str) -> None:
        super().__init__(job, reason)
        self.job = job
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.job}: {self.reason}"


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A model trained by :func:`train`, with the job that produced it.

    Attributes:
        model: the trained model, in eval mode, on ``device``: maps ``(n, *data.space.input_shape)``
            float32 inputs to ``(n, 2)`` logits. From a fit process it is a ``torch.fx`` module
            rebuilt from the exported graph (:mod:`sbbench.models.transfer`); it has
            ``features(x) -> (n, width)`` (penultimate activations) when the method's model had it.
        method: the method as resolved by the registry (name, version, track, code hash).
        hparams: the method's full validated hyperparameters (JSON values).
        task: the task definition.
        seed: the job's data seed (the method itself saw ``sbbench.runner.method_seed(seed)``).
        data: the task's data for ``seed``: train, test (never seen by the method), the track's
            side sets and the :class:`~sbbench.data.features.FeatureSpace` naming blocks S and Sc.
        device: where the model lives and where :func:`evaluate` runs it.
    """

    model: nn.Module
    method: MethodInfo
    hparams: dict[str, Any]
    task: Task
    seed: int
    data: Dataset
    device: torch.device

    def evaluate(self) -> dict[str, float]:
        """The same as :func:`evaluate` of this model."""
        return evaluate(self)


def get_method(name_or_path: str | MethodInfo) -> MethodInfo:
    """The method registered as ``name_or_path``, or the submission folder at that path.

    A :class:`MethodInfo` is returned as is. Raises :class:`KeyError` (listing the known
    names) for an unknown name, :class:`~sbbench.methods.registry.RegistryError` for a name
    that two sources claim and :class:`~sbbench.methods.registry.SubmissionError` for a
    malformed folder.
    """
    if isinstance(name_or_path, MethodInfo):
        return name_or_path
    try:
        return resolve_method(name_or_path)
    except RegistryError:
        known = claims()
        if not (Path(name_or_path) / "submission.toml").is_file() and name_or_path not in known:
            raise KeyError(f"unknown method {name_or_path!r}; known methods: {', '.join(sorted(known))}") from None
        raise


def train(method: str | MethodInfo, task: str | Task, seed: int = 0, *, hparams: dict[str, Any] | None = None,
          isolated: bool = True, limits: Limits = DEFAULT_LIMITS, device: torch.device | str | None = None,
          log: Callable[[str], None] | None = None) -> TrainedModel:
    """Train ``method`` on ``task``'s data for data seed ``seed`` exactly as a scored job does.

    Args:
        method: a registered method name, a submission folder's path, or a resolved :class:`MethodInfo`.
        task: a task name (see ``sbbench tasks``) or a :class:`Task`.
        seed: the job's non-negative data seed: it fixes the data draw, and through a one-way hash
            the method's seed (initialisation, shuffling).
        hparams: overrides of the method's default hyperparameters, validated by its ``HParams``
            (``None``: the defaults).
        isolated: train in a child process under ``limits`` and receive the model as data, as
            ``sbbench score`` does (the default); ``False`` imports the method's code and runs
            ``fit`` in this process (:func:`sbbench.runner.fit_in_process`, no limits): only for
            code you trust, such as your own.
        limits: wall-time and memory limits of an isolated fit (default: a suite's defaults).
        device: torch device to train and evaluate on (default: ``$SBBENCH_DEVICE``, else CUDA
            when available, else CPU).
        log: called with each progress message of the training loop.

    Returns:
        The model (in eval mode) with its method, hyperparameters, task, seed, data and device.

    Raises:
        KeyError: unknown task or method name (the message lists the known names).
        HParamsError: ``hparams`` that the method's ``HParams`` refuses.
        ValueError: a negative seed.
        TrainingFailed: ``fit`` raised, ran out of time or memory, or returned an unusable model.
    """
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    task_spec = get_task(task) if isinstance(task, str) else task
    info = get_method(method)
    config = info.configure(hparams or {})
    chosen = torch.device(device) if device is not None else default_device()
    data = build_data(task_spec, seed)
    fitter: Fitter = IsolatedFit(limits=limits) if isolated else fit_in_process
    try:
        model = fit_job(info, config, task_spec, data, seed, device=chosen, log=log or _silent, fit=fitter)
    except Exception as error:
        raise TrainingFailed(f"{info.name} on {task_spec.name}, seed {seed}", describe_error(error)) from error
    return TrainedModel(model=model.eval(), method=info, hparams=config, task=task_spec, seed=seed, data=data,
                        device=chosen)


def evaluate(trained: TrainedModel) -> dict[str, float]:
    """The metrics a scored job records for ``trained`` (the ``metrics`` of its ``RunResult``), bit for bit.

    Keys are listed in :mod:`sbbench.metrics.evaluate` and docs/suites-and-metrics.md, e.g.
    ``acc``, ``auc``, ``s_rand_acc``, ``s_rand_auc``, ``sc_rand_auc``, ``adv_acc_l2_1.0``,
    plus ``<name>_acc``/``_auc`` per extra test set and ``feature_availability``; accuracies
    and AUCs lie in [0, 1]. A value that is not finite is what a scored job records as a failure.
    """
    return evaluate_model(trained.model, trained.task, trained.data, trained.seed, device=trained.device).metrics


def _silent(message: str) -> None:
    """The default training log: discard the message."""
