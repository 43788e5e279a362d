"""A fast minibatch training loop with pluggable objectives.

Data stay resident as tensors: each epoch draws one permutation, gathers the shuffled copy
once and walks it in contiguous slices, so there is no per-sample DataLoader work. Training
statistics (loss, accuracy) accumulate on the device from the forward passes the steps
already make, and are read once per epoch for the stopping rule.

Optional per-example ``weights`` travel with the examples through the shuffle: each
minibatch's loss is then the weighted mean ``sum_i w_i l_i / sum_i w_i`` of the per-example
losses (see :func:`train`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from torch import Tensor, nn

from sbbench.training.fcn_sgd import FusedFCNSGDStep, supports_fused_step


class TrainConfig(BaseModel):
    """Optimiser, batch size and stopping rule of one training run.

    Training stops after the first epoch whose running train accuracy is
    ``>= stop_train_acc`` or whose mean train loss is ``< stop_train_loss``, and after
    ``max_epochs`` at the latest. Running statistics are those of the epoch's own minibatch
    forward passes (the model changes during the epoch), which costs nothing extra.

    ``lr_schedule``: ``"constant"`` keeps ``lr``; ``"onecycle"`` sets the learning rate before
    every optimiser step by PyTorch's ``OneCycleLR`` over ``max_epochs`` epochs (from
    ``lr / 25`` up to ``lr`` in the first 30% of the steps, then a cosine anneal to
    ``lr / 25e4``; momentum stays ``momentum``). A run that stops early ends mid-schedule.
    The default is left out of the serialised config, so configs without a schedule keep
    their content hashes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(default=0.1, gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=5e-5, ge=0)
    batch_size: int = Field(default=256, ge=1)
    max_epochs: int = Field(default=100, ge=1)
    stop_train_acc: float | None = Field(default=1.0, gt=0, le=1)
    stop_train_loss: float | None = Field(default=0.01, gt=0)
    lr_schedule: Literal["constant", "onecycle"] = "constant"

    @model_serializer(mode="wrap")
    def _omit_constant_schedule(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data = handler(self)
        if self.lr_schedule == "constant":
            data.pop("lr_schedule", None)
        return data


class Objective(Protocol):
    """Loss of one minibatch: ``(model, x, y) -> (scalar loss, (n, 2) logits on x)``."""

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]: ...


class WeightedObjective(Protocol):
    """Loss of one weighted minibatch: ``(model, x, y, w) -> (scalar loss, (n, 2) logits on x)``.

    ``w`` ``(n,)`` holds the minibatch's example weights; the objective applies them itself,
    normally as :func:`weighted_mean` of its per-example losses. :func:`train` calls a custom
    objective this way whenever it is given ``weights``.
    """

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]: ...


class Update(Protocol):
    """One training step on a minibatch: ``(model, optimizer, x, y) -> (loss, logits on x)``.

    The default is :func:`gradient_step` of the objective; methods that need a different step
    (two passes as in SAM, extra steps on part of the network) pass their own.
    """

    def __call__(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor,
                 y: Tensor) -> tuple[Tensor, Tensor]: ...


def gradient_step(objective: Objective) -> Update:
    """The plain step: evaluate ``objective``, back-propagate, take one optimiser step."""

    def update(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        loss, logits = objective(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss, logits

    return update


def default_step(model: nn.Module, objective: Objective, config: TrainConfig) -> Update:
    """The step :func:`train` takes when the caller passes none.

    Plain ERM on an FCN with SGD gets the hand-derived :class:`FusedFCNSGDStep` (same updates,
    a fraction of autograd's overhead); everything else the autograd :func:`gradient_step`.
    """
    if (objective is cross_entropy_objective and config.optimizer == "sgd" and config.lr_schedule == "constant"
            and supports_fused_step(model)):
        return FusedFCNSGDStep(model, config.lr, config.momentum, config.weight_decay)
    return gradient_step(objective)


def cross_entropy_objective(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Plain ERM: mean cross-entropy of the logits."""
    logits = model(x)
    return F.cross_entropy(logits, y), logits


def weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """``sum_i w_i v_i / sum_i w_i`` of ``(n,)`` values and non-negative ``(n,)`` weights.

    A minibatch whose weights are all zero has loss 0 and a zero gradient (not NaN).
    """
    weights = weights.to(values.dtype)
    return torch.dot(values, weights) / weights.sum().clamp_min(torch.finfo(values.dtype).tiny)


def weighted_cross_entropy_objective(model: nn.Module, x: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted ERM: :func:`weighted_mean` of the per-example cross-entropies, weights ``w`` ``(n,)``."""
    logits = model(x)
    return weighted_mean(F.cross_entropy(logits, y, reduction="none"), w), logits


def weighted_gradient_step(objective: WeightedObjective) -> Callable[..., tuple[Tensor, Tensor]]:
    """The plain step on a weighted minibatch: ``(model, optimizer, x, y, w) -> (loss, logits)``."""

    def update(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
               w: Tensor) -> tuple[Tensor, Tensor]:
        loss, logits = objective(model, x, y, w)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss, logits

    return update


@dataclass
class TrainLog:
    """Per-epoch running statistics of a finished run, one entry per epoch run.

    ``train_loss[e]`` is the mean over epoch ``e + 1``'s minibatches of their losses (weighted
    by batch size; with example weights, by the batches' weight sums, i.e. the weighted mean
    over the training set); ``train_acc[e]`` the fraction of training examples (weighted, with
    example weights) that the model classified correctly in the forward pass of their own
    step. Both are running statistics: the model changed during the epoch, and nothing is
    re-evaluated after training. They are what the stopping rule read.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        """How many epochs ran (``max_epochs`` unless the stopping rule ended the run earlier)."""
        return len(self.train_loss)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``config`` names, over ``params``."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate scheduler of ``config.lr_schedule``, stepped once per optimiser step (``None``: constant).

    ``onecycle``: PyTorch's ``OneCycleLR`` to ``config.lr`` over ``max_epochs * steps_per_epoch``
    steps, momentum fixed. Methods with their own loop use it to follow the task's schedule.
    """
    if config.lr_schedule != "onecycle":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                               total_steps=config.max_epochs * steps_per_epoch, cycle_momentum=False)


def train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    config: TrainConfig,
    *,
    seed: int,
    objective: Objective | WeightedObjective = cross_entropy_objective,
    update: Update | None = None,
    weights: Tensor | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> TrainLog:
    """Train ``model`` in place on ``(x, y)`` and return the per-epoch statistics.

    The model is put in train mode for the run and left in eval mode; it stays where it is
    (the loop never moves it). Training runs ``config.max_epochs`` epochs unless the stopping
    rule (:class:`TrainConfig`) ends it earlier; with ``stop_train_acc=None`` and
    ``stop_train_loss=None`` it runs exactly ``max_epochs``.

    Args:
        model: maps ``(b, *input_shape)`` to ``(b, 2)`` logits; its parameters are updated.
        x, y: all training inputs ``(n, *input_shape)`` and int64 labels ``(n,)``, on the
            device the model lives on.
        config: optimiser, batch size, stopping rule.
        seed: seeds the shuffling (initialisation is the caller's business).
        objective: the minibatch loss; methods pass their own.
        update: replaces the whole step (default ``gradient_step(objective)``); cannot be
            combined with ``weights``.
        weights: optional non-negative example weights ``(n,)`` in the order of ``x`` and ``y``
            (finite, positive sum), on the device of ``y``. Each minibatch's loss is then
            ``sum_i w_i l_i / sum_i w_i`` over its examples, where ``l_i`` is the example's
            cross-entropy; a custom ``objective`` is instead called as
            ``objective(model, xb, yb, wb)`` (a :class:`WeightedObjective`) and applies the
            minibatch weights ``wb`` itself. The log's loss and accuracy are weighted the
            same way, and so is the stopping rule. With the default objective, weights that
            are all equal are plain ERM and take exactly the unweighted path.
        on_epoch: called after every epoch with ``(epoch, mean loss, running accuracy)``.

    Raises:
        TrainingDiverged: the epoch's mean loss is NaN or infinite.
        ValueError: ``x``, ``y`` and ``weights`` differ in length, ``weights`` are invalid,
            or ``weights`` come with an ``update``.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    if weights is not None:
        weights = _checked_weights(weights, len(y))
        if update is not None:
            raise ValueError("weights cannot be combined with a custom update (it replaces the whole step); "
                             "pass a weighted objective(model, x, y, w) instead")
        if objective is cross_entropy_objective and _uniform(weights):
            weights = None  # equal weights: the weighted mean is the plain mean
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], config)
    if weights is not None:
        weighted = weighted_cross_entropy_objective if objective is cross_entropy_objective else objective
        step = weighted_gradient_step(weighted)
    else:
        step = update if update is not None else default_step(model, objective, config)
    scheduler = make_scheduler(optimizer, config, math.ceil(len(y) / config.batch_size))
    if scheduler is not None:
        step = _scheduled(step, scheduler)
    generator = torch.Generator().manual_seed(seed)
    log = TrainLog()
    model.train()
    for epoch in range(1, config.max_epochs + 1):
        if weights is None:
            loss, acc = _run_epoch(model, x, y, config.batch_size, optimizer, step, generator)
        else:
            loss, acc = _run_weighted_epoch(model, x, y, weights, config.batch_size, optimizer, step, generator)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"training loss became {loss} in epoch {epoch}")
        log.train_loss.append(loss)
        log.train_acc.append(acc)
        if on_epoch is not None:
            on_epoch(epoch, loss, acc)
        if should_stop(config, loss, acc):
            break
    model.eval()
    return log


def _checked_weights(weights: Tensor, n: int) -> Tensor:
    """``weights`` as a float tensor, or a ValueError saying what is wrong with them."""
    if weights.shape != (n,):
        raise ValueError(f"weights must have shape ({n},) (one per training example), got {tuple(weights.shape)}")
    if not weights.is_floating_point():
        weights = weights.float()
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError("weights must be finite and non-negative")
    if not bool(weights.sum() > 0):
        raise ValueError("weights must not all be zero")
    return weights


def _uniform(weights: Tensor) -> bool:
    return bool((weights == weights[0]).all())


def _scheduled(step: Callable[..., tuple[Tensor, Tensor]],
               scheduler: torch.optim.lr_scheduler.LRScheduler) -> Callable[..., tuple[Tensor, Tensor]]:
    """``step`` followed by one step of the learning-rate ``scheduler`` (weighted steps too)."""

    def update(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
               *weights: Tensor) -> tuple[Tensor, Tensor]:
        result = step(model, optimizer, x, y, *weights)
        scheduler.step()
        return result

    return update


def _run_epoch(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    step: Update,
    generator: torch.Generator,
) -> tuple[float, float]:
    order = torch.randperm(len(y), generator=generator).to(y.device)
    x_shuffled, y_shuffled = x.index_select(0, order), y.index_select(0, order)
    # The statistics are gathered and reduced once per epoch: per-step reductions cost as much
    # as a small model's update on a CPU. ``split`` makes every batch view in one call.
    batches = list(zip(x_shuffled.split(batch_size), y_shuffled.split(batch_size), strict=True))
    losses, logit_slots = [], []
    for index, (xb, yb) in enumerate(batches):
        loss, logits = step(model, optimizer, xb, yb)
        losses.append(loss.detach())
        if index == 0:
            all_logits = logits.new_empty((len(y), *logits.shape[1:]))
            logit_slots = all_logits.split(batch_size)
        logit_slots[index].copy_(logits.detach())
    stacked = torch.stack(losses)
    batch_sizes = torch.tensor([len(yb) for _, yb in batches], dtype=stacked.dtype, device=stacked.device)
    correct = (all_logits.argmax(dim=1) == y_shuffled).sum()
    return torch.dot(stacked, batch_sizes).item() / len(y), correct.item() / len(y)


def _run_weighted_epoch(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    weights: Tensor,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    step: Callable[..., tuple[Tensor, Tensor]],
    generator: torch.Generator,
) -> tuple[float, float]:
    """:func:`_run_epoch` with example weights: weighted mean loss and weighted accuracy."""
    order = torch.randperm(len(y), generator=generator).to(y.device)
    x_shuffled, y_shuffled = x.index_select(0, order), y.index_select(0, order)
    w_shuffled = weights.index_select(0, order)
    batches = list(zip(x_shuffled.split(batch_size), y_shuffled.split(batch_size), w_shuffled.split(batch_size),
                       strict=True))
    losses, logit_slots = [], []
    for index, (xb, yb, wb) in enumerate(batches):
        loss, logits = step(model, optimizer, xb, yb, wb)
        losses.append(loss.detach())
        if index == 0:
            all_logits = logits.new_empty((len(y), *logits.shape[1:]))
            logit_slots = all_logits.split(batch_size)
        logit_slots[index].copy_(logits.detach())
    # Reduced in float64, and the accuracy as 1 - (weight of the errors) / (total weight), so
    # that an epoch without errors has accuracy exactly 1 (the stopping rule compares with 1).
    stacked = torch.stack(losses).double()
    w64 = w_shuffled.double()
    batch_weights = torch.stack([wb.sum() for wb in w64.split(batch_size)])
    wrong = (all_logits.argmax(dim=1) != y_shuffled).double()
    loss_sum, wrong_weight, total = torch.stack([torch.dot(stacked, batch_weights), torch.dot(wrong, w64),
                                                 w64.sum()]).tolist()
    return loss_sum / total, 1.0 - wrong_weight / total


def should_stop(config: TrainConfig, loss: float, acc: float) -> bool:
    """The stopping rule of ``config`` on an epoch's running mean ``loss`` and accuracy ``acc``."""
    reached_acc = config.stop_train_acc is not None and acc >= config.stop_train_acc
    reached_loss = config.stop_train_loss is not None and loss < config.stop_train_loss
    return reached_acc or reached_loss
