"""Example submission: mixup (Zhang, Cisse, Dauphin, Lopez-Paz, ICLR 2018).

Every minibatch is replaced by convex combinations of itself and a shuffled copy,
``x~ = lam x_i + (1 - lam) x_j`` with ``lam ~ Beta(alpha, alpha)``, trained with the same mix
of the two labels' cross-entropies. The method reuses the shared training loop through
``ctx.fit_model`` and only supplies the minibatch objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.methods import HParams, Method, Track, TrainContext, hparam


class MixupHParams(HParams):
    alpha: float = hparam(0.2, low=0.05, high=2.0, log=True, description="Beta(alpha, alpha) mixing parameter")


class Mixup(Method):
    name = "example-mixup"  # the registry uses submission.toml's name; keep them equal
    version = "1"
    track = Track.T0
    HParams = MixupHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        generator = torch.Generator().manual_seed(ctx.seed)
        beta = torch.distributions.Beta(self.hparams.alpha, self.hparams.alpha)

        def objective(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            lam = beta.sample().item()
            partner = torch.randperm(len(y), generator=generator).to(x.device)
            logits = model(lam * x + (1 - lam) * x[partner])
            loss = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[partner])
            return loss, logits

        model, _ = ctx.fit_model(objective=objective)
        return model
