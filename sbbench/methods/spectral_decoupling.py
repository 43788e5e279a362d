"""Spectral Decoupling (Pezeshki et al., NeurIPS 2021, "Gradient Starvation")."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.methods.base import HParams, Method, PenaltyMeter, Track, TrainContext, hparam


class SpectralDecouplingHParams(HParams):
    lam: float = hparam(2e-5, low=1e-5, high=1.0, log=True, description="weight lambda of mean(logits^2)")
    warmup_steps: int = hparam(450, choices=[0, 100, 450, 1000],
                               description="optimiser steps before the penalty is switched on")


def sd_penalty(logits: Tensor) -> Tensor:
    """``mean(logits^2)`` over all ``(n, 2)`` entries: a scalar."""
    return logits.pow(2).mean()


class SpectralDecoupling(Method):
    """Cross-entropy plus an L2 penalty on the logits (Pezeshki et al., NeurIPS 2021).

    Loss per minibatch: ``CE(f(x), y) + lambda_t * mean_{i,c} f_c(x_i)^2`` with
    ``lambda_t = 0`` for the first ``warmup_steps`` optimiser steps and ``lambda`` after. The
    penalty keeps the logits small, so features that already separate the training data stop
    dominating the gradient ("gradient starvation") and others can still be learned.
    Defaults are the official Colored-MNIST ones as recorded in our spec (lambda 2e-5 after a
    450-step warm-up); the paper's CelebA runs used per-class targets instead (not shipped).
    The penalty needs no extra forward pass: compute equals ERM's. Reports ``steps``,
    ``penalty_steps`` (steps after the warm-up) and ``penalty_share`` (mean of
    ``lambda mean(f^2) / (CE + lambda mean(f^2))`` over them); a warm-up longer than the run
    leaves ``penalty_steps`` at 0.
    """

    name = "spectral-decoupling"
    version = "1"
    track = Track.T0
    HParams = SpectralDecouplingHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        hp = self.hparams
        meter = PenaltyMeter()

        def objective(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if meter.steps >= hp.warmup_steps:
                penalty = hp.lam * sd_penalty(logits)
                meter.acted(penalty, loss)
                loss = loss + penalty
            else:
                meter.idle()
            return loss, logits

        model, _ = ctx.fit_model(objective=objective)
        meter.report(ctx)
        return model
