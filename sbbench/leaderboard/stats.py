"""Statistics over seeds: per-task summaries, paired comparisons between two methods, and Holm's correction
for a family of such comparisons."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict


class Summary(BaseModel):
    """Mean, sample standard deviation and Student-t 95% confidence interval over ``n`` seeds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int


def summarize(values: list[float]) -> Summary:
    """``mean +- t_{0.975, n-1} * std / sqrt(n)``; with one value the interval is the point."""
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    if len(array) < 2:
        return Summary(mean=mean, std=0.0, ci_low=mean, ci_high=mean, n=len(array))
    std = float(array.std(ddof=1))
    from scipy import stats  # imported where used: scipy.stats takes 1-2 s to import
    half = float(stats.t.ppf(0.975, len(array) - 1)) * std / math.sqrt(len(array))
    return Summary(mean=mean, std=std, ci_low=mean - half, ci_high=mean + half, n=len(array))


class PairedDifference(BaseModel):
    """``A - B`` over shared seeds: mean, 95% CI and the paired t-test p-value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int


def paired_difference(a: list[float], b: list[float]) -> PairedDifference:
    """Paired t statistics of ``a[i] - b[i]``; identical runs give difference 0 and p = 1."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    summary = summarize(diff.tolist())
    if len(diff) < 2 or summary.std == 0.0:
        p_value = 1.0 if summary.mean == 0.0 or len(diff) < 2 else 0.0
    else:
        from scipy import stats  # imported where used: scipy.stats takes 1-2 s to import

        with warnings.catch_warnings():  # near-identical differences only lose precision, not meaning
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(stats.ttest_1samp(diff, 0.0).pvalue)
    return PairedDifference(mean=summary.mean, ci_low=summary.ci_low, ci_high=summary.ci_high,
                            p_value=p_value, n=len(diff))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given.

    Holm's step-down procedure over the family of ``m = len(p_values)`` tests. Sort the p-values
    ascending, ``p_(1) <= ... <= p_(m)`` (equal p-values keep their input order, which does not
    change the result), and set::

        adjusted_(i) = max over j <= i of min(1, (m - j + 1) * p_(j))

    so the smallest p-value is multiplied by ``m``, the next by ``m - 1``, ..., the largest by 1,
    each capped at 1, and the running maximum keeps the adjusted values in the order of the raw
    ones (an adjusted p-value is never below that of a smaller raw p-value). Then rejecting
    every hypothesis whose adjusted p-value is below ``alpha`` controls the family-wise error
    rate at ``alpha`` (the probability of at least one false rejection), under any dependence
    between the tests. Every adjusted value is at least its raw value and at most 1.

    Example: ``holm([0.01, 0.04, 0.03, 0.005]) == [0.03, 0.06, 0.06, 0.02]`` (m = 4; sorted
    0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 gives 0.02, 0.03, 0.06, 0.04, and the running
    maximum lifts the last to 0.06). An empty family gives an empty list.

    Raises ``ValueError`` when a p-value is not a number in ``[0, 1]``.
    """
    values = [float(p) for p in p_values]
    bad = [p for p in values if not 0.0 <= p <= 1.0]  # also catches NaN
    if bad:
        raise ValueError(f"p-values must lie in [0, 1]; got {bad[0]!r}")
    m = len(values)
    order = sorted(range(m), key=lambda i: values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):  # rank = j - 1
        running = max(running, min(1.0, (m - rank) * values[index]))
        adjusted[index] = running
    return adjusted
