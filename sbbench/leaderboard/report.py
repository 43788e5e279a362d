"""A results report: every entry of a suite against one baseline, paired over seeds.

For each task, each method and each chosen metric the report gives the method's seed mean and
the paired difference ``method - baseline`` over the seeds both were scored on, with its
Student-t 95% CI and p-value (:func:`~sbbench.leaderboard.compare.compare_entries`). A cell is
called *higher* or *lower* when ``p < alpha``, otherwise *n.s.*; every metric in the report is
one where higher is better. No correction for multiple comparisons is applied: with many
cells, expect about ``alpha`` of the null differences to be called significant. Each row names
the entry's status (verified, rejected, unverified), from the verdict store.
"""

from __future__ import annotations

from sbbench.leaderboard.compare import ComparisonRow, compare_entries
from sbbench.leaderboard.entry import LoadedEntry
from sbbench.leaderboard.render import status_of
from sbbench.suite import Suite


def verdict(row: ComparisonRow, alpha: float) -> str:
    """``higher``, ``lower`` or ``n.s.`` for ``method - baseline`` at level ``alpha``."""
    if row.diff.p_value >= alpha or row.diff.mean == 0.0:
        return "n.s."
    return "higher" if row.diff.mean > 0 else "lower"


def baseline_report(entries: list[LoadedEntry], baseline: LoadedEntry, suite: Suite, metrics: list[str],
                    alpha: float = 0.05) -> str:
    """Markdown: one table per task, one row per entry, one cell per metric against ``baseline``."""
    base = baseline.entry
    others = [item for item in entries if item.entry.method.name != base.method.name]
    rows = {item.entry.method.name: {(r.task, r.metric): r for r in compare_entries(item.entry, base, suite).rows}
            for item in others}
    lines = [f"Baseline: **{base.method.name}**. Cell: seed mean; paired difference to the baseline "
             f"with 95% CI; `higher` / `lower` when the paired t-test gives p < {alpha}, else `n.s.`. "
             "Status: verified or rejected by a maintainer's re-run (`sbbench verify`), else unverified.", ""]
    for task in suite.tasks:
        lines += [f"### {task.name}", "", "| method | track | status | " + " | ".join(metrics) + " |",
                  "|---|---|---|" + "---|" * len(metrics)]
        base_runs = [r for r in base.runs if r.task == task.name and r.status == "ok"]
        base_cells = [_mean_cell([r.metrics.get(m) for r in base_runs]) for m in metrics]
        lines.append(f"| {base.method.name} (baseline) | {base.method.track} | {status_of(baseline)} | "
                     + " | ".join(base_cells) + " |")
        for item in others:
            name = item.entry.method.name
            cells = [_difference_cell(rows[name].get((task.name, m)), alpha) for m in metrics]
            lines.append(f"| {name} | {item.entry.method.track} | {status_of(item)} | " + " | ".join(cells) + " |")
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
