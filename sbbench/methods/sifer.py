"""SiFeR, the feature sieve (Tiwari & Shenoy, ICML 2023).

"Overcoming Simplicity Bias in Deep Networks using a Feature Sieve", arXiv 2301.13293.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.methods.base import HParams, Method, PenaltyMeter, Track, TrainContext, hparam
from sbbench.models import FCN
from sbbench.training import Update


class SiFeRHParams(HParams):
    forget_every: int = hparam(5, choices=[2, 5, 10, 20], description="a forget step every k optimiser steps")
    aux_lr: float = hparam(1e-2, low=1e-3, high=1e-1, log=True, description="SGD learning rate of the auxiliary head")
    forget_lr: float = hparam(1e-2, low=1e-3, high=1e-1, log=True, description="SGD learning rate of the forget step")
    aux_width: int = hparam(256, choices=[64, 128, 256], description="hidden width of the auxiliary head")
    aux_depth: int = hparam(2, choices=[1, 2, 3], description="hidden layers of the auxiliary head")


def forget_loss(aux_logits: Tensor) -> Tensor:
    """Cross-entropy to the uniform distribution: ``-mean_i (1/K) sum_c log softmax(z_i)_c``, a scalar."""
    return -F.log_softmax(aux_logits, dim=1).mean()


def forget_step(model: nn.Module, aux_head: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor) -> Tensor:
    """One forget step: move the early layers so that the auxiliary head predicts uniformly.

    Gradients of :func:`forget_loss` of ``aux_head(model.early_features(x))`` are accumulated
    only into ``optimizer``'s parameters (the early layers); the auxiliary head and the later
    layers get no gradient. Returns the forget loss before the step.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    loss = forget_loss(aux_head(model.early_features(x)))
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    optimizer.step()
    return loss.detach()


def parameter_distance(params: list[Tensor], reference: list[Tensor]) -> Tensor:
    """``||params - reference||_2`` over all tensors together (a 0-d tensor)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.detach() - r)
                                                 for p, r in zip(params, reference, strict=True)]))


def sieve_update(aux_head: nn.Module, aux_optimizer: torch.optim.Optimizer,
                 forget_optimizer: torch.optim.Optimizer, forget_every: int,
                 meter: PenaltyMeter | None = None) -> Update:
    """The SiFeR step: learn the auxiliary head, every ``forget_every`` steps forget, then the main CE step.

    ``meter``, when given, counts the steps with a forget step as steps on which the sieve
    acted, with share ``||d_forget|| / (||d_forget|| + ||d_main||)``: how far the forget step
    moved the early layers' parameters, relative to that plus how far the main step then moved
    them. Steps without a forget step are idle.
    """
    steps = 0
    early = [p for group in forget_optimizer.param_groups for p in group["params"]]

    def update(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        nonlocal steps
        steps += 1
        aux_loss = F.cross_entropy(aux_head(model.early_features(x).detach()), y)
        aux_optimizer.zero_grad(set_to_none=True)
        aux_loss.backward()
        aux_optimizer.step()
        forgets = steps % forget_every == 0
        if forgets:
            before = [p.detach().clone() for p in early] if meter is not None else []
            forget_step(model, aux_head, forget_optimizer, x)
            between = [p.detach().clone() for p in early] if meter is not None else []
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if meter is not None:
            if forgets:
                forget_move = parameter_distance(between, before)
                main_move = parameter_distance(early, between)
                meter.record(forget_move / (forget_move + main_move).clamp_min(torch.finfo(forget_move.dtype).tiny))
            else:
                meter.idle()
        return loss.detach(), logits.detach()

    return update


class SiFeR(Method):
    """Feature sieve (Tiwari & Shenoy, ICML 2023): keep early layers from encoding what is decodable early.

    An auxiliary head ``a`` (an MLP of ``aux_depth`` hidden layers of width ``aux_width``) reads
    the backbone's early features ``h(x) = early_features(x)``. Every optimiser step:

    1. *learn*: one SGD step (``aux_lr``) of ``CE(a(h(x)), y)`` on ``a`` only (``h`` detached);
    2. *forget*, every ``forget_every`` steps: one SGD step (``forget_lr``) of
       ``CE(a(h(x)), uniform) = -mean_i (1/2) sum_c log softmax(a(h(x_i)))_c`` on the early
       layers' parameters only;
    3. *main*: the usual step of ``CE(f(x), y)`` with the task's optimiser on the whole backbone.

    Features that the early layers make linearly (or shallowly) decodable, the "simple" ones,
    are thus sieved out of the early representation, leaving later layers to build on others.
    Defaults follow our spec's record of the paper (aux head depth 2 and width 256, aux and
    forget lr 1e-2, forget every 5 steps). Needs the backbone hook ``early_layers`` /
    ``early_features``. Compute: about 1.5x ERM per step with the defaults. Reports ``steps``,
    ``penalty_steps`` (steps with a forget step) and ``penalty_share`` (the forget step's share of
    the early layers' movement, :func:`sieve_update`).
    """

    name = "sifer"
    version = "1"
    track = Track.T0
    HParams = SiFeRHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        hp = self.hparams
        model = ctx.make_backbone().to(ctx.device)
        with torch.no_grad():
            early_width = model.early_features(ctx.train.x[:1]).flatten(1).shape[1]
        aux_head = FCN(early_width, hp.aux_width, hp.aux_depth).to(ctx.device)
        aux_optimizer = torch.optim.SGD(aux_head.parameters(), lr=hp.aux_lr)
        forget_optimizer = torch.optim.SGD(model.early_layers.parameters(), lr=hp.forget_lr)
        meter = PenaltyMeter()
        update = sieve_update(aux_head, aux_optimizer, forget_optimizer, hp.forget_every, meter)
        model, _ = ctx.fit_model(model, update=update)
        meter.report(ctx)
        return model
