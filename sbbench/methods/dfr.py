"""Deep Feature Reweighting, DFR (Kirichenko, Izmailov, Wilson, ICLR 2023, "Last Layer Re-Training
is Sufficient for Robustness to Spurious Correlations").

Two steps:

1. **ERM.** The task's backbone trained by ``ctx.fit_model()`` (task budget and stopping rule).
2. **Last-layer refit.** With ``f(x)`` the trained backbone's penultimate features, the head is
   replaced by a logistic regression fitted on the labeled decorrelated validation set
   ``ctx.val`` (S independent of the label there), on standardised features
   ``z = (f - mu) / sigma`` (``mu``, ``sigma``: per-feature mean and population standard
   deviation on ``ctx.val``; a constant feature gets ``sigma = 1``). With labels ``y_i`` in
   {0, 1} and scores ``s_i = w . z_i + b`` it minimises

       sum_i [log(1 + exp(s_i)) - y_i s_i] + R(w) / C,
       R(w) = ||w||_1 (``penalty="l1"``)  or  ||w||_2^2 / 2 (``penalty="l2"``),

   the bias ``b`` unpenalised (the convention of scikit-learn's ``LogisticRegression``, so ``C``
   is comparable with the paper's grid). It is solved in float64 by full-batch accelerated
   proximal gradient descent (FISTA with step ``1 / L``, ``L`` the Lipschitz constant of the
   smooth part's gradient, and gradient-based momentum restarts): deterministic, and exact for
   the non-smooth L1 penalty (soft thresholding).

The standardisation is folded into a new ``nn.Linear`` head: the refit score is
``s = (w / sigma) . f + (b - (w / sigma) . mu)`` and the head outputs the logits ``(0, s)``, so
``logit_1 - logit_0 = s`` and the softmax is the logistic regression's probability.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.methods.base import HParams, Method, Track, TrainContext, hparam

MAX_ITERATIONS = 20_000
"""Cap on the proximal-gradient iterations of the logistic regression."""
TOLERANCE = 1e-9
"""Stop when no parameter moved by more than this (relative to the largest parameter, at least 1)."""
MIN_STD = 1e-8
"""Features whose standard deviation on the validation set is below this count as constant (sigma = 1)."""
FEATURE_BATCH = 1024
"""Validation examples per forward pass when computing the penultimate features."""


def standardization(features: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature ``(mean, std)`` of ``(n, w)`` features: population std, 1 where it is below :data:`MIN_STD`."""
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False)
    return mean, torch.where(std < MIN_STD, torch.ones_like(std), std)


def logistic_objective(z: Tensor, y: Tensor, w: Tensor, b: Tensor | float, c: float, penalty: str) -> Tensor:
    """``sum_i [log(1 + exp(s_i)) - y_i s_i] + R(w) / c`` with ``s = z @ w + b`` (module docstring)."""
    scores = z @ w + b
    data = (F.softplus(scores) - y.to(scores.dtype) * scores).sum()
    regulariser = w.abs().sum() if penalty == "l1" else 0.5 * (w * w).sum()
    return data + regulariser / c


def fit_logistic_regression(z: Tensor, y: Tensor, c: float, penalty: str = "l1", *,
                            max_iterations: int = MAX_ITERATIONS,
                            tolerance: float = TOLERANCE) -> tuple[Tensor, Tensor]:
    """Minimise :func:`logistic_objective` over ``(w, b)`` by FISTA in float64.

    Args:
        z: ``(n, d)`` (standardised) features.
        y: ``(n,)`` labels in {0, 1}.
        c: inverse regularisation strength ``C > 0``.
        penalty: ``"l1"`` or ``"l2"`` on ``w`` (never on ``b``).

    Returns:
        ``(w, b)``: float64 tensors of shapes ``(d,)`` and ``()``, on ``z``'s device.
    """
    if c <= 0:
        raise ValueError(f"c must be positive, got {c}")
    if penalty not in ("l1", "l2"):
        raise ValueError(f"penalty must be 'l1' or 'l2', got {penalty!r}")
    n, d = z.shape
    design = torch.cat([z.double(), torch.ones(n, 1, dtype=torch.float64, device=z.device)], dim=1)
    target = y.double()
    # The smooth part's gradient is (1/4) ||design||_2^2-Lipschitz (sigmoid' <= 1/4), plus 1/c for the L2 term.
    lipschitz = 0.25 * float(torch.linalg.matrix_norm(design, ord=2)) ** 2 + (1.0 / c if penalty == "l2" else 0.0)
    step = 1.0 / lipschitz
    theta = torch.zeros(d + 1, dtype=torch.float64, device=z.device)
    previous = theta.clone()
    momentum_age = 0
    for _ in range(max_iterations):
        point = theta + (momentum_age / (momentum_age + 3)) * (theta - previous)
        gradient = design.T @ (torch.sigmoid(design @ point) - target)
        if penalty == "l2":
            gradient[:d] += point[:d] / c
        candidate = point - step * gradient
        if penalty == "l1":  # the proximal map of (step / c) ||w||_1: soft thresholding, bias untouched
            candidate[:d] = torch.sign(candidate[:d]) * (candidate[:d].abs() - step / c).clamp_min(0.0)
        # Restart the momentum when it points against the descent direction (O'Donoghue and Candes, 2015).
        momentum_age = 0 if float(torch.dot(point - candidate, candidate - theta)) > 0 else momentum_age + 1
        previous, theta = theta, candidate
        change = float((theta - previous).abs().max())
        if change <= tolerance * max(1.0, float(theta.abs().max())):
            break
    return theta[:d], theta[d]


def fold_standardization(w: Tensor, b: Tensor | float, mean: Tensor, std: Tensor) -> nn.Linear:
    """An ``nn.Linear(d, 2)`` whose logits on raw features ``f`` are ``(0, w . (f - mean) / std + b)`` (float32)."""
    scale = w.double() / std.double()
    weight = torch.zeros(2, len(w), dtype=torch.float64)
    weight[1] = scale.cpu()
    bias = torch.zeros(2, dtype=torch.float64)
    bias[1] = torch.as_tensor(b, dtype=torch.float64).cpu() - torch.dot(scale, mean.double()).cpu()
    layer = nn.Linear(len(w), 2)
    with torch.no_grad():
        layer.weight.copy_(weight.float())
        layer.bias.copy_(bias.float())
    return layer


class LastLayerRefit(nn.Module):
    """A trained backbone's penultimate features followed by a new linear ``head``.

    ``forward(x) = head(backbone.features(x))``; ``features`` is the backbone's, so the
    feature-availability probe sees the ERM representation.
    """

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, x: Tensor) -> Tensor:
        return self.backbone.features(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone.features(x))


class DFRHParams(HParams):
    c: float = hparam(1.0, low=1e-2, high=1e2, log=True,
                      description="inverse regularisation strength C of the last-layer logistic regression")
    penalty: Literal["l1", "l2"] = hparam("l1", choices=["l1", "l2"],
                                          description="regulariser of the refit weights (the paper uses l1)")


class DFR(Method):
    """ERM, then the last layer refit on the decorrelated validation set (module docstring).

    Needs ``ctx.val`` (track T2): a ``ValueError`` says so when it is missing.
    """

    name = "dfr"
    version = "1"
    paper = "https://arxiv.org/abs/2204.02937"
    track = Track.T2
    HParams = DFRHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        if ctx.val is None:
            raise ValueError("dfr refits the last layer on the labeled decorrelated validation set (track T2), "
                             "but the context has none (ctx.val is None)")
        hp = self.hparams
        backbone, _ = ctx.fit_model()
        if not callable(getattr(backbone, "features", None)):
            raise TypeError("dfr needs a backbone with a features(x) method (penultimate activations)")
        with torch.no_grad():
            features = torch.cat([backbone.eval().features(batch) for batch in ctx.val.x.split(FEATURE_BATCH)])
        features = features.flatten(1).double().cpu()
        labels = ctx.val.y.cpu()
        mean, std = standardization(features)
        w, b = fit_logistic_regression((features - mean) / std, labels, hp.c, hp.penalty)
        head = fold_standardization(w, b, mean, std).to(ctx.device)
        scores = (features - mean) / std @ w + b
        accuracy = float(((scores > 0).long() == labels).double().mean())
        ctx.log(f"refit the last layer on {len(labels)} validation points ({hp.penalty}, C={hp.c}): "
                f"{int((w != 0).sum())} of {len(w)} weights non-zero, validation accuracy {accuracy:.4f}")
        ctx.report("val_accuracy", accuracy)
        ctx.report("nonzero_weights", int((w != 0).sum()))
        return LastLayerRefit(backbone, head).eval()
