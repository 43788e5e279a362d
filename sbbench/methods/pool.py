"""Helpers for methods of tracks T1 and T2: seeded minibatches from the unlabeled pool.

The pool (``TrainContext.pool``) is much smaller than the training split on some tasks, so a
method draws a fresh pool minibatch for every training step instead of walking it once per
epoch: ``PoolSampler`` draws ``batch_size`` indices uniformly with replacement from a CPU
generator of its own, so the draws do not touch torch's global RNG (which seeds the
initialisation) and are identical on every device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbbench.training import TrainConfig


class PoolSampler:
    """Uniform minibatches of the pool, drawn with replacement from a seeded CPU generator.

    Args:
        pool: ``(m, *input_shape)`` unlabeled inputs, on the training device.
        batch_size: rows per draw (capped at ``m``).
        seed: the generator's seed.
    """

    def __init__(self, pool: Tensor, batch_size: int, seed: int) -> None:
        if len(pool) == 0:
            raise ValueError("the unlabeled pool is empty")
        self.pool = pool
        self.batch_size = min(batch_size, len(pool))
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self) -> Tensor:
        """``(batch_size, *input_shape)`` pool rows."""
        index = torch.randint(len(self.pool), (self.batch_size,), generator=self.generator)
        return self.pool[index.to(self.pool.device)]


def require_pool(pool: Tensor | None, method: str) -> Tensor:
    """``pool``, or a clear error when the task offers none."""
    if pool is None:
        raise ValueError(f"{method} needs the unlabeled decorrelated pool (track T1/T2), but the task has none")
    return pool


def fixed_epochs(budget: TrainConfig, epochs: int) -> TrainConfig:
    """The task's optimiser and batch size for exactly ``epochs`` epochs, early stopping off.

    Diversity methods cannot stop on the task's rule (train accuracy 100% or loss < 0.01):
    on the benchmark's tasks the simple feature S alone reaches it within an epoch or two,
    before the diversity term has had any effect.
    """
    return budget.model_copy(update={"max_epochs": epochs, "stop_train_acc": None, "stop_train_loss": None})
