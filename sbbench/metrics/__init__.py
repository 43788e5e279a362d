"""Metrics of simplicity bias in two-class models.

Accuracy and ROC-AUC, block randomization and swaps, per-coordinate dependence, per-example
and universal adversarial perturbations, and :func:`evaluate`, which computes them all. The
functions are pure, batched and seeded; the submodules give the formulas.
"""

from sbbench.metrics.adversarial import (
    adversarial_accuracy,
    apply_universal,
    as_uap,
    class_sign,
    pgd_attack,
    share_on_block,
    svd_universal_perturbation,
    universal_accuracy,
    universal_share_on_block,
)
from sbbench.metrics.classification import (
    accuracy,
    eval_mode,
    margin_scores,
    predict_logits,
    roc_auc,
)
from sbbench.metrics.evaluate import AttackSpec, Evaluation, MetricSpec, evaluate
from sbbench.metrics.randomization import (
    block_randomized_metrics,
    block_swapped_accuracy,
    coordinate_dependence,
    donor_block_worst_group,
    randomize_block,
    swap_block,
)

__all__ = [
    "AttackSpec",
    "Evaluation",
    "MetricSpec",
    "accuracy",
    "adversarial_accuracy",
    "apply_universal",
    "as_uap",
    "block_randomized_metrics",
    "block_swapped_accuracy",
    "class_sign",
    "coordinate_dependence",
    "donor_block_worst_group",
    "eval_mode",
    "evaluate",
    "margin_scores",
    "pgd_attack",
    "predict_logits",
    "randomize_block",
    "roc_auc",
    "share_on_block",
    "svd_universal_perturbation",
    "swap_block",
    "universal_accuracy",
    "universal_share_on_block",
]
