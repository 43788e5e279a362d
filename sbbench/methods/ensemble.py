"""Deep ensembles: independently seeded backbones whose logits are averaged."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sbbench.methods.base import HParams, Method, Track, TrainContext, hparam
from sbbench.seeding import derive_seed


class LogitAverage(nn.Module):
    """An ensemble as one module: ``forward(x) = (1/k) sum_m f_m(x)``, logits of shape ``(n, 2)``.

    ``features(x)`` concatenates the members' penultimate activations along the last
    dimension, ``(n, sum_m w_m)``. Members must expose ``features`` for that method only.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def member_logits(self, x: Tensor) -> list[Tensor]:
        """Each member's ``(n, 2)`` logits, in member order."""
        return [member(x) for member in self.members]

    def features(self, x: Tensor) -> Tensor:
        """Concatenated penultimate activations of the members, ``(n, sum_m w_m)``."""
        return torch.cat([member.features(x) for member in self.members], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack(self.member_logits(x)).mean(dim=0)


def member_seed(seed: int, index: int) -> int:
    """Seed of ensemble member ``index``: the job's own seed for member 0, an independent stream after."""
    return seed if index == 0 else derive_seed(seed, f"ensemble-member-{index}")


class EnsembleHParams(HParams):
    k: int = hparam(3, choices=[2, 3, 5, 10], description="number of members")


class DeepEnsemble(Method):
    """``k`` backbones trained independently with plain ERM; the returned model averages their logits.

    Member ``m`` is initialised after ``torch.manual_seed(s_m)`` and shuffled with ``s_m``, where
    ``s_0`` is the job's seed (so member 0 is exactly the ERM model of that seed) and ``s_m``
    for ``m > 0`` an independent stream derived from it. Prediction:
    ``f(x) = (1/k) sum_m f_m(x)`` on logits. Checked: the paper's (Shah et al., NeurIPS 2020,
    Section 6) ensemble of 3 independently trained FCNs on LMS-5 keeps S-randomized AUC at 0.507,
    i.e. averaging models that all use S still uses only S. Compute: ``k`` times ERM.
    """

    name = "ensemble"
    version = "1"
    track = Track.T0
    HParams = EnsembleHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        members = []
        for index in range(self.hparams.k):
            seed = member_seed(ctx.seed, index)
            torch.manual_seed(seed)
            model, _ = ctx.fit_model(seed=seed)
            members.append(model)
        return LogitAverage(members).eval()
