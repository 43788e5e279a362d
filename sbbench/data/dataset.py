"""The in-memory dataset every task hands to training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from sbbench.data.features import FeatureSpace


@dataclass(frozen=True)
class LabeledSet:
    """Inputs ``x`` of shape ``(n, *input_shape)`` (float32) and labels ``y`` (int64 in {0, 1})."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    """Train and test splits of one task instance plus its :class:`FeatureSpace`.

    ``pool`` (unlabeled, S drawn independently of the label) and ``val`` (labeled, same
    decorrelated distribution) are the side information of tracks T1 and T2; they are
    ``None`` when a task offers none. ``extra_tests`` are further labeled test sets (e.g. the
    MNIST-CIFAR freshly built randomized sets) on which accuracy and AUC are reported as
    ``<name>_acc`` and ``<name>_auc``; methods never see them.
    """

    train: LabeledSet
    test: LabeledSet
    space: FeatureSpace
    pool: LabeledSet | None = None
    val: LabeledSet | None = None
    extra_tests: dict[str, LabeledSet] = field(default_factory=dict)
