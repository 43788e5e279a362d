"""A fast minibatch training loop with pluggable objectives.

Data stay resident as tensors: each epoch draws one permutation, gathers the shuffled copy
once and walks it in contiguous slices, so there is no per-sample DataLoader work. Training
statistics (loss, accuracy) accumulate on the device from the forward passes the steps
already make, and are read once per epoch for the stopping rule.
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


@dataclass
class TrainLog:
    """Per-epoch running statistics of a finished run."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``config`` names, over ``params``."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    config: TrainConfig,
    *,
    seed: int,
    objective: Objective = cross_entropy_objective,
    update: Update | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> TrainLog:
    """Train ``model`` in place on ``(x, y)`` and return the per-epoch statistics.

    Args:
        model: maps ``(b, *input_shape)`` to ``(b, 2)`` logits; its parameters are updated.
        x, y: all training inputs ``(n, *input_shape)`` and int64 labels ``(n,)``, on the
            device the model lives on.
        config: optimiser, batch size, stopping rule.
        seed: seeds the shuffling (initialisation is the caller's business).
        objective: the minibatch loss; methods pass their own.
        update: replaces the whole step (default ``gradient_step(objective)``).
        on_epoch: called after every epoch with ``(epoch, mean loss, running accuracy)``.

    Raises:
        TrainingDiverged: the epoch's mean loss is NaN or infinite.
    """
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], config)
    step = update if update is not None else default_step(model, objective, config)
    if config.lr_schedule == "onecycle":
        step = _scheduled(step, torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.max_epochs * math.ceil(len(y) / config.batch_size),
            cycle_momentum=False))
    generator = torch.Generator().manual_seed(seed)
    log = TrainLog()
    model.train()
    for epoch in range(1, config.max_epochs + 1):
        loss, acc = _run_epoch(model, x, y, config.batch_size, optimizer, step, generator)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"training loss became {loss} in epoch {epoch}")
        log.train_loss.append(loss)
        log.train_acc.append(acc)
        if on_epoch is not None:
            on_epoch(epoch, loss, acc)
        if _should_stop(config, loss, acc):
            break
    model.eval()
    return log


def _scheduled(step: Update, scheduler: torch.optim.lr_scheduler.LRScheduler) -> Update:
    """``step`` followed by one step of the learning-rate ``scheduler``."""

    def update(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        result = step(model, optimizer, x, y)
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


def _should_stop(config: TrainConfig, loss: float, acc: float) -> bool:
    reached_acc = config.stop_train_acc is not None and acc >= config.stop_train_acc
    reached_loss = config.stop_train_loss is not None and loss < config.stop_train_loss
    return reached_acc or reached_loss
