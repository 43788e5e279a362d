"""Paired-seed comparison of two leaderboard entries.

For each task and metric, the runs of A and B at the same seed saw the same data, so the
per-seed differences ``A - B`` are paired: we report their mean, Student-t 95% CI and the
paired t-test p-value, and say in a sentence who wins where at the 5% level.
"""

from __future__ import annotations

from dataclasses import dataclass

from sbbench.leaderboard.entry import Entry
from sbbench.leaderboard.stats import PairedDifference, paired_difference
from sbbench.suite import Suite

DESCRIPTIVE_PREFIXES = ("adv_share_s", "uap_share_s", "uap_svd_share_s")
"""Metrics that describe a model rather than rank it: no winner is declared on them."""

ACCURACY_GUARD = 0.02
"""A method whose clean accuracy on a task is more than this below the other's wins nothing on that task."""


@dataclass(frozen=True)
class ComparisonRow:
    task: str
    metric: str
    mean_a: float
    mean_b: float
    diff: PairedDifference


@dataclass(frozen=True)
class Comparison:
    rows: list[ComparisonRow]
    sentences: list[str]


def compare_entries(a: Entry, b: Entry, suite: Suite, alpha: float = 0.05) -> Comparison:
    """Compare ``a`` and ``b`` on every task and metric both have, over their shared seeds."""
    rows = []
    for task in suite.tasks:
        runs_a = {r.seed: r for r in a.runs if r.task == task.name and r.status == "ok"}
        runs_b = {r.seed: r for r in b.runs if r.task == task.name and r.status == "ok"}
        seeds = sorted(set(runs_a) & set(runs_b))
        if not seeds:
            continue
        metrics = [m for m in runs_a[seeds[0]].metrics if m in runs_b[seeds[0]].metrics]
        for metric in metrics:
            values_a = [runs_a[s].metrics[metric] for s in seeds]
            values_b = [runs_b[s].metrics[metric] for s in seeds]
            rows.append(ComparisonRow(task.name, metric, sum(values_a) / len(seeds), sum(values_b) / len(seeds),
                                      paired_difference(values_a, values_b)))
    return Comparison(rows=rows, sentences=_sentences(a.method.name, b.method.name, rows, alpha))


def _sentences(name_a: str, name_b: str, rows: list[ComparisonRow], alpha: float) -> list[str]:
    """Who is significantly higher where; gains of a method that lost clean accuracy there are not wins."""
    if not rows:
        return [f"{name_a} and {name_b} share no task and seed: nothing to compare."]
    accuracy = {row.task: (row.mean_a, row.mean_b) for row in rows if row.metric == "acc"}
    ranked = [r for r in rows if not r.metric.startswith(DESCRIPTIVE_PREFIXES)]
    higher_a = [r for r in ranked if r.diff.p_value < alpha and r.diff.mean > 0]
    higher_b = [r for r in ranked if r.diff.p_value < alpha and r.diff.mean < 0]
    sentences = []
    for side, (winner, loser, higher) in enumerate(((name_a, name_b, higher_a), (name_b, name_a, higher_b))):
        def guarded(row: ComparisonRow, side: int = side) -> bool:
            own, other = accuracy.get(row.task, (1.0, 1.0))[side], accuracy.get(row.task, (1.0, 1.0))[1 - side]
            return own < other - ACCURACY_GUARD

        wins = [r for r in higher if not guarded(r)]
        if wins:
            sentences.append(f"{winner} beats {loser} (higher, p < {alpha}) on: {_where(wins)}.")
        for task in dict.fromkeys(r.task for r in higher if guarded(r)):
            own, other = accuracy[task][side], accuracy[task][1 - side]
            lost = [r for r in higher if r.task == task]
            sentences.append(f"{winner} is higher on {_where(lost)}, but its clean accuracy on {task} is {own:.3f} "
                             f"against {other:.3f} for {loser} (more than {ACCURACY_GUARD} lower): not counted as "
                             "wins.")
    ties = len(ranked) - len(higher_a) - len(higher_b)
    sentences.append(f"No significant difference on the other {ties} of {len(ranked)} task-metric pairs "
                     f"(n = {rows[0].diff.n} paired seeds).")
    return sentences


def _where(rows: list[ComparisonRow]) -> str:
    return "; ".join(f"{r.task} {r.metric} (by {abs(r.diff.mean):.3f}, p={r.diff.p_value:.2g})" for r in rows)
