"""The oracle upper bound: ERM on inputs whose simple block S is randomized in every batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.methods.base import Method, Track, TrainContext


class OracleRandomizeS(Method):
    """Knows which coordinates form S and permutes them across each minibatch before the step.

    With S independent of the label during training, only S^c can predict it, so the model
    must learn S^c. An upper bound for the oracle track, not a method.
    """

    name = "oracle-randomize-s"
    version = "1"
    track = Track.ORACLE

    def fit(self, ctx: TrainContext) -> nn.Module:
        space = ctx.space
        s_block = space.block("S").to(ctx.device)
        generator = torch.Generator(device=ctx.device).manual_seed(ctx.seed)

        def objective(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            z = space.to_canonical(x)
            order = torch.randperm(len(y), generator=generator, device=ctx.device)
            z[:, s_block] = z[order][:, s_block]
            logits = model(space.from_canonical(z))
            return F.cross_entropy(logits, y), logits

        model, _ = ctx.fit_model(objective=objective)
        return model
