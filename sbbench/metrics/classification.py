"""Batched predictions and classification metrics of two-class models.

A *model* is any :class:`torch.nn.Module` that maps a float batch ``(n, *input_shape)`` to
``(n, 2)`` logits; labels ``y`` are ``(n,)`` int64 tensors with values in {0, 1}.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain

import torch
from torch import Tensor, nn

DEFAULT_BATCH_SIZE = 8192


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode; on exit give every submodule back its own previous mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def predict_logits(model: nn.Module, x: Tensor, batch_size: int = DEFAULT_BATCH_SIZE) -> Tensor:
    """Logits of ``model`` on ``x``, evaluated in eval mode without gradients.

    Args:
        model: two-class model; it runs on the device of its parameters.
        x: ``(n, *input_shape)`` float inputs.
        batch_size: examples per forward pass.

    Returns:
        ``(n, 2)`` logits on ``x``'s device.
    """
    check_batch_size(batch_size)
    device = model_device(model, x.device)
    with eval_mode(model), torch.no_grad():
        logits = torch.cat([model(batch.to(device)).to(x.device) for batch in x.split(batch_size)])
    if logits.shape != (len(x), 2):
        raise ValueError(f"model must map n inputs to (n, 2) logits, got {tuple(logits.shape)}")
    return logits


def margin_scores(logits: Tensor) -> Tensor:
    """``(n,)`` scores ``logit_1 - logit_0`` of ``(n, 2)`` logits; positive means class 1."""
    check_logits(logits)
    return logits[:, 1] - logits[:, 0]


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Fraction of examples whose arg-max logit is the label (a tie predicts class 0).

    Args:
        logits: ``(n, 2)`` logits.
        y: ``(n,)`` labels in {0, 1}.
    """
    check_logits(logits)
    check_labels(y, len(logits))
    return (logits.argmax(dim=1) == y).double().mean().item()


def roc_auc(scores: Tensor, y: Tensor) -> float:
    """Area under the ROC curve of ``scores`` for class 1, ties counted as half.

    ``AUC = P(s+ > s-) + P(s+ = s-) / 2`` over (positive, negative) pairs, computed with the
    Mann-Whitney identity ``AUC = (R_1 - n_1 (n_1 + 1) / 2) / (n_1 n_0)``, where ``R_1`` is the
    sum of the 1-based average ranks of the positives among all scores. NaN scores give NaN.

    Args:
        scores: ``(n,)`` real scores, higher meaning class 1 (e.g. :func:`margin_scores`).
        y: ``(n,)`` labels in {0, 1}.

    Raises:
        ValueError: if either class is absent from ``y``.
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must have shape (n,), got {tuple(scores.shape)}")
    check_labels(y, len(scores))
    positive = (y == 1).cpu().numpy()
    n_1 = int(positive.sum())
    n_0 = positive.size - n_1
    if n_1 == 0 or n_0 == 0:
        raise ValueError(f"ROC-AUC needs both classes, got {n_1} positives and {n_0} negatives")
    # scipy.stats is imported here, not at the top: it takes 1-2 s, and every command and fit process that
    # imports the metrics but never ranks (most of them) would pay it.
    from scipy.stats import rankdata

    ranks = rankdata(scores.detach().cpu().double().numpy(), method="average")
    return float((ranks[positive].sum() - n_1 * (n_1 + 1) / 2) / (n_1 * n_0))


def model_device(model: nn.Module, default: torch.device) -> torch.device:
    """Device of ``model``'s first parameter or buffer, ``default`` for a stateless model."""
    for tensor in chain(model.parameters(), model.buffers()):
        return tensor.device
    return default


def check_logits(logits: Tensor) -> None:
    """Raise ``ValueError`` unless ``logits`` has shape ``(n, 2)``."""
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"logits must have shape (n, 2), got {tuple(logits.shape)}")


def check_labels(y: Tensor, n: int) -> None:
    """Raise ``ValueError`` unless ``y`` is an ``(n,)`` integer tensor with values in {0, 1}."""
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("labels must be integers in {0, 1}")


def check_batch_size(batch_size: int) -> None:
    """Raise ``ValueError`` unless ``batch_size`` is a positive integer."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
