"""Statistics over seeds: per-task summaries and paired comparisons between two methods."""

from __future__ import annotations

import math
import warnings

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats


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
        with warnings.catch_warnings():  # near-identical differences only lose precision, not meaning
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(stats.ttest_1samp(diff, 0.0).pvalue)
    return PairedDifference(mean=summary.mean, ci_low=summary.ci_low, ci_high=summary.ci_high,
                            p_value=p_value, n=len(diff))
