"""D-BAT (Pagliardini, Jaggi, Fleuret, Karimireddy, ICLR 2023, "Agree to Disagree").

Models are trained one after another. Model 1 is plain ERM. Model ``m > 1`` minimises, per
training step,

    CE(f_m(x), y) + alpha * mean_{i < m} mean_{x~ in pool batch}
                    -log( p_i(x~) (1 - p_m(x~)) + (1 - p_i(x~)) p_m(x~) + eps )

where ``p_k(x~) = softmax(f_k(x~))[1]`` is model ``k``'s probability of class 1 on an
unlabeled pool input ``x~`` and the earlier models are frozen. The term inside the log is the
probability that the two models, sampling their predictions, disagree; so model ``m`` agrees
with the labels on the training split and disagrees with its predecessors on the pool, where
S is independent of the label. On the benchmark's tasks the earlier model uses S, and the
only way to fit the training labels while disagreeing with it on the pool is to predict from
S^c.

Track T1: the pool is unlabeled, so nothing is selected with labels. The returned module is
fixed in advance by the ``output`` hyperparameter: ``"last"`` (default) returns the last
model trained, ``"mean"`` the ensemble that averages all models' logits.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.methods.base import HParams, Method, PenaltyMeter, Track, TrainContext, hparam, steps_per_epoch
from sbbench.methods.pool import PoolSampler, fixed_epochs, require_pool
from sbbench.seeding import derive_seed
from sbbench.training import Objective

EPS = 1e-7
"""Added inside the log, as in the authors' code, so that certain agreement costs -log(eps), not inf."""


def disagreement_loss(p_earlier: Tensor, p_new: Tensor, eps: float = EPS) -> Tensor:
    """D-BAT's disagreement term on a pool batch.

    ``mean_i mean_b -log(p_earlier[i, b] (1 - p_new[b]) + (1 - p_earlier[i, b]) p_new[b] + eps)``

    Args:
        p_earlier: ``(k, b)`` class-1 probabilities of the ``k >= 1`` earlier (frozen) models.
        p_new: ``(b,)`` class-1 probabilities of the model being trained.
        eps: stabiliser inside the log.

    Returns:
        Scalar tensor; ``-log(1 + eps) ~ 0`` when every pair disagrees with certainty.
    """
    disagree = p_earlier * (1 - p_new) + (1 - p_earlier) * p_new
    return -torch.log(disagree + eps).mean()


def dbat_terms(logits: Tensor, y: Tensor, p_earlier: Tensor, p_new: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """The two terms of :func:`dbat_loss`: ``(CE(logits, y), alpha * disagreement_loss(p_earlier, p_new))``."""
    return F.cross_entropy(logits, y), alpha * disagreement_loss(p_earlier, p_new)


def dbat_loss(logits: Tensor, y: Tensor, p_earlier: Tensor, p_new: Tensor, alpha: float) -> Tensor:
    """The full D-BAT loss of model ``m``: ``CE(logits, y) + alpha * disagreement_loss(p_earlier, p_new)``.

    Args:
        logits: ``(b, 2)`` logits of model ``m`` on the labeled batch.
        y: ``(b,)`` labels.
        p_earlier: ``(k, b')`` class-1 probabilities of the earlier models on the pool batch.
        p_new: ``(b',)`` class-1 probabilities of model ``m`` on the pool batch.
        alpha: weight of the disagreement term.
    """
    ce, disagreement = dbat_terms(logits, y, p_earlier, p_new, alpha)
    return ce + disagreement


class MeanEnsemble(nn.Module):
    """Averages the logits of its members; ``features`` concatenates theirs (when all have one)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        """``(n, 2)``: the mean over members of their ``(n, 2)`` logits."""
        return torch.stack([member(x) for member in self.members]).mean(dim=0)

    def features(self, x: Tensor) -> Tensor:
        """``(n, sum of member widths)``: the members' penultimate features side by side."""
        return torch.cat([member.features(x) for member in self.members], dim=1)


class DBATHParams(HParams):
    models: int = hparam(2, description="number of models trained one after another (>= 2)")
    alpha: float = hparam(1.0, low=0.01, high=10.0, log=True,
                          description="weight of the disagreement term on the pool")
    epochs: int = hparam(20, description="training epochs of each model after the first (no early stopping)")
    output: Literal["last", "mean"] = hparam("last", description="return the last model, or the logit mean of all")


class DBAT(Method):
    """D-BAT: each new model fits the labels and disagrees with the earlier ones on the unlabeled pool.

    Reports ``steps`` (all models'), ``penalty_steps`` (the later models') and ``penalty_share``,
    the disagreement term's mean share of their loss.
    """

    name = "d-bat"
    version = "1"
    track = Track.T1
    HParams = DBATHParams
    paper = "https://openreview.net/forum?id=K7CbYQbyYhY"

    def fit(self, ctx: TrainContext) -> nn.Module:
        hp = self.hparams
        if hp.models < 2 or hp.epochs < 1:
            raise ValueError(f"d-bat needs models >= 2 and epochs >= 1, got {hp.models} and {hp.epochs}")
        pool = require_pool(ctx.pool, self.name)
        meter = PenaltyMeter()
        first, log = ctx.fit_model()
        meter.idle(log.epochs * steps_per_epoch(len(ctx.train.y), ctx.budget.batch_size))
        members = [first.eval()]
        for m in range(1, hp.models):
            sample = PoolSampler(pool, ctx.budget.batch_size, derive_seed(ctx.seed, f"d-bat pool {m}"))
            model, _ = ctx.fit_model(objective=self._objective(list(members), sample, meter),
                                     config=fixed_epochs(ctx.budget, hp.epochs))
            members.append(model.eval())
        meter.report(ctx)
        return members[-1] if hp.output == "last" else MeanEnsemble(members)

    def _objective(self, earlier: list[nn.Module], sample: PoolSampler, meter: PenaltyMeter | None = None
                   ) -> Objective:
        """The minibatch loss of the next model: :func:`dbat_loss` against the frozen ``earlier`` models.

        ``meter``, when given, records the disagreement term's share of every step.
        """
        alpha = self.hparams.alpha

        def objective(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            logits = model(x)
            x_pool = sample()
            with torch.no_grad():
                p_earlier = torch.stack([member(x_pool).softmax(dim=1)[:, 1] for member in earlier])
            p_new = model(x_pool).softmax(dim=1)[:, 1]
            ce, disagreement = dbat_terms(logits, y, p_earlier, p_new, alpha)
            if meter is not None:
                meter.acted(disagreement, ce)
            return ce + disagreement, logits

        return objective
