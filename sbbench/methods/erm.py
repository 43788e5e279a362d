"""Empirical risk minimisation: the task's backbone trained with cross-entropy."""

from __future__ import annotations

from torch import nn

from sbbench.methods.base import Method, TrainContext


class ERM(Method):
    """The reference row: plain cross-entropy with the task's optimiser and budget."""

    name = "erm"
    version = "1"

    def fit(self, ctx: TrainContext) -> nn.Module:
        model, _ = ctx.fit_model()
        return model
