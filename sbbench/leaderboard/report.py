"""A results report: every entry of a suite against one baseline, paired over seeds; and the Pareto plot.

For each task, each method and each chosen metric the report gives the method's seed mean and
the paired difference ``method - baseline`` over the seeds both were scored on, with its
Student-t 95% CI and p-value (:func:`~sbbench.leaderboard.compare.compare_entries`). Every metric
in the report is one where higher is better. Each row names the entry's status (verified,
rejected, unverified), from the verdict store.

Multiple comparisons. The report runs one paired t-test per cell, ``m`` tests in all (every
method other than the baseline x task x metric that has a comparison). With ``correction="holm"``
(the default) the p-values are adjusted together by Holm's step-down procedure
(:func:`~sbbench.leaderboard.stats.holm`) and a cell is called *higher* or *lower* when its
adjusted p-value is below ``alpha``, otherwise *n.s.*: the chance of calling at least one null
difference significant is then at most ``alpha`` for the whole report. With ``correction="none"``
the raw p-values decide, and about ``alpha`` of the null differences are called significant. The
95% CIs are per cell either way (not simultaneous). The report's first lines name the correction
and ``m``.

The Pareto plot (worst-group suites, :func:`pareto_panels`, :func:`pareto_svg`): per task, each
entry at (its task score, its clean accuracy), the entries on the Pareto front
(:func:`pareto_front`) marked and joined, and the accuracy guard's line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sbbench.headline import ACCURACY_GUARD, CHANCE_ACCURACY, assess
from sbbench.leaderboard import svg
from sbbench.leaderboard.compare import ComparisonRow, compare_entries
from sbbench.leaderboard.entry import LoadedEntry
from sbbench.leaderboard.render import status_of
from sbbench.leaderboard.stats import holm
from sbbench.suite import Suite

Correction = Literal["holm", "none"]
CORRECTIONS: tuple[Correction, ...] = ("holm", "none")
"""The multiple-comparison corrections :func:`baseline_report` knows."""


def verdict(row: ComparisonRow, alpha: float, p_value: float | None = None) -> str:
    """``higher``, ``lower`` or ``n.s.`` for ``method - baseline`` at level ``alpha``.

    ``p_value`` is the p-value to judge by (an adjusted one); by default the row's own, unadjusted.
    """
    p = row.diff.p_value if p_value is None else p_value
    if p >= alpha or row.diff.mean == 0.0:
        return "n.s."
    return "higher" if row.diff.mean > 0 else "lower"


@dataclass(frozen=True)
class ReportCell:
    """One test of the report: ``method - baseline`` on one task and metric, with its p-value after correction."""

    method: str
    task: str
    metric: str
    row: ComparisonRow
    p_adjusted: float


def report_cells(entries: list[LoadedEntry], baseline: LoadedEntry, suite: Suite, metrics: list[str],
                 correction: Correction = "holm") -> list[ReportCell]:
    """Every (method, task, metric) test of the report, in report order, its p-value corrected over all of them.

    The family is every entry other than ``baseline`` x the suite's tasks x ``metrics`` for which
    the two entries share a seed and the metric; a cell without a comparison is no test. Under
    ``"none"`` the adjusted p-value is the raw one.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; known: {', '.join(CORRECTIONS)}")
    base = baseline.entry
    tests = []
    for item in entries:
        name = item.entry.method.name
        if name == base.method.name:
            continue
        rows = {(r.task, r.metric): r for r in compare_entries(item.entry, base, suite).rows}
        tests += [(name, task.name, metric, rows[(task.name, metric)])
                  for task in suite.tasks for metric in metrics if (task.name, metric) in rows]
    raw = [row.diff.p_value for *_, row in tests]
    adjusted = holm(raw) if correction == "holm" else raw
    return [ReportCell(name, task, metric, row, p)
            for (name, task, metric, row), p in zip(tests, adjusted, strict=True)]


def correction_note(correction: Correction, m: int, alpha: float) -> str:
    """The report's sentence on multiple comparisons: which correction, over how many tests."""
    if correction == "holm":
        return (f"Multiple comparisons: Holm–Bonferroni correction over m = {m} tests (every method x task x metric "
                f"cell below); `p_holm` is the adjusted p-value and decides the verdict, so the chance of any "
                f"`higher` / `lower` on a null difference is at most {alpha} for the whole report. The CIs are "
                "per cell, not adjusted.")
    return (f"Multiple comparisons: no correction over the m = {m} tests (every method x task x metric cell below): "
            f"expect about {alpha} of the null differences to be called `higher` / `lower`.")


def baseline_report(entries: list[LoadedEntry], baseline: LoadedEntry, suite: Suite, metrics: list[str],
                    alpha: float = 0.05, correction: Correction = "holm") -> str:
    """Markdown: one table per task, one row per entry, one cell per metric against ``baseline``.

    The verdicts follow the p-values after ``correction`` over every cell (:func:`report_cells`).
    """
    base = baseline.entry
    others = [item for item in entries if item.entry.method.name != base.method.name]
    cells = {(c.method, c.task, c.metric): c for c in report_cells(entries, baseline, suite, metrics, correction)}
    judged = "the Holm-adjusted p-value" if correction == "holm" else "the paired t-test's p-value"
    lines = [f"Baseline: **{base.method.name}**. Cell: seed mean; paired difference to the baseline "
             f"with 95% CI; `higher` / `lower` when {judged} is below {alpha}, else `n.s.`. "
             "Status: verified or rejected by a maintainer's re-run (`sbbench verify`), else unverified.", "",
             correction_note(correction, len(cells), alpha), ""]
    for task in suite.tasks:
        lines += [f"### {task.name}", "", "| method | track | status | " + " | ".join(metrics) + " |",
                  "|---|---|---|" + "---|" * len(metrics)]
        base_runs = [r for r in base.runs if r.task == task.name and r.status == "ok"]
        base_cells = [_mean_cell([r.metrics.get(m) for r in base_runs]) for m in metrics]
        lines.append(f"| {base.method.name} (baseline) | {base.method.track} | {status_of(baseline)} | "
                     + " | ".join(base_cells) + " |")
        for item in others:
            name = item.entry.method.name
            shown = [_difference_cell(cells.get((name, task.name, m)), alpha, correction) for m in metrics]
            lines.append(f"| {name} | {item.entry.method.track} | {status_of(item)} | " + " | ".join(shown) + " |")
        lines.append("")
    return "\n".join(lines)


def _mean_cell(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{sum(present) / len(present):.3f}" if present else "–"


def _difference_cell(cell: ReportCell | None, alpha: float, correction: Correction) -> str:
    if cell is None:
        return "–"
    row, diff = cell.row, cell.row.diff
    adjusted = f", p_holm={cell.p_adjusted:.2g}" if correction == "holm" else ""
    return (f"{row.mean_a:.3f} ({diff.mean:+.3f} [{diff.ci_low:+.3f}, {diff.ci_high:+.3f}], "
            f"p={diff.p_value:.2g}{adjusted}) {verdict(row, alpha, cell.p_adjusted)}")


# The Pareto plot of a worst-group suite: task score against clean accuracy.


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which of ``points`` (``(score, accuracy)``, higher better on both) lie on the Pareto front.

    Point ``p`` is *dominated* when another point ``q`` is at least as high on both axes and
    strictly higher on at least one; the front is every point that is not dominated. Ties,
    explicitly:

    * tied on one axis, lower on the other: dominated (``(0.5, 1.0)`` by ``(0.9, 1.0)``);
    * identical points: none dominates another, so all of them are on the front, or none is
      (when a third point dominates them);
    * so a point off the front always has some other point higher on one axis and no lower on
      the other, and every point with the highest score or the highest accuracy is on the front
      unless another point ties it on that axis and beats it on the other.

    Returns one flag per point, in the order given. Raises ``ValueError`` on NaN.
    """
    if any(value != value for point in points for value in point):
        raise ValueError("a point of the Pareto front is NaN")

    def dominates(q: tuple[float, float], p: tuple[float, float]) -> bool:
        return q[0] >= p[0] and q[1] >= p[1] and (q[0] > p[0] or q[1] > p[1])

    return [not any(dominates(q, p) for q in points) for p in points]


@dataclass(frozen=True)
class ParetoPanel:
    """One task of the Pareto plot: the entries' points, which lie on the front, and the guard's accuracy."""

    task: str
    methods: tuple[str, ...]
    tracks: tuple[str, ...]
    scores: tuple[float, ...]
    """:attr:`~sbbench.headline.TaskAssessment.score`: mean over seeds of s_rand_wga / the oracle's, failed runs 0."""
    accs: tuple[float, ...]
    """Seed mean of clean accuracy."""
    on_front: tuple[bool, ...]
    guard: float
    """ERM's clean accuracy on the task (the suite's reference) minus :data:`~sbbench.headline.ACCURACY_GUARD`."""


def pareto_panels(entries: Sequence[LoadedEntry], suite: Suite) -> list[ParetoPanel]:
    """Per task of a worst-group ``suite``, the current entries' (score, accuracy) points and their Pareto front.

    Stale entries, and entries the rule cannot assess (a task or a metric missing), are left out.
    Raises ``ValueError`` for a suite that is not scored by the worst-group rule.
    """
    if suite.score_rule != "worst-group":
        raise ValueError(f"{suite.label} is not a worst-group suite: its score has no per-task accuracy trade-off")
    assessed = []
    for item in entries:
        if item.stale:
            continue
        try:
            assessment = assess(suite, item.entry.runs)
        except (KeyError, ValueError):
            continue
        if assessment is not None:
            assessed.append((item.entry.method, {task.task: task for task in assessment.tasks}))
    panels = []
    for task in suite.tasks:
        points = [(method, by_task[task.name]) for method, by_task in assessed]
        scores = tuple(t.score for _, t in points)
        accs = tuple(t.acc for _, t in points)
        panels.append(ParetoPanel(task=task.name, methods=tuple(m.name for m, _ in points),
                                  tracks=tuple(m.track for m, _ in points), scores=scores, accs=accs,
                                  on_front=tuple(pareto_front(list(zip(scores, accs, strict=True)))),
                                  guard=suite.references[task.name].erm_acc - ACCURACY_GUARD))
    return panels


PARETO_CAPTION = ("Per task, each current entry at (task score: s_rand_wga over the oracle's, mean over seeds, a run "
                  f"below {CHANCE_ACCURACY} accuracy counting 0; clean accuracy, mean over seeds). Filled and "
                  "joined: the Pareto front, the entries no other entry matches on both axes while beating on one "
                  "(tied on one axis and lower on the other is dominated; identical points share the front). "
                  f"Dashed: the accuracy guard, ERM's clean accuracy on the task minus {ACCURACY_GUARD}; an entry "
                  "below it is flagged.")
"""What the Pareto plot shows, in words (the site's caption)."""


def pareto_svg(entries: Sequence[LoadedEntry], suite: Suite, columns: int = 3) -> str:
    """The Pareto plot of a worst-group suite as one SVG: a small panel per task (:func:`pareto_panels`)."""
    panels = [svg.ScatterPanel(
        title=panel.task,
        points=[svg.ScatterPoint(label=method, x=score, y=acc, highlight=front,
                                 detail=f"{method} ({track}) on {panel.task}: score {score:.3f}, accuracy {acc:.3f}"
                                        f"{', on the Pareto front' if front else ''}"
                                        f"{', below the guard' if acc < panel.guard else ''}")
                for method, track, score, acc, front in zip(panel.methods, panel.tracks, panel.scores, panel.accs,
                                                            panel.on_front, strict=True)],
        reference=(panel.guard, f"guard {panel.guard:.3f}"))
        for panel in pareto_panels(entries, suite)]
    return svg.pareto_chart(panels, title=f"{suite.label}: task score against clean accuracy",
                            x_label="task score", y_label="clean accuracy",
                            legend=("Pareto front", "dominated", f"guard: ERM accuracy − {ACCURACY_GUARD}"),
                            columns=columns)
