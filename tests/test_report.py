"""The results report calls a paired difference higher, lower or n.s. by its p-value."""

from __future__ import annotations

import pytest

from sbbench.leaderboard.compare import ComparisonRow
from sbbench.leaderboard.render import column_label
from sbbench.leaderboard.report import verdict
from sbbench.leaderboard.stats import paired_difference


def _row(method: list[float], baseline: list[float]) -> ComparisonRow:
    return ComparisonRow("lms5", "s_rand_auc", sum(method) / len(method), sum(baseline) / len(baseline),
                         paired_difference(method, baseline))


@pytest.mark.parametrize(("method", "expected"), [
    ([0.90, 0.91, 0.92, 0.90, 0.93], "higher"),
    ([0.10, 0.11, 0.12, 0.10, 0.13], "lower"),
    ([0.48, 0.52, 0.49, 0.51, 0.50], "n.s."),
    ([0.50, 0.50, 0.50, 0.50, 0.50], "n.s."),
])
def test_verdict_follows_the_paired_t_test(method: list[float], expected: str) -> None:
    baseline = [0.50, 0.50, 0.50, 0.50, 0.50]
    assert verdict(_row(method, baseline), alpha=0.05) == expected


def test_a_consistent_but_small_gain_is_higher_only_at_a_loose_level() -> None:
    row = _row([0.51, 0.50, 0.52, 0.50, 0.51], [0.50, 0.50, 0.50, 0.50, 0.50])
    assert 0.01 < row.diff.p_value < 0.1
    assert verdict(row, alpha=0.05) == "n.s." and verdict(row, alpha=0.1) == "higher"


@pytest.mark.parametrize(("column", "label"), [
    ("mnist-cifar/adv_acc_linf_0.03137254901960784", "mnist-cifar/adv_acc_linf_8/255"),
    ("mnist-cifar/adv_acc_linf_0.00784313725490196", "mnist-cifar/adv_acc_linf_2/255"),
    ("mnist-cifar/adv_acc_linf_0.3", "mnist-cifar/adv_acc_linf_0.3"),
    ("lms5/adv_acc_linf_0.2", "lms5/adv_acc_linf_0.2"),
    ("lms5/adv_acc_l2_0.123456789", "lms5/adv_acc_l2_0.123456789"),
    ("lms5/s_rand_auc", "lms5/s_rand_auc"),
])
def test_long_radii_in_255ths_are_labelled_as_fractions(column: str, label: str) -> None:
    assert column_label(column) == label
