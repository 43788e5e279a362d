"""GroupDRO (Sagawa, Koh, Hashimoto, Liang, ICLR 2020, "Distributionally Robust Neural Networks for
Group Shifts"), the paper's online algorithm, with groups inferred from the simple block S.

**Groups.** Group of training point ``i``: ``g_i = 2 y_i + a_i`` with ``a_i = 1`` when S agrees
with the label and 0 when it conflicts: (y=0, conflict) 0, (y=0, agree) 1, (y=1, conflict) 2,
(y=1, agree) 3. The tasks give no agreement labels, so they are inferred once, inside ``fit``:
a small probe reading S only (the canonical coordinates ``space.block("S")``, standardised;
``Linear(|S|, 32) - ReLU - Linear(32, 2)``, seeded initialisation, Adam at lr 1e-2 for
``probe_epochs`` epochs) is trained on the training labels, and ``a_i = [probe(S_i) == y_i]``.
Since S alone cannot tell a conflicting point from the other class's agreeing points (which
outnumber them), the probe follows the majority rule and marks the conflicting points.
Knowing which coordinates form S is the oracle track's privilege.

**Training.** A fresh backbone with the task's optimiser, batch size, schedule and stopping rule.
Group weights ``q`` start uniform over the groups present in the training set (absent groups
keep ``q_g = 0``). On each minibatch, with ``L_g`` the mean cross-entropy of the minibatch's
examples of group ``g`` (0 for a group without examples in the minibatch),

    q_g <- q_g exp(eta L_g) / sum_h q_h exp(eta L_h)       (L detached)
    loss = sum_g q_g L_g

so only the groups present in the minibatch contribute to the loss, and the weight moves
towards the groups with the highest loss. Training stops by the task's rule applied to the
running accuracy and mean (unweighted) cross-entropy, after ``max_epochs`` at the latest.

With only two groups present (S agrees with the label on every training point) this is an
online DRO over the two classes: at most a class reweighting, close to ERM on class-balanced
data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.data.features import FeatureSpace
from sbbench.methods.base import HParams, Method, Track, TrainContext, hparam
from sbbench.seeding import derive_seed
from sbbench.training import TrainingDiverged, make_optimizer, make_scheduler, should_stop

N_GROUPS = 4
GROUP_NAMES = ("y=0, S conflicts", "y=0, S agrees", "y=1, S conflicts", "y=1, S agrees")
PROBE_WIDTH = 32
PROBE_LR = 1e-2


def group_ids(y: Tensor, agree: Tensor) -> Tensor:
    """``(n,)`` int64 groups ``2 y + agree`` (module docstring) of labels ``y`` and bool ``agree``."""
    return 2 * y.long() + agree.long()


def group_mean_losses(losses: Tensor, groups: Tensor, n_groups: int = N_GROUPS) -> tuple[Tensor, Tensor]:
    """Per-group mean of ``(b,)`` losses: ``((n_groups,) means, (n_groups,) counts)``; 0 for an empty group."""
    counts = torch.zeros(n_groups, dtype=losses.dtype, device=losses.device).index_add_(
        0, groups, torch.ones_like(losses))
    sums = torch.zeros(n_groups, dtype=losses.dtype, device=losses.device).index_add_(0, groups, losses)
    return sums / counts.clamp_min(1), counts


def group_dro_update(q: Tensor, group_losses: Tensor, eta: float) -> Tensor:
    """One exponentiated-gradient step: ``q_g exp(eta L_g)`` renormalised (in log space; ``q_g = 0`` stays 0)."""
    return torch.softmax(torch.log(q) + eta * group_losses.detach(), dim=0)


def group_dro_loss(losses: Tensor, groups: Tensor, q: Tensor, eta: float) -> tuple[Tensor, Tensor]:
    """The minibatch's robust loss and the updated group weights: ``(sum_g q'_g L_g, q')``."""
    group_losses, _ = group_mean_losses(losses, groups, len(q))
    q = group_dro_update(q, group_losses, eta)
    return torch.dot(q, group_losses), q


def s_agreement(space: FeatureSpace, x: Tensor, y: Tensor, *, epochs: int, batch_size: int,
                seed: int) -> Tensor:
    """``(n,)`` bool: where an S-only probe trained on ``(x, y)`` predicts the label (module docstring).

    The probe's initialisation and shuffling come from ``seed``; torch's global RNG is left alone.
    """
    s = space.to_canonical(x)[:, space.block("S").to(x.device)]
    s = (s - s.mean(dim=0)) / s.std(dim=0, unbiased=False).clamp_min(1e-8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = nn.Sequential(nn.Linear(s.shape[1], PROBE_WIDTH), nn.ReLU(), nn.Linear(PROBE_WIDTH, 2))
    probe = probe.to(x.device)
    optimizer = torch.optim.Adam(probe.parameters(), lr=PROBE_LR)
    generator = torch.Generator().manual_seed(seed)
    probe.train()
    for _ in range(epochs):
        for index in torch.randperm(len(y), generator=generator).to(x.device).split(batch_size):
            loss = F.cross_entropy(probe(s[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    probe.eval()
    with torch.no_grad():
        return probe(s).argmax(dim=1) == y



class GroupDROHParams(HParams):
    eta: float = hparam(0.01, low=1e-3, high=1.0, log=True, description="step size of the group weights q")
    probe_epochs: int = hparam(5, description="epochs of the S-only probe that infers the groups (not searched)")


class GroupDRO(Method):
    """Online GroupDRO over (label, S agrees with the label) groups found by an S-only probe (module docstring)."""

    name = "group-dro"
    version = "1"
    paper = "https://arxiv.org/abs/1911.08731"
    track = Track.ORACLE
    HParams = GroupDROHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        hp = self.hparams
        if ctx.space is None:
            raise ValueError("group-dro infers its groups from the simple block S, which only the oracle track "
                             "reveals (ctx.space is None)")
        if hp.probe_epochs < 1:
            raise ValueError(f"probe_epochs must be at least 1, got {hp.probe_epochs}")
        config = ctx.budget
        x, y = ctx.train.x, ctx.train.y
        n = len(y)
        agree = s_agreement(ctx.space, x, y, epochs=hp.probe_epochs, batch_size=config.batch_size,
                            seed=derive_seed(ctx.seed, "group-dro probe"))
        groups = group_ids(y, agree)
        counts = torch.bincount(groups, minlength=N_GROUPS)
        ctx.log("group-dro groups: " + ", ".join(f"({name}) {int(count)}"
                                                 for name, count in zip(GROUP_NAMES, counts, strict=True)))
        ctx.report("conflicting_share", float((~agree.bool()).float().mean()))
        present = (counts > 0).float()
        q = present / present.sum()

        model = ctx.make_backbone().to(ctx.device)
        optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], config)
        scheduler = make_scheduler(optimizer, config, math.ceil(n / config.batch_size))
        generator = torch.Generator().manual_seed(ctx.seed)
        model.train()
        for epoch in range(1, config.max_epochs + 1):
            order = torch.randperm(n, generator=generator).to(ctx.device)
            ce_sum = torch.zeros((), device=ctx.device)
            correct = torch.zeros((), device=ctx.device)
            for index in order.split(config.batch_size):
                yb = y[index]
                logits = model(x[index])
                losses = F.cross_entropy(logits, yb, reduction="none")
                loss, q = group_dro_loss(losses, groups[index], q, hp.eta)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                ce_sum += losses.detach().sum()
                correct += (logits.detach().argmax(dim=1) == yb).sum()
            mean_ce, accuracy = (value / n for value in torch.stack([ce_sum, correct.to(ce_sum.dtype)]).tolist())
            if not math.isfinite(mean_ce):
                raise TrainingDiverged(f"group-dro: training loss became {mean_ce} in epoch {epoch}")
            ctx.log(f"epoch {epoch}: loss {mean_ce:.4f}, acc {accuracy:.4f}, "
                    f"q {', '.join(f'{value:.3f}' for value in q.tolist())}")
            if should_stop(config, mean_ce, accuracy):
                break
        ctx.report("epochs", epoch)
        ctx.report("max_group_weight", float(q.max()))
        return model.eval()
