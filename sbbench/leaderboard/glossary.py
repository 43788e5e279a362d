"""What every leaderboard column and metric means, in one sentence each.

Shared by the web site (header tooltips, metric tables) and the Hub dataset card, so the two
never disagree. Metric names follow :mod:`sbbench.metrics.evaluate`.
"""

from __future__ import annotations

import re

FIXED_COLUMNS: dict[str, str] = {
    "method": "the method's registry name (its entry file is `entries/<method>.json`)",
    "track": "side information the method may use: T0 none, T1 an unlabeled decorrelated pool, "
             "T2 T1 plus a small labeled decorrelated validation set, oracle which coordinates form S",
    "status": "verified / rejected (a maintainer re-trained the entry as it is now; the verdict is kept in the "
              "suite's verdicts/ folder, never in the entry), unverified (no verdict on the entry's current "
              "contents), or stale (scored on an older definition of the suite: re-score it)",
    "score": "the primary metric (see the suite) averaged over tasks of its per-task seed means; "
             "for s_rand_auc, 0.5 means the model uses nothing but S and 1.0 that it also uses S^c fully",
    "seeds": "the number of seeds behind every mean in the row",
}

_NORMS = {"l2": "l_2", "linf": "l_inf"}

_PLAIN: dict[str, str] = {
    "acc": "test accuracy",
    "auc": "test ROC-AUC of logit_1 - logit_0",
    "s_rand_acc": "accuracy with the simple block S randomized (permuted across test examples)",
    "s_rand_auc": "ROC-AUC with S randomized: 0.5 when the model relies on S alone",
    "sc_rand_acc": "accuracy with the complex block S^c randomized",
    "sc_rand_auc": "ROC-AUC with S^c randomized: unchanged when the model ignores S^c",
    "s_rand_wga": "worst accuracy over the four groups (label x whether S agrees with it) of the S-randomized "
                  "test set: 0 when the model relies on S alone",
    "s_swap_acc": "accuracy when S takes its values from examples of the other class (near 0 when relying on S)",
    "sc_swap_acc": "accuracy when S^c takes its values from examples of the other class",
}

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"adv_acc_(l2|linf)_(.+)"), "accuracy under a PGD attack in the {norm} ball of radius {eps}"),
    (re.compile(r"adv_share_s_(l2|linf)_(.+)"),
     "share of the PGD ({norm}, eps {eps}) perturbation's l_2 norm that lies on S (descriptive, not ranked)"),
    (re.compile(r"uap_svd_acc_(l2|linf)_(.+)"),
     "accuracy under the SVD universal perturbation of the per-example {norm} PGD ones (eps {eps})"),
    (re.compile(r"uap_svd_share_s_(l2|linf)_(.+)"), "share of that SVD universal perturbation on S (eps {eps})"),
    (re.compile(r"uap_acc_(l2|linf)_(.+)"),
     "accuracy under a stochastic universal perturbation ({norm}, eps {eps}; Shafahi et al.)"),
    (re.compile(r"uap_share_s_(l2|linf)_(.+)"), "share of that stochastic universal perturbation on S (eps {eps})"),
)

ADVERSARIAL = re.compile(r"adv_acc_(l2|linf)_(.+)")
"""Matches ``adv_acc_<norm>_<eps>`` and captures the norm and the radius."""


def metric_description(metric: str) -> str:
    """One sentence on ``metric``; unknown names get a neutral fallback instead of an error."""
    if metric in _PLAIN:
        return _PLAIN[metric]
    for pattern, template in _PATTERNS:
        match = pattern.fullmatch(metric)
        if match:
            return template.format(norm=_NORMS[match.group(1)], eps=match.group(2))
    return f"metric {metric} (see docs/suites-and-metrics.md)"


def column_description(column: str) -> str:
    """One sentence on a leaderboard column: a fixed column or ``<task>/<metric>``."""
    if column in FIXED_COLUMNS:
        return FIXED_COLUMNS[column]
    task, _, metric = column.partition("/")
    if not metric:
        return f"column {column}"
    return f"on task {task}: {metric_description(metric)}, mean over seeds"
