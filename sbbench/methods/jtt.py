"""Just Train Twice, JTT (Liu, Haghgoo, Chen, Raghunathan, Koh, Sagawa, Liang, Finn, ICML 2021,
"Just Train Twice: Improving Group Robustness without Training Group Information").

1. **Identification.** ERM on the training split for exactly ``identification_epochs`` epochs
   (the task's optimiser and batch size, its stopping rule off). The *error set* ``E`` is the
   set of training points this model misclassifies (argmax of its logits, eval mode). A
   briefly trained network has picked up the simple rule first, so ``E`` collects the points
   on which that rule is wrong.
2. **Upweighting.** A fresh backbone trained with the task's budget and stopping rule on the
   weighted loss ``sum_i w_i CE_i / sum_i w_i`` (per minibatch) with ``w_i = upweight`` for
   ``i`` in ``E`` and ``w_i = 1`` otherwise (``ctx.fit_model(weights=...)``). This model is
   returned.

The paper upsamples ``E`` ``upweight`` times; weighting gives the same objective in expectation
over the shuffle and keeps the epoch length. When ``E`` is empty (every training point fitted
after stage 1) all weights are 1 and stage 2 is plain ERM with a fresh initialisation; the log
says so.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sbbench.methods.base import HParams, Method, Track, TrainContext, hparam
from sbbench.metrics.classification import predict_logits


def error_set(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``(n,)`` bool: which of the points ``(x, y)`` the model misclassifies (eval mode, no gradients)."""
    return predict_logits(model, x).argmax(dim=1) != y


def jtt_weights(errors: Tensor, upweight: float) -> Tensor:
    """``(n,)`` float32 weights: ``upweight`` where ``errors`` is true, 1 elsewhere."""
    if upweight <= 0:
        raise ValueError(f"upweight must be positive, got {upweight}")
    return torch.where(errors.bool(), torch.tensor(float(upweight), device=errors.device),
                       torch.tensor(1.0, device=errors.device))


class JTTHParams(HParams):
    identification_epochs: int = hparam(1, choices=[1, 2, 5],
                                        description="epochs of the stage-1 ERM model that finds the error set")
    upweight: float = hparam(20.0, low=2.0, high=100.0, log=True,
                             description="stage-2 weight of the error set's points (the others weigh 1)")


class JTT(Method):
    """Train briefly, find the misclassified training points, retrain with them upweighted (module docstring)."""

    name = "jtt"
    version = "1"
    paper = "https://arxiv.org/abs/2107.09044"
    track = Track.T0
    HParams = JTTHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        hp = self.hparams
        if hp.identification_epochs < 1:
            raise ValueError(f"identification_epochs must be at least 1, got {hp.identification_epochs}")
        stage1 = ctx.budget.model_copy(update={"max_epochs": hp.identification_epochs,
                                               "stop_train_acc": None, "stop_train_loss": None})
        identifier, _ = ctx.fit_model(config=stage1)
        errors = error_set(identifier, ctx.train.x, ctx.train.y)
        del identifier
        count = int(errors.sum())
        ctx.log(f"jtt error set after {hp.identification_epochs} epoch(s): {count} of {len(errors)} training points "
                f"({count / len(errors):.2%})")
        ctx.report("error_set_share", count / len(errors))
        if count == 0:
            ctx.log("jtt error set is empty: every weight is 1, stage 2 is plain ERM")
        model, _ = ctx.fit_model(weights=jtt_weights(errors, hp.upweight))
        return model
