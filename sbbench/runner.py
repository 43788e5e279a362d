"""Running one job: build the task's data, let the method fit, evaluate on held-out data.

A job is a pure function of (method code + hyperparameters, task, seed), so every executor
gives the same numbers. The job's ``seed`` is its *data seed*: the data and the evaluation's
random draws derive from it. The method sees only its own *method seed*,
:func:`method_seed` (a one-way hash of the data seed), which seeds torch's global RNG before
``fit`` and is ``ctx.seed``: a method cannot recover the data seed from it, so it cannot
regenerate its job's data (test split, which block is S) from the public generator.
Errors inside the method or the evaluation become a failed :class:`RunResult` carrying the
reason; they never escape. What the method reports about its training
(:meth:`~sbbench.methods.base.TrainContext.report`) is stored in the result's ``training``.
"""

from __future__ import annotations

import math
import os
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sbbench.data.dataset import Dataset
from sbbench.methods.base import Track, TrainContext, TrainDiagnostics
from sbbench.methods.registry import MethodInfo
from sbbench.metrics.availability import feature_availability
from sbbench.metrics.classification import accuracy, margin_scores, predict_logits, roc_auc
from sbbench.metrics.evaluate import Evaluation, evaluate
from sbbench.models import BackboneFactory
from sbbench.results import RunResult, checked_diagnostics
from sbbench.seeding import derive_seed
from sbbench.tasks import Task

_DATA_CACHE: dict[tuple[str, int], Dataset] = {}
_DATA_CACHE_SIZE = 4
_DATA_LOCK = threading.Lock()


class InvalidModel(RuntimeError):
    """``fit`` returned something that is not a usable 2-logit model."""


class FitFailure(RuntimeError):
    """``fit`` failed where the runner cannot see the exception (e.g. in a child process).

    The message is the complete reason recorded in the failed :class:`RunResult`.
    """


Fitter = Callable[[MethodInfo, dict[str, Any], TrainContext], nn.Module]
"""How ``run_job`` trains: given the method, its validated hyperparameters and the context; returns the model.

What the method reports (:meth:`~sbbench.methods.base.TrainContext.report`) must end up in the
given context's ``ctx.diagnostics``."""


def fit_in_process(info: MethodInfo, hparams: dict[str, Any], ctx: TrainContext) -> nn.Module:
    """The in-process :data:`Fitter`: imports the method's class here and calls ``fit`` (no isolation).

    Seeds torch's global RNG with ``ctx.seed`` first, as a fit process does.
    """
    cls = info.load_class()
    method = cls(cls.HParams.model_validate(hparams))
    torch.manual_seed(ctx.seed)
    return method.fit(ctx)


def method_seed(data_seed: int) -> int:
    """The seed a method sees for the job of ``data_seed`` (one-way: it does not reveal ``data_seed``)."""
    return derive_seed(data_seed, "method")


def build_data(task: Task, seed: int) -> Dataset:
    """The task's dataset for ``seed``, memoised per process (a few most recent); thread-safe."""
    key = (task.content_hash(), seed)
    with _DATA_LOCK:
        if key not in _DATA_CACHE:
            if len(_DATA_CACHE) >= _DATA_CACHE_SIZE:
                _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
            _DATA_CACHE[key] = task.build(seed)
        return _DATA_CACHE[key]


def method_fields(info: MethodInfo, hparams: dict[str, Any]) -> dict[str, object]:
    """The :class:`RunResult` fields that identify a method configured with ``hparams`` (validated, as JSON)."""
    return {"method": info.name, "method_version": info.version, "track": info.track.value,
            "code_hash": info.code_hash, "hparams": hparams}


def failed_result(info: MethodInfo, hparams: dict[str, Any], task: Task, seed: int, reason: str,
                  seconds: float = 0.0) -> RunResult:
    """The record of a job that failed for ``reason`` after ``seconds`` of training."""
    return RunResult(**method_fields(info, hparams), task=task.name, task_hash=task.content_hash(), seed=seed,
                     status="failed", error=reason, train_seconds=seconds)


def train_context(task: Task, data: Dataset, track: Track, seed: int, device: torch.device,
                  log: Callable[[str], None], diagnostics: TrainDiagnostics | None = None) -> TrainContext:
    """What a method of ``track`` may see of ``data`` (the draw for data seed ``seed``): never the test split,
    the data seed or the task's generator; ``ctx.seed`` is :func:`method_seed`. The method's reports go to
    ``diagnostics`` (default: a fresh recorder, ``ctx.diagnostics``)."""
    sees_pool = track in (Track.T1, Track.T2)
    input_shape = data.space.input_shape
    return TrainContext(
        train=_to(data.train, device),
        input_shape=input_shape,
        budget=task.budget,
        seed=method_seed(seed),
        device=device,
        make_backbone=BackboneFactory(task.backbone, input_shape, device),
        pool=data.pool.x.to(device) if sees_pool and data.pool is not None else None,
        val=_to(data.val, device) if track == Track.T2 and data.val is not None else None,
        space=data.space if track == Track.ORACLE else None,
        log=log,
        diagnostics=diagnostics if diagnostics is not None else TrainDiagnostics(),
    )


def fit_job(info: MethodInfo, hparams: dict[str, Any], task: Task, data: Dataset, seed: int, *,
            device: torch.device, log: Callable[[str], None] = lambda message: None,
            fit: Fitter = fit_in_process, diagnostics: TrainDiagnostics | None = None) -> nn.Module:
    """Train the method on ``data`` (the draw of ``task`` for data seed ``seed``) exactly as a scored job does.

    Builds the track's :class:`TrainContext` (never the test split), calls ``fit`` and checks
    that the result is a usable 2-logit model. What the method reports about its training is
    recorded in ``diagnostics`` when given (every :data:`Fitter` fills ``ctx.diagnostics``:
    in this process directly, an isolated one from the child's JSON answer). Raises whatever
    ``fit`` raises, or :class:`InvalidModel`.
    """
    model = fit(info, hparams, train_context(task, data, info.track, seed, device, log, diagnostics))
    check_model(model, data.train.x[:8].to(device))
    return model


def run_job(info: MethodInfo, hparams: dict[str, Any], task: Task, seed: int, *, device: torch.device | None = None,
            log: Callable[[str], None] = lambda message: None, fit: Fitter = fit_in_process) -> RunResult:
    """Train the method (configured with the validated ``hparams``) on ``task`` at data seed ``seed`` and
    evaluate it; failures are recorded, not raised.

    ``fit`` runs the training step (:mod:`sbbench.isolation` runs it in a child process; the
    default, in this process, is for built-in methods and debugging); data, the model check and
    the evaluation always happen here. The method's training diagnostics
    (:meth:`~sbbench.methods.base.TrainContext.report`) become the result's ``training``.
    """
    device = device or default_device()
    record = {**method_fields(info, hparams), "task": task.name, "task_hash": task.content_hash(), "seed": seed}
    started = time.perf_counter()
    diagnostics = TrainDiagnostics()
    try:
        data = build_data(task, seed)
        model = fit_job(info, hparams, task, data, seed, device=device, log=log, fit=fit, diagnostics=diagnostics)
        training = checked_diagnostics(diagnostics.values())
        trained = time.perf_counter()
        evaluation = evaluate_job(model, task, data, seed, device=device)
        metrics = evaluation.metrics
    except Exception as error:
        return failed_result(info, hparams, task, seed, describe_error(error), time.perf_counter() - started)
    not_finite = non_finite_metrics(metrics)
    if not_finite:
        return failed_result(info, hparams, task, seed,
                             f"the model's metrics are not finite: {', '.join(not_finite)} (its outputs are "
                             "probably NaN or infinite on some test inputs or batch sizes)",
                             time.perf_counter() - started)
    return RunResult(**record, status="ok", metrics=metrics, profiles=evaluation.profiles, training=training,
                     train_seconds=trained - started, eval_seconds=time.perf_counter() - trained)


def evaluate_job(model: nn.Module, task: Task, data: Dataset, seed: int, *,
                 device: torch.device | None = None) -> Evaluation:
    """Evaluate ``model`` on ``data`` (``task``'s draw for data seed ``seed``) as a scored job does.

    Computes ``task.metrics`` on the test split (:func:`sbbench.metrics.evaluate.evaluate`,
    random draws seeded by ``seed``), accuracy and AUC on each of ``data.extra_tests``
    (:func:`extra_test_metrics`) and, for a model with ``features``, the
    linear-probe ``feature_availability``.

    Args:
        model: a two-class model mapping ``(n, *data.space.input_shape)`` to ``(n, 2)`` logits.
        task: the task whose metric specification applies.
        data: the task's data for ``seed`` (:func:`sbbench.runner.build_data`).
        seed: the job's data seed.
        device: where ``model`` lives; the test split is moved there (default: :func:`default_device`).

    Returns:
        The scalar metrics and, when the task asks for them, the per-coordinate profiles.
    """
    device = device or default_device()
    evaluation = evaluate(model, data.test.x.to(device), data.test.y.to(device), data.space, task.metrics, seed=seed)
    metrics = evaluation.metrics | extra_test_metrics(model, data, task.metrics.batch_size)
    availability = feature_availability(model, data.train.x, data.train.y, data.test.x, data.test.y, data.space,
                                        seed=derive_seed(seed, "feature_availability"))
    if availability is not None:
        metrics["feature_availability"] = availability
    return Evaluation(metrics=metrics, profiles=evaluation.profiles)


def non_finite_metrics(metrics: dict[str, float]) -> list[str]:
    """``name=value`` of every metric that is not a finite number (NaN, infinite, or not a number at all)."""
    bad = []
    for name, value in sorted(metrics.items()):
        try:
            finite = math.isfinite(value)
        except TypeError:
            finite = False
        if not finite:
            bad.append(f"{name}={value}")
    return bad


def extra_test_metrics(model: nn.Module, data: Dataset, batch_size: int) -> dict[str, float]:
    """``<name>_acc`` and ``<name>_auc`` on each of the dataset's extra test sets (e.g. ``fresh_s_rand``)."""
    metrics = {}
    for name, split in data.extra_tests.items():
        logits = predict_logits(model, split.x, batch_size)
        metrics[f"{name}_acc"] = accuracy(logits, split.y)
        metrics[f"{name}_auc"] = roc_auc(margin_scores(logits), split.y)
    return metrics


def check_model(model: object, x: torch.Tensor) -> None:
    """Raise :class:`InvalidModel` unless ``model`` maps ``x`` to finite ``(n, 2)`` logits with input gradients."""
    if not isinstance(model, nn.Module):
        raise InvalidModel(f"fit must return a torch.nn.Module, got {type(model).__name__}")
    model.eval()
    with torch.no_grad():
        logits = model(x)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(x), 2):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise InvalidModel(f"the model must map a batch of {len(x)} inputs to ({len(x)}, 2) logits, got {shape}")
    if not torch.isfinite(logits).all():
        raise InvalidModel("the model's logits contain NaN or infinite values")
    if x.is_floating_point():
        check_input_gradient(model, x)


def check_input_gradient(model: nn.Module, x: torch.Tensor) -> None:
    """Raise :class:`InvalidModel` unless the logit margin has a finite, non-zero gradient w.r.t. ``x``.

    The adversarial metrics attack the model through its input gradient; a model that detaches
    its input (gradient masking) or whose input gradient is zero or non-finite would make them
    meaningless. Only the input gets a gradient: the parameters' ``.grad`` stay untouched.
    """
    inputs = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(inputs)
        if not isinstance(logits, torch.Tensor) or not logits.requires_grad:
            raise InvalidModel("the model's logits do not depend on its input through autograd (the input is "
                               "detached or the forward runs without gradients); the adversarial metrics need "
                               "input gradients")
        (gradient,) = torch.autograd.grad((logits[:, 1] - logits[:, 0]).sum(), inputs, allow_unused=True)
    if gradient is None:
        raise InvalidModel("the model's logits do not depend on its input through autograd (the input is "
                           "detached); the adversarial metrics need input gradients")
    if not torch.isfinite(gradient).all():
        raise InvalidModel("the gradient of the model's logits with respect to its input contains NaN or "
                           "infinite values; the adversarial metrics need finite input gradients")
    if not gradient.any():
        raise InvalidModel("the gradient of the model's logits with respect to its input is zero on every "
                           "checked input (masked gradients); the adversarial metrics need input gradients")


DEVICE_ENV = "SBBENCH_DEVICE"


def default_device() -> torch.device:
    """``$SBBENCH_DEVICE`` when set (e.g. ``cpu``, ``cuda:1``), else CUDA when available, else CPU."""
    forced = os.environ.get(DEVICE_ENV)
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _to(split, device: torch.device):
    return type(split)(x=split.x.to(device), y=split.y.to(device))


def describe_error(error: BaseException) -> str:
    """``Type: message (at file:line)`` of the innermost frame; a :class:`FitFailure`'s message as is."""
    if isinstance(error, FitFailure):
        return str(error)
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" (at {frame.filename}:{frame.lineno})" if frame else ""
    return f"{type(error).__name__}: {error}{where}"
