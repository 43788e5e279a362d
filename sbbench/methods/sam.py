"""Sharpness-aware minimisation (Foret et al., ICLR 2021) as studied for simplicity bias by Springer et al."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sbbench.methods.base import HParams, Method, PenaltyMeter, Track, TrainContext, hparam
from sbbench.training import Objective, Update, cross_entropy_objective


class SAMHParams(HParams):
    rho: float = hparam(0.05, low=0.01, high=0.5, log=True, description="radius of the weight perturbation")


def sam_perturbation(grads: list[Tensor], rho: float) -> list[Tensor]:
    """``e = rho g / ||g||_2`` with ``||g||_2`` the norm of all gradients together (0 if ``g = 0``).

    Args:
        grads: one gradient tensor per parameter.
        rho: radius of the perturbation.

    Returns:
        one tensor per parameter, same shapes; jointly of l_2 norm ``rho`` (unless ``g = 0``).
    """
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = rho / norm.clamp_min(torch.finfo(norm.dtype).tiny)
    return [g * scale for g in grads]


def sam_update(rho: float, objective: Objective = cross_entropy_objective, meter: PenaltyMeter | None = None
               ) -> Update:
    """The SAM step as an :class:`~sbbench.training.Update`.

    With ``g = grad L(w)`` on the minibatch: ``e = rho g / ||g||``, then the optimiser steps
    with ``grad L(w + e)`` from the original weights ``w``. Returns the loss and logits at ``w``
    (what the running statistics report). Two forward and backward passes per step.
    ``meter``, when given, counts every step as one on which SAM acted, with the sharpness term
    ``L(w + e) - L(w)`` as its penalty on top of ``L(w)``.
    """

    def update(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        params = [p for p in model.parameters() if p.requires_grad]
        loss, logits = objective(model, x, y)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
        perturbation = sam_perturbation(grads, rho)
        with torch.no_grad():
            for p, e in zip(params, perturbation, strict=True):
                p.add_(e)
        sharp_loss, _ = objective(model, x, y)
        if meter is not None:
            meter.acted(sharp_loss.detach() - loss.detach(), loss)
        optimizer.zero_grad(set_to_none=True)
        sharp_loss.backward()
        with torch.no_grad():
            for p, e in zip(params, perturbation, strict=True):
                p.sub_(e)
        optimizer.step()
        return loss.detach(), logits.detach()

    return update


class SAM(Method):
    """SAM (Foret et al., ICLR 2021), studied for simplicity bias by Springer, Nagarajan and Raghunathan (ICLR 2024).

    Each step solves ``min_w max_{||e|| <= rho} L(w + e)`` to first order: ``g = grad L(w)``,
    ``e = rho g / ||g||_2`` (norm over all parameters together), then the task's optimiser
    steps with ``grad L(w + e)`` applied at ``w``. Springer et al. argue that SAM learns
    features more uniformly than SGD (they study CIFAR-MNIST); rho 0.05 is the usual default
    (Foret et al.'s CIFAR value). Compute: 2x ERM per epoch. Reports ``steps``,
    ``penalty_steps`` (every step) and ``penalty_share``, the mean share of the sharpness term
    ``L(w + e) - L(w)`` in ``L(w + e)`` (:class:`~sbbench.methods.base.PenaltyMeter`).
    """

    name = "sam"
    version = "1"
    track = Track.T0
    HParams = SAMHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        meter = PenaltyMeter()
        model, _ = ctx.fit_model(update=sam_update(self.hparams.rho, meter=meter))
        meter.report(ctx)
        return model
