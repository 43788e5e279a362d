"""Randomize or swap feature blocks to measure which features a model depends on.

Both operations work in the canonical coordinates of a :class:`FeatureSpace` and replace the
block ``B`` of each example ``i`` by the block of a *source* example ``j(i)``:

* randomization: ``j`` is one uniform random permutation shared by all coordinates of ``B``,
  which keeps the block's joint distribution but breaks its link to the label;
* swap: ``j(i)`` is drawn uniformly, with replacement, among the examples of the other class,
  so a model that relies only on ``B`` predicts the wrong class.

Labels are never changed. A model that ignores ``B`` keeps its accuracy and AUC under both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from sbbench.data.features import FeatureSpace
from sbbench.metrics.classification import (
    DEFAULT_BATCH_SIZE,
    accuracy,
    check_batch_size,
    check_labels,
    margin_scores,
    predict_logits,
    roc_auc,
)
from sbbench.seeding import derive_seed

DependenceMode = Literal["random", "swap"]


def randomize_block(
    x: Tensor, space: FeatureSpace, block: str, generator: torch.Generator
) -> Tensor:
    """Apply one random permutation of the examples to every canonical coordinate of a block.

    With canonical coordinates ``z = space.to_canonical(x)`` and a uniform permutation ``pi``
    of ``range(n)``, the result has ``z'[i, B] = z[pi(i), B]`` and ``z'[i, B^c] = z[i, B^c]``.

    Args:
        x: ``(n, *input_shape)`` observed inputs (not modified).
        space: the feature space of ``x``.
        block: block name understood by :meth:`FeatureSpace.block`, e.g. ``"S"`` or ``"c3"``.
        generator: CPU generator that draws the permutation.

    Returns:
        ``(n, *input_shape)`` observed inputs with the block randomized.
    """
    source = torch.randperm(len(x), generator=generator)
    return _replace_block(x, space, space.block(block), source)


def swap_block(
    x: Tensor, y: Tensor, space: FeatureSpace, block: str, generator: torch.Generator
) -> Tensor:
    """Give each example the block values of a random example of the other class.

    ``z'[i, B] = z[j, B]`` with ``j`` uniform over ``{j : y_j != y_i}``, drawn independently
    for each ``i`` (with replacement); other coordinates and the labels are unchanged.

    Args:
        x: ``(n, *input_shape)`` observed inputs (not modified).
        y: ``(n,)`` labels in {0, 1}; both classes must be present.
        space: the feature space of ``x``.
        block: block name understood by :meth:`FeatureSpace.block`.
        generator: CPU generator that draws the donors.

    Returns:
        ``(n, *input_shape)`` observed inputs with the block swapped.
    """
    return _replace_block(x, space, space.block(block), _other_class_donors(y, generator))


def block_randomized_metrics(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    space: FeatureSpace,
    block: str,
    repeats: int = 5,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    worst_group: bool = False,
) -> dict[str, float]:
    """Accuracy and ROC-AUC of ``model`` on ``x`` with ``block`` randomized.

    With ``worst_group``, also the worst-group accuracy ``"wga"``: each randomized example
    ``i`` (block taken from example ``pi(i)``) falls in the group ``(y_i, y_pi(i) == y_i)``,
    label x "the block agrees with the label"; ``wga = min_g correct_g / count_g`` with the
    counts pooled over the ``repeats`` permutations (four groups of about ``n / 4`` rows each,
    so its binomial standard error is about ``sqrt(p (1 - p) / (n repeats / 4))`` at most,
    less since the permutations share ``x``). A model that relies only on the block scores 0
    (every disagreeing row is wrong); one that ignores it scores its accuracy on the worst
    class.

    Returns:
        ``{"acc": ..., "auc": ...}`` (plus ``"wga"``), accuracy and AUC each the mean over
        ``repeats`` independent permutations (see :func:`randomize_block`); the AUC scores are
        ``logit_1 - logit_0``.
    """
    _check_repeats(repeats)
    generator = torch.Generator().manual_seed(seed)
    accs, aucs = [], []
    correct, count = torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64)
    labels, indices = y.cpu(), space.block(block)
    for _ in range(repeats):
        source = torch.randperm(len(x), generator=generator)  # as randomize_block draws it; kept for the groups
        logits = predict_logits(model, _replace_block(x, space, indices, source), batch_size)
        accs.append(accuracy(logits, y))
        aucs.append(roc_auc(margin_scores(logits), y))
        if worst_group:
            _count_groups(logits, labels, labels[source] == labels, correct, count)
    metrics = {"acc": float(np.mean(accs)), "auc": float(np.mean(aucs))}
    if worst_group:
        metrics["wga"] = _worst_group(correct, count)
    return metrics


def donor_block_worst_group(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    donor_x: Tensor,
    donor_y: Tensor,
    space: FeatureSpace,
    block: str,
    repeats: int = 5,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> float:
    """Worst-group accuracy of ``model`` on ``x`` with ``block`` taken from random *donor* examples.

    Each repeat draws donors ``j(i)`` uniformly with replacement from ``donor_x`` and replaces the
    block of ``x_i`` by ``donor_x[j(i)]``'s; example ``i`` then falls in the group ``(y_i,
    donor_y[j(i)] == y_i)``, label x "the block agrees with the label", and ``wga = min_g
    correct_g / count_g`` with counts pooled over ``repeats``. It is :func:`block_randomized_metrics`'s
    ``"wga"`` for a set whose own block says nothing about its labels (a decorrelated validation
    set): the donors (e.g. training examples, whose block predicts their label) give the block a
    known class, so a model that relies on the block alone scores about 0 and one that ignores
    it keeps its accuracy on its worst class.
    """
    _check_repeats(repeats)
    check_labels(donor_y, len(donor_x))
    generator = torch.Generator().manual_seed(seed)
    correct, count = torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64)
    labels, donor_labels, indices = y.cpu(), donor_y.cpu(), space.block(block).to(x.device)
    z_x = space.to_canonical(x)  # once: every repeat only replaces the block
    donor_blocks = space.to_canonical(donor_x.to(x.device))[:, indices]
    for _ in range(repeats):
        donors = torch.randint(len(donor_x), (len(x),), generator=generator)
        z = z_x.clone()
        z[:, indices] = donor_blocks[donors.to(x.device)]
        logits = predict_logits(model, space.from_canonical(z), batch_size)
        _count_groups(logits, labels, donor_labels[donors] == labels, correct, count)
    return _worst_group(correct, count)


def _count_groups(logits: Tensor, labels: Tensor, agrees: Tensor, correct: Tensor, count: Tensor) -> None:
    """Add one repeat's hits and sizes of the four groups (label x ``agrees``) to ``correct`` and ``count``."""
    group = labels * 2 + agrees.long()
    hits = (logits.argmax(dim=1).cpu() == labels).double()
    correct += torch.bincount(group, weights=hits, minlength=4).view(2, 2)
    count += torch.bincount(group, minlength=4).view(2, 2).double()


def _worst_group(correct: Tensor, count: Tensor) -> float:
    """The smallest accuracy over the non-empty groups."""
    return float((correct[count > 0] / count[count > 0]).min())


def block_swapped_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    space: FeatureSpace,
    block: str,
    repeats: int = 5,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> float:
    """Accuracy of ``model`` with ``block`` swapped (:func:`swap_block`), mean over ``repeats``.

    Near 0 for a model that relies only on the block, unchanged for one that ignores it.
    """
    _check_repeats(repeats)
    generator = torch.Generator().manual_seed(seed)
    accs = [
        accuracy(predict_logits(model, swap_block(x, y, space, block, generator), batch_size), y)
        for _ in range(repeats)
    ]
    return float(np.mean(accs))


def coordinate_dependence(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    space: FeatureSpace,
    mode: DependenceMode = "random",
    seed: int = 0,
    coords: Sequence[int] | None = None,
    repeats: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Tensor:
    """Dependence of ``model`` on each canonical coordinate, one coordinate at a time.

    For coordinate ``c`` the block ``{c}`` is randomized (``mode="random"``, reported as the
    ROC-AUC; 0.5 means the model needs ``c``) or swapped with the other class (``mode="swap"``,
    reported as accuracy; 0 means ``c`` alone decides). Values are means over ``repeats``.

    The cost is ``len(coords) * repeats * n`` forward rows, so the full profile (the default)
    only suits low-dimensional canonical spaces such as the synthetic datasets; pass ``coords``
    for high-dimensional inputs. Several coordinates share one forward batch when ``n`` is
    below ``batch_size``. Each coordinate draws from its own stream,
    ``derive_seed(seed, c)``, so its value does not depend on which other coordinates are
    requested.

    Returns:
        ``(len(coords),)`` float64 tensor, in the order of ``coords``.
    """
    _check_repeats(repeats)
    check_batch_size(batch_size)
    check_labels(y, len(x))
    coords = list(range(space.n_features) if coords is None else coords)
    if any(not 0 <= c < space.n_features for c in coords):
        raise ValueError(f"coords must lie in [0, {space.n_features})")
    draw_source, metric = _dependence_mode(mode, y)
    generators = [torch.Generator().manual_seed(derive_seed(seed, c)) for c in coords]
    z = space.to_canonical(x)
    n = len(x)
    per_pass = max(1, batch_size // n)
    totals = torch.zeros(len(coords), dtype=torch.float64)
    for _ in range(repeats):
        for start in range(0, len(coords), per_pass):
            chunk = range(start, min(start + per_pass, len(coords)))
            stacked = z.repeat(len(chunk), 1)
            for row, k in enumerate(chunk):
                source = draw_source(generators[k]).to(z.device)
                stacked[row * n : (row + 1) * n, coords[k]] = z[source, coords[k]]
            logits = predict_logits(model, space.from_canonical(stacked), batch_size)
            for row, k in enumerate(chunk):
                totals[k] += metric(logits[row * n : (row + 1) * n])
    return totals / repeats


def _dependence_mode(
    mode: DependenceMode, y: Tensor
) -> tuple[Callable[[torch.Generator], Tensor], Callable[[Tensor], float]]:
    """(source-index sampler, metric of the modified logits) of a dependence ``mode``."""
    n = len(y)
    if mode == "random":
        return (
            lambda g: torch.randperm(n, generator=g),
            lambda logits: roc_auc(margin_scores(logits), y),
        )
    if mode == "swap":
        return lambda g: _other_class_donors(y, g), lambda logits: accuracy(logits, y)
    raise ValueError(f"mode must be 'random' or 'swap', got {mode!r}")


def _replace_block(x: Tensor, space: FeatureSpace, block: Tensor, source: Tensor) -> Tensor:
    """``x`` with canonical coordinates ``block`` of example ``i`` taken from ``source[i]``."""
    z = space.to_canonical(x).clone()
    block = block.to(z.device)
    z[:, block] = z[:, block][source.to(z.device)]
    return space.from_canonical(z)


def _other_class_donors(y: Tensor, generator: torch.Generator) -> Tensor:
    """``(n,)`` CPU indices ``j(i)``, uniform with replacement over ``{j : y_j != y_i}``."""
    check_labels(y, len(y))
    labels = y.cpu()
    source = torch.empty_like(labels)
    for label in (0, 1):
        members = labels == label
        pool = torch.nonzero(~members).squeeze(1)
        if len(pool) == 0:
            raise ValueError("swapping needs examples of both classes")
        picks = torch.randint(len(pool), (int(members.sum()),), generator=generator)
        source[members] = pool[picks]
    return source


def _check_repeats(repeats: int) -> None:
    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}")
