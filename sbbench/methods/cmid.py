"""CMID (Vasudeva, Shahabi, Sharan, 2023).

"Mitigating Simplicity Bias in Deep Learning for Improved OOD Generalization and Robustness", arXiv 2310.06161.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.methods.base import HParams, Method, PenaltyMeter, Track, TrainContext, hparam, steps_per_epoch


class CMIDHParams(HParams):
    lam: float = hparam(0.5, low=0.05, high=5.0, log=True, description="weight lambda of the CMI term")
    scale: float = hparam(10.0, low=1.0, high=50.0, log=True, description="epochs over which the weight grows by 1")
    cap: float = hparam(5.0, choices=[1.0, 2.0, 5.0, 10.0], description="largest multiplier of lambda")
    simple_epochs: int = hparam(5, choices=[1, 3, 5, 10], description="training epochs of the linear simple model")


def soft_conditional_mutual_information(p: Tensor, q: Tensor, y: Tensor, num_classes: int = 2) -> Tensor:
    """Plug-in ``I(A; B | Y)`` in nats for soft predictions ``p`` (of A) and ``q`` (of B), from one batch.

    For each class ``c`` present in ``y``, the joint of (A, B) given ``Y = c`` is the mean outer
    product ``J_c = mean_{i: y_i = c} p_i q_i^T`` (``2 x 2`` for two classes; A and B are treated
    as independent given ``x``), with marginals ``a = J_c 1`` and ``b = J_c^T 1``, and

        ``I(A; B | Y) = sum_c (n_c / n) sum_{j,k} J_c[j,k] log(J_c[j,k] / (a_j b_k))``

    (terms with ``J_c[j,k] = 0`` count 0).

    Args:
        p: ``(n, K)`` probabilities of the first model.
        q: ``(n, K)`` probabilities of the second model.
        y: ``(n,)`` labels in ``0 .. num_classes - 1``.
        num_classes: number of label values.

    Returns:
        a non-negative scalar, differentiable in ``p`` and ``q``.
    """
    total = p.new_zeros(())
    for c in range(num_classes):
        rows = y == c
        count = int(rows.sum())
        if count == 0:
            continue
        joint = p[rows].T @ q[rows] / count
        independent = joint.sum(1, keepdim=True) @ joint.sum(0, keepdim=True)
        tiny = torch.finfo(joint.dtype).tiny
        terms = joint * (joint.clamp_min(tiny).log() - independent.clamp_min(tiny).log())
        total = total + count / len(y) * terms.sum()
    return total


def cmi_weight(epoch: int, lam: float, scale: float, cap: float) -> float:
    """``lambda * min(1 + epoch / scale, cap)`` for the 0-based ``epoch``."""
    return lam * min(1.0 + epoch / scale, cap)


class CMID(Method):
    """A simple model first, then CE plus a penalty on the conditional mutual information with it (Vasudeva et al.).

    1. Train a linear model ``s`` (flatten, ``nn.Linear(D, 2)``) with cross-entropy for
       ``simple_epochs`` epochs (task optimiser and batch size, no early stop); freeze it.
    2. Train the backbone ``f`` with, per minibatch in (0-based) epoch ``t``,

       ``CE(f(x), y) + lambda * min(1 + t / scale, cap) * |I(f; s | y)|``

       where ``I`` is the plug-in estimate of :func:`soft_conditional_mutual_information` on
       the batch's softmax outputs of ``f`` and ``s``.

    The penalty discourages ``f`` from carrying the same label information as the simple model
    within each class, i.e. from relying only on the features a linear model already finds.
    Defaults lambda 0.5 and scale 10 as recorded in our spec; ``cap`` is not given there, we
    chose 5 (check against the authors' code). Compute: ERM plus a linear model and one
    linear forward per step. Reports ``steps`` (the simple model's and the backbone's),
    ``penalty_steps`` (the backbone's) and ``penalty_share``, the CMI term's mean share of the loss.
    """

    name = "cmid"
    version = "1"
    track = Track.T0
    HParams = CMIDHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        hp = self.hparams
        simple = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(ctx.input_shape), 2)).to(ctx.device)
        simple_config = ctx.budget.model_copy(update={"max_epochs": hp.simple_epochs, "stop_train_acc": None,
                                                      "stop_train_loss": None})
        _, simple_log = ctx.fit_model(simple, config=simple_config)
        simple.requires_grad_(False)
        epoch_steps = steps_per_epoch(len(ctx.train.y), ctx.budget.batch_size)
        meter = PenaltyMeter()
        meter.idle(simple_log.epochs * epoch_steps)
        steps = 0

        def objective(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            nonlocal steps
            logits = model(x)
            with torch.no_grad():
                simple_probs = F.softmax(simple(x), dim=1)
            cmi = soft_conditional_mutual_information(F.softmax(logits, dim=1), simple_probs, y)
            weight = cmi_weight(steps // epoch_steps, hp.lam, hp.scale, hp.cap)
            steps += 1
            ce, penalty = F.cross_entropy(logits, y), weight * cmi.abs()
            meter.acted(penalty, ce)
            return ce + penalty, logits

        model, _ = ctx.fit_model(objective=objective)
        meter.report(ctx)
        return model
