"""Break 8 (honest): a model class defined at the top level of method.py, returned by fit."""

import torch
from torch import nn

from sbbench.methods import Method, TrainContext


class TwoMembers(nn.Module):
    """The mean of two backbones' logits, with the first member's features."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.first(x) + self.second(x)) / 2

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.first.features(x)


class WrapperModel(Method):
    name = "hostile-wrapper-model"

    def fit(self, ctx: TrainContext) -> nn.Module:
        first, _ = ctx.fit_model()
        second, _ = ctx.fit_model()
        return TwoMembers(first, second)
