"""Learning from Failure, LfF (Nam, Cha, Ahn, Lee, Shin, NeurIPS 2020, "Learning from Failure:
Training Debiased Classifier from Biased Classifier").

Two fresh backbones are trained together, on the same minibatches, for the task's budget:

* the **biased** model ``f_B`` minimises the mean generalized cross-entropy
  ``GCE(p, y) = (1 - p_y^q) / q`` of its softmax ``p``. Its gradient is ``p_y^q`` times the
  cross-entropy's, so the examples it already fits well (those the simple rule explains)
  dominate and ``f_B`` stays with the simple rule;
* the **debiased** model ``f_D`` minimises the ``W``-weighted cross-entropy with the
  relative-difficulty weights

      W_i = L_B(i) / (L_B(i) + L_D(i)),

  where ``L_B(i)`` and ``L_D(i)`` are per-example exponential moving averages of the two
  models' cross-entropies on example ``i``: each time ``i`` is in a minibatch,
  ``L(i) <- ema * L(i) + (1 - ema) * CE_i`` (the first visit sets ``L(i) = CE_i``), updated
  before the weight is read. The weights are computed from detached losses, so no gradient
  flows through them. Examples the biased model fails on (large ``L_B``) weigh up to 1, those
  it fits weigh close to 0.

Two choices, both hyperparameters:

* ``debiased_loss``: ``"weighted-mean"`` (default) takes ``sum_i W_i CE_i / sum_i W_i`` over the
  minibatch (the shared loop's convention for example weights); ``"mean"`` takes the paper's
  ``mean_i W_i CE_i``. The paper trains with Adam, whose steps barely depend on the overall
  scale of the loss; under the benchmark's SGD budgets the plain mean shrinks the step as the
  biased model fits the data and ``W`` drops (docs/methods/lff.md: on ``lms5-ci`` the mean
  weight fell to 0.07-0.22 and the debiased model never met the stopping rule). The weighted
  mean keeps the relative weighting and the step size.
* ``class_normalize``: off (default), ``W`` is the paper's formula above; on, each moving
  average is first divided by its maximum over the training examples of the same class, as
  the authors' released code does.

Both models use the task's optimiser, learning rate, momentum, weight decay, batch size and
learning-rate schedule, each with its own optimiser. Shuffling is seeded by ``ctx.seed``;
training stops by the task's rule applied to the debiased model's running accuracy and mean
(unweighted) cross-entropy, after ``max_epochs`` at the latest. The debiased model is returned.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.methods.base import HParams, Method, Track, TrainContext, hparam
from sbbench.training import TrainingDiverged, make_optimizer, make_scheduler, should_stop, weighted_mean

WEIGHT_EPS = 1e-8
"""Added to the denominator of the LfF weight, so that two zero losses give weight 0, not NaN."""


def gce_loss(logits: Tensor, y: Tensor, q: float) -> Tensor:
    """``(n,)`` generalized cross-entropies ``(1 - p_y^q) / q`` of ``(n, C)`` logits and labels ``y``.

    Computed as ``-expm1(-q CE) / q`` with ``CE = -log p_y``, which is stable for confident
    predictions. ``q -> 0`` gives the cross-entropy, ``q = 1`` the loss ``1 - p_y``.
    """
    if not 0 < q <= 1:
        raise ValueError(f"q must lie in (0, 1], got {q}")
    return -torch.expm1(-q * F.cross_entropy(logits, y, reduction="none")) / q


def lff_weights(loss_biased: Tensor, loss_debiased: Tensor) -> Tensor:
    """``L_B / (L_B + L_D + WEIGHT_EPS)`` elementwise, from detached per-example (averaged) losses."""
    loss_biased, loss_debiased = loss_biased.detach(), loss_debiased.detach()
    return loss_biased / (loss_biased + loss_debiased + WEIGHT_EPS)


def class_max_normalized(values: Tensor, labels: Tensor, index: Tensor, n_classes: int = 2) -> Tensor:
    """``values[index]`` divided by the maximum of ``values`` over all examples of the same class.

    Args:
        values: ``(n,)`` non-negative per-example values (the moving averages of all examples).
        labels: ``(n,)`` their labels in ``[0, n_classes)``.
        index: ``(b,)`` the examples wanted.

    Returns:
        ``(b,)``: ``values[i] / max_{j: labels[j] = labels[i]} values[j]`` for ``i`` in ``index``
        (0 where that maximum is 0).
    """
    maxima = torch.zeros(n_classes, dtype=values.dtype, device=values.device).scatter_reduce(
        0, labels, values, reduce="amax", include_self=False)
    return values[index] / maxima[labels[index]].clamp_min(torch.finfo(values.dtype).tiny)


class PerExampleEMA:
    """Exponential moving averages of per-example values, one slot per training example.

    ``update(index, values)`` sets ``slot <- decay * slot + (1 - decay) * value`` for the listed
    examples (the first update of a slot stores the value itself) and returns their new values.
    """

    def __init__(self, n: int, decay: float, device: torch.device | str = "cpu") -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.values = torch.zeros(n, device=device)
        self.seen = torch.zeros(n, dtype=torch.bool, device=device)

    def update(self, index: Tensor, values: Tensor) -> Tensor:
        """Fold ``values`` ``(b,)`` into the slots ``index`` ``(b,)`` (distinct); return the slots' new values."""
        values = values.detach().to(self.values.dtype)
        old = self.values[index]
        new = torch.where(self.seen[index], self.decay * old + (1 - self.decay) * values, values)
        self.values[index] = new
        self.seen[index] = True
        return new




class LfFHParams(HParams):
    q: float = hparam(0.7, low=0.1, high=1.0, description="exponent q of the biased model's generalized cross-entropy")
    ema: float = hparam(0.7, low=0.5, high=0.99,
                        description="decay of the per-example moving averages of the two models' losses")
    debiased_loss: Literal["weighted-mean", "mean"] = hparam(
        "weighted-mean", choices=["weighted-mean", "mean"],
        description="the debiased model's minibatch loss: sum W CE / sum W, or the paper's mean of W CE")
    class_normalize: bool = hparam(False, choices=[False, True],
                                   description="divide each moving average by its class-wise maximum before the "
                                               "weight (the authors' code); off: the paper's formula as written")


class LfF(Method):
    """A GCE-trained biased model and a debiased model reweighted by relative difficulty (module docstring)."""

    name = "lff"
    version = "1"
    paper = "https://arxiv.org/abs/2007.02561"
    track = Track.T0
    HParams = LfFHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        hp = self.hparams
        config = ctx.budget
        x, y = ctx.train.x, ctx.train.y
        n = len(y)
        biased = ctx.make_backbone().to(ctx.device)
        debiased = ctx.make_backbone().to(ctx.device)
        optimizers = [make_optimizer([p for p in model.parameters() if p.requires_grad], config)
                      for model in (biased, debiased)]
        steps_per_epoch = math.ceil(n / config.batch_size)
        schedulers = [s for s in (make_scheduler(o, config, steps_per_epoch) for o in optimizers) if s is not None]
        ema_biased = PerExampleEMA(n, hp.ema, ctx.device)
        ema_debiased = PerExampleEMA(n, hp.ema, ctx.device)
        generator = torch.Generator().manual_seed(ctx.seed)
        biased.train()
        debiased.train()
        for epoch in range(1, config.max_epochs + 1):
            order = torch.randperm(n, generator=generator).to(ctx.device)
            ce_sum = torch.zeros((), device=ctx.device)
            correct = torch.zeros((), device=ctx.device)
            weight_sum = torch.zeros((), device=ctx.device)
            for index in order.split(config.batch_size):
                xb, yb = x[index], y[index]
                logits_b, logits_d = biased(xb), debiased(xb)
                ce_b = F.cross_entropy(logits_b, yb, reduction="none")
                ce_d = F.cross_entropy(logits_d, yb, reduction="none")
                loss_b, loss_d = ema_biased.update(index, ce_b), ema_debiased.update(index, ce_d)
                if hp.class_normalize:
                    loss_b = class_max_normalized(ema_biased.values, y, index)
                    loss_d = class_max_normalized(ema_debiased.values, y, index)
                weights = lff_weights(loss_b, loss_d)
                debiased_loss = (weighted_mean(ce_d, weights) if hp.debiased_loss == "weighted-mean"
                                 else (weights * ce_d).mean())
                loss = gce_loss(logits_b, yb, hp.q).mean() + debiased_loss
                for optimizer in optimizers:
                    optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for optimizer in optimizers:
                    optimizer.step()
                for scheduler in schedulers:
                    scheduler.step()
                ce_sum += ce_d.detach().sum()
                correct += (logits_d.detach().argmax(dim=1) == yb).sum()
                weight_sum += weights.sum()
            totals = torch.stack([ce_sum, correct, weight_sum]).tolist()
            mean_ce, accuracy, mean_weight = (value / n for value in totals)
            if not math.isfinite(mean_ce):
                raise TrainingDiverged(f"lff: the debiased model's training loss became {mean_ce} in epoch {epoch}")
            ctx.log(f"epoch {epoch}: debiased loss {mean_ce:.4f}, acc {accuracy:.4f}, mean weight {mean_weight:.4f}")
            if should_stop(config, mean_ce, accuracy):
                break
        ctx.report("epochs", epoch)
        ctx.report("mean_weight", mean_weight)
        biased.eval()
        return debiased.eval()
