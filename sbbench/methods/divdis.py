"""DivDis (Lee, Yao, Finn, ICLR 2023, "Diversify and Disambiguate").

One backbone, ``H`` linear heads on its penultimate features. With ``q_h(x)`` head ``h``'s
softmax over the 2 classes, a training step on a labeled batch ``(x, y)`` and a pool batch
``x~`` (S independent of the label there) minimises

    sum_h CE(head_h(x), y)
      + mi_weight * mean_{h < g} I(h; g)
      + kl_weight * mean_h KL( mean_{x~} q_h(x~) || stopgrad(mean_{x, h'} q_h'(x)) )

* ``I(h; g)`` is the mutual information of the two heads' predicted labels on the pool batch,
  computed from the in-batch joint ``P_hg(a, c) = mean_{x~} q_h(x~)[a] q_g(x~)[c]`` and its
  marginals ``P_h(a) = mean_{x~} q_h(x~)[a]``:
  ``I = sum_{a,c} P_hg(a, c) log(P_hg(a, c) / (P_h(a) P_g(c)))`` (0 for independent heads,
  ``log 2`` for two identical, certain, balanced heads). Heads that agree on the pool share
  information; heads that use different features are independent there.
* The KL term keeps each head's average pool prediction close to the average training
  prediction (of all heads, gradient stopped), so a head cannot lower the mutual information by
  predicting one class everywhere on the pool. (The authors' code calls this ``kl_backward``.)

Two tracks:

* ``divdis`` (T1): the pool is unlabeled and nothing is selected with labels; the returned
  module averages the logits of all heads.
* ``divdis-t2`` (T2): after training, the head with the highest accuracy on the
  ``select_examples`` labeled decorrelated validation examples on which the heads disagree most
  (mean absolute difference of their class probabilities, over head pairs) is returned alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.data.dataset import LabeledSet
from sbbench.methods.base import HParams, Method, PenaltyMeter, Track, TrainContext, hparam
from sbbench.methods.pool import PoolSampler, fixed_epochs, require_pool
from sbbench.seeding import derive_seed

LOG_EPS = 1e-12
"""Added inside logs of probabilities, so that a certain head gives finite values and gradients."""


def pairwise_mutual_information(probs: Tensor) -> Tensor:
    """Mean over head pairs ``h < g`` of the in-batch mutual information of their predictions.

    Args:
        probs: ``(b, H, C)`` class probabilities of ``H >= 2`` heads on a batch of ``b`` inputs.

    Returns:
        Scalar tensor ``mean_{h<g} sum_{a,c} P_hg(a,c) log(P_hg(a,c) / (P_h(a) P_g(c)))`` with
        ``P_hg = mean_b probs[b, h, :] outer probs[b, g, :]`` and ``P_h = mean_b probs[b, h, :]``.
    """
    heads = probs.shape[1]
    if heads < 2:
        raise ValueError(f"mutual information needs at least 2 heads, got {heads}")
    joint = torch.einsum("bha,bgc->hgac", probs, probs) / len(probs)  # (H, H, C, C)
    marginal = probs.mean(dim=0)  # (H, C)
    independent = torch.einsum("ha,gc->hgac", marginal, marginal)  # (H, H, C, C)
    information = (joint * (torch.log(joint + LOG_EPS) - torch.log(independent + LOG_EPS))).sum(dim=(2, 3))
    upper = torch.triu_indices(heads, heads, offset=1)
    return information[upper[0], upper[1]].mean()


def marginal_kl(pool_probs: Tensor, train_probs: Tensor) -> Tensor:
    """``mean_h KL(mean_b pool_probs[b, h] || mean_{b, h'} train_probs[b, h'])``, training side detached.

    Args:
        pool_probs: ``(b, H, C)`` head probabilities on the pool batch.
        train_probs: ``(b', H, C)`` head probabilities on the labeled batch.

    Returns:
        Scalar tensor, 0 when every head's average pool prediction equals the training one.
    """
    target = pool_probs.mean(dim=0)  # (H, C)
    source = train_probs.detach().mean(dim=(0, 1))  # (C,)
    return (target * (torch.log(target + LOG_EPS) - torch.log(source + LOG_EPS))).sum(dim=1).mean()


def divdis_terms(head_logits: Tensor, y: Tensor, pool_probs: Tensor, mi_weight: float,
                 kl_weight: float) -> tuple[Tensor, Tensor, Tensor]:
    """The three terms of :func:`divdis_loss`: the summed cross-entropies, the weighted MI and the weighted KL."""
    heads = head_logits.shape[1]
    ce = F.cross_entropy(head_logits.reshape(-1, 2), y.repeat_interleave(heads), reduction="sum") / len(y)
    return (ce, mi_weight * pairwise_mutual_information(pool_probs),
            kl_weight * marginal_kl(pool_probs, head_logits.softmax(dim=-1)))


def divdis_loss(head_logits: Tensor, y: Tensor, pool_probs: Tensor, mi_weight: float, kl_weight: float) -> Tensor:
    """The full DivDis loss of one step (module docstring).

    ``sum_h CE(head_logits[:, h], y) + mi_weight * pairwise_mutual_information(pool_probs)
    + kl_weight * marginal_kl(pool_probs, softmax(head_logits))``.

    Args:
        head_logits: ``(b, H, 2)`` logits of every head on the labeled batch.
        y: ``(b,)`` labels.
        pool_probs: ``(b', H, 2)`` class probabilities of every head on the pool batch.
        mi_weight, kl_weight: weights of the two regularisers.
    """
    ce, mi, kl = divdis_terms(head_logits, y, pool_probs, mi_weight, kl_weight)
    return ce + mi + kl


def disagreement_scores(head_logits: Tensor) -> Tensor:
    """``(n,)`` per-example disagreement: mean over head pairs of ``|q_h - q_g|`` summed over classes.

    Args:
        head_logits: ``(n, H, C)`` logits of every head.
    """
    probs = head_logits.softmax(dim=-1)
    return (probs.unsqueeze(1) - probs.unsqueeze(2)).abs().sum(dim=-1).mean(dim=(1, 2))


def select_head(head_logits: Tensor, y: Tensor, n_select: int) -> int:
    """The head with the highest accuracy on the ``n_select`` examples the heads disagree on most.

    Args:
        head_logits: ``(n, H, C)`` logits of every head on the labeled selection set.
        y: ``(n,)`` labels of that set.
        n_select: how many of the most-disagreed examples to use (all when ``n_select >= n``).

    Returns:
        The head's index; a tie goes to the lowest index.
    """
    if n_select < 1:
        raise ValueError(f"n_select must be positive, got {n_select}")
    chosen = disagreement_scores(head_logits).argsort(descending=True, stable=True)[:n_select]
    correct = head_logits[chosen].argmax(dim=-1) == y[chosen].unsqueeze(1)  # (n_select, H)
    accuracy = correct.double().mean(dim=0)
    return int(torch.nonzero(accuracy == accuracy.max())[0, 0])


class MultiHead(nn.Module):
    """A backbone's penultimate features followed by ``heads`` linear 2-class heads.

    ``forward`` returns ``(n, 2)`` logits: the mean over heads when ``head`` is ``None``, else
    that head's. ``head_logits`` returns all heads' ``(n, H, 2)``; ``features`` the backbone's.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, heads: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.Linear(feature_dim, 2 * heads)
        self.n_heads = heads
        self.head: int | None = None

    def features(self, x: Tensor) -> Tensor:
        """The backbone's ``(n, feature_dim)`` penultimate features."""
        return self.backbone.features(x)

    def head_logits(self, x: Tensor) -> Tensor:
        """``(n, H, 2)`` logits of every head."""
        return self.heads(self.features(x)).view(len(x), self.n_heads, 2)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.head_logits(x)
        return logits.mean(dim=1) if self.head is None else logits[:, self.head]


class DivDisHParams(HParams):
    heads: int = hparam(4, description="number of heads (>= 2)")
    mi_weight: float = hparam(10.0, low=1.0, high=100.0, log=True,
                              description="weight of the mean pairwise mutual information on the pool")
    kl_weight: float = hparam(10.0, low=1.0, high=100.0, log=True,
                              description="weight of the KL between mean pool and mean train predictions")
    epochs: int = hparam(20, description="training epochs (no early stopping)")


class DivDis(Method):
    """DivDis, T1: diverse heads on the unlabeled pool, the average of all heads returned.

    Reports ``steps``, ``penalty_steps`` (every step) and ``penalty_share``, the mean share of the
    mutual-information and KL terms in the loss.
    """

    name = "divdis"
    version = "1"
    track = Track.T1
    HParams = DivDisHParams
    paper = "https://openreview.net/forum?id=RVTOp3MwT3n"

    def fit(self, ctx: TrainContext) -> nn.Module:
        return self.train_heads(ctx)

    def train_heads(self, ctx: TrainContext) -> MultiHead:
        """Build the multi-head model on a fresh backbone and train it with the DivDis loss."""
        hp = self.hparams
        if hp.heads < 2 or hp.epochs < 1:
            raise ValueError(f"divdis needs heads >= 2 and epochs >= 1, got {hp.heads} and {hp.epochs}")
        pool = require_pool(ctx.pool, self.name)
        backbone = ctx.make_backbone()
        if not callable(getattr(backbone, "features", None)):
            raise TypeError(f"{self.name} needs a backbone with a features(x) method (penultimate activations)")
        with torch.no_grad():  # eval mode: the probe must not touch normalisation statistics
            feature_dim = backbone.eval().features(ctx.train.x[:2]).shape[1]
        model = MultiHead(backbone, feature_dim, hp.heads).to(ctx.device)
        sample = PoolSampler(pool, ctx.budget.batch_size, derive_seed(ctx.seed, "divdis pool"))
        meter = PenaltyMeter()

        def objective(model: MultiHead, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            logits = model.head_logits(x)  # (b, H, 2)
            pool_probs = model.head_logits(sample()).softmax(dim=-1)
            ce, mi, kl = divdis_terms(logits, y, pool_probs, hp.mi_weight, hp.kl_weight)
            meter.acted(mi + kl, ce)
            return ce + mi + kl, logits.mean(dim=1)

        model, _ = ctx.fit_model(model, objective, config=fixed_epochs(ctx.budget, hp.epochs))
        meter.report(ctx)
        return model


class DivDisT2HParams(DivDisHParams):
    select_examples: int = hparam(128, description="most-disagreed labeled validation examples used to pick the head")


class DivDisT2(DivDis):
    """DivDis, T2: the same training, then the head that is most accurate on the most-disagreed validation examples."""

    name = "divdis-t2"
    version = "1"
    track = Track.T2
    HParams = DivDisT2HParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        if ctx.val is None:
            raise ValueError("divdis-t2 needs the labeled decorrelated validation set (track T2); the task has none")
        model = self.train_heads(ctx)
        model.head = self.choose_head(model, ctx.val)
        ctx.log(f"selected head {model.head} of {model.n_heads}")
        return model

    def choose_head(self, model: MultiHead, val: LabeledSet) -> int:
        """The head :func:`select_head` picks on the labeled validation set ``val``."""
        with torch.no_grad():
            head_logits = model.eval().head_logits(val.x)
        return select_head(head_logits, val.y, self.hparams.select_examples)
