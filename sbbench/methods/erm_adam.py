"""ERM trained with Adam instead of the task's optimiser."""

from __future__ import annotations

from torch import nn

from sbbench.methods.base import HParams, Method, Track, TrainContext, hparam


class ErmAdamHParams(HParams):
    lr: float = hparam(1e-3, low=1e-4, high=1e-2, log=True, description="Adam learning rate")


class ErmAdam(Method):
    """Plain cross-entropy minimised with Adam (Kingma & Ba, ICLR 2015).

    Loss: ``mean_i CE(f(x_i), y_i)``, exactly as ERM. Only the optimiser changes: Adam with the
    default betas (0.9, 0.999), learning rate ``lr`` and the task's weight decay (added to the
    gradient, as ``torch.optim.Adam`` does), batch size and stopping rule. Shah et al. report
    that extreme simplicity bias holds across optimisers (SGD, Adam, RMSProp), so this row
    should look like ERM's.
    """

    name = "erm-adam"
    version = "1"
    track = Track.T0
    HParams = ErmAdamHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        config = ctx.budget.model_copy(update={"optimizer": "adam", "lr": self.hparams.lr})
        model, _ = ctx.fit_model(config=config)
        return model
