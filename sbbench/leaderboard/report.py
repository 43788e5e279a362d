"""A results report: every entry of a suite against one baseline, paired over seeds.

For each task, each method and each chosen metric the report gives the method's seed mean and
the paired difference ``method - baseline`` over the seeds both were scored on, with its
Student-t 95% CI and p-value (:func:`~sbbench.leaderboard.compare.compare_entries`). A cell is
called *higher* or *lower* when ``p < alpha``, otherwise *n.s.*; every metric in the report is
one where higher is better. No correction for multiple comparisons is applied: with many
cells, expect about ``alpha`` of the null differences to be called significant.
"""

from __future__ import annotations

from sbbench.leaderboard.compare import ComparisonRow, compare_entries
from sbbench.leaderboard.entry import Entry
from sbbench.suite import Suite


def verdict(row: ComparisonRow, alpha: float) -> str:
    """``higher``, ``lower`` or ``n.s.`` for ``method - baseline`` at level ``alpha``."""
    if row.diff.p_value >= alpha or row.diff.mean == 0.0:
        return "n.s."
    return "higher" if row.diff.mean > 0 else "lower"


def baseline_report(entries: list[Entry], baseline: Entry, suite: Suite, metrics: list[str],
                    alpha: float = 0.05) -> str:
    """Markdown: one table per task, one row per entry, one cell per metric against ``baseline``."""
    others = [e for e in entries if e.method.name != baseline.method.name]
    rows = {e.method.name: {(r.task, r.metric): r for r in compare_entries(e, baseline, suite).rows}
            for e in others}
    lines = [f"Baseline: **{baseline.method.name}**. Cell: seed mean; paired difference to the baseline "
             f"with 95% CI; `higher` / `lower` when the paired t-test gives p < {alpha}, else `n.s.`.", ""]
    for task in suite.tasks:
        lines += [f"### {task.name}", "", "| method | track | " + " | ".join(metrics) + " |",
                  "|---|---|" + "---|" * len(metrics)]
        base_runs = [r for r in baseline.runs if r.task == task.name and r.status == "ok"]
        base_cells = [_mean_cell([r.metrics.get(m) for r in base_runs]) for m in metrics]
        lines.append(f"| {baseline.method.name} (baseline) | {baseline.method.track} | "
                     + " | ".join(base_cells) + " |")
        for entry in others:
            cells = [_difference_cell(rows[entry.method.name].get((task.name, m)), alpha) for m in metrics]
            lines.append(f"| {entry.method.name} | {entry.method.track} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _mean_cell(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{sum(present) / len(present):.3f}" if present else "–"


def _difference_cell(row: ComparisonRow | None, alpha: float) -> str:
    if row is None:
        return "–"
    diff = row.diff
    return (f"{row.mean_a:.3f} ({diff.mean:+.3f} [{diff.ci_low:+.3f}, {diff.ci_high:+.3f}], "
            f"p={diff.p_value:.2g}) {verdict(row, alpha)}")
