"""Example submission: Just Train Twice, JTT (Liu, Haghgoo, Chen, Raghunathan, Koh, Sagawa,
Liang, Finn, ICML 2021, https://arxiv.org/abs/2107.09044).

Two stages, both with the shared training loop (``ctx.fit_model``):

1. **Identify.** Train an ERM model for exactly ``stage1_epochs`` epochs (the task's
   stopping rule off). Its *error set* is the training points it misclassifies: a briefly
   trained model fits the easy rule first, so the points that rule gets wrong are where the
   other features matter.
2. **Upweight.** Train a fresh backbone on the same training set, the error set's points
   weighted ``upweight`` and the others 1: every minibatch's loss is the weighted mean of
   its examples' cross-entropies (``ctx.fit_model(weights=...)``), with the task's budget and
   stopping rule. The second model is returned.

The paper upsamples the error set ``upweight`` times instead of weighting it; in expectation
over the shuffle this is the same objective, with the epoch length left unchanged. JTT uses
only the labeled training set (track T0); the paper selects its hyperparameters on a labeled
group-annotated validation set, which this example does not do. When stage 1 misclassifies
nothing (on a task whose simple feature separates the training set perfectly) the weights are
all 1 and stage 2 is plain ERM; JTT acts where the simple feature is not fully predictive
(e.g. the noisy tasks), upweighting exactly the points on which it fails.
"""

from __future__ import annotations

import torch
from torch import nn

from sbbench.methods import HParams, Method, Track, TrainContext, hparam
from sbbench.metrics.classification import predict_logits


class JTTHParams(HParams):
    stage1_epochs: int = hparam(1, low=1, high=5, description="epochs of the stage-1 ERM model (no early stopping)")
    upweight: float = hparam(20.0, low=2.0, high=100.0, log=True,
                             description="weight of the stage-1 error set's points in stage 2 (others: 1)")


class JustTrainTwice(Method):
    name = "example-jtt"  # the registry uses submission.toml's name; keep them equal
    version = "1"
    track = Track.T0
    HParams = JTTHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        # Stage 1: a short ERM run; TrainConfig is frozen, so copy it with fields replaced.
        stage1_config = ctx.budget.model_copy(update={
            "max_epochs": self.hparams.stage1_epochs, "stop_train_acc": None, "stop_train_loss": None})
        identifier, _ = ctx.fit_model(config=stage1_config)
        # fit_model returns the model in eval mode on ctx.device; predict in minibatches.
        predictions = predict_logits(identifier, ctx.train.x).argmax(dim=1)
        errors = predictions != ctx.train.y
        ctx.log(f"error set: {int(errors.sum())} of {len(errors)} training points")

        # Stage 2: a fresh backbone, the error set upweighted.
        weights = torch.where(errors, self.hparams.upweight, 1.0)
        model, _ = ctx.fit_model(weights=weights)
        return model
