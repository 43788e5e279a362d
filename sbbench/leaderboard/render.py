"""Leaderboard tables rendered from entries: a pandas frame, then Markdown, CSV or JSON.

Rows are grouped by track (T0, T1, T2, oracle), so methods that see more side information
never outrank those that see less, and sorted by the primary score within a track. Under a
``worst-group`` suite (:mod:`sbbench.headline`) the frame also carries the accuracy guard's
remarks (column ``guard``) and the summary columns (means over tasks), and within a track every
entry the guard caught ranks after every entry it did not. Entries scored on an older suite hash
are marked ``stale`` and listed after the current ones. The status column comes from the verdict
store (:attr:`~sbbench.leaderboard.entry.LoadedEntry.verdict`), never from the entry file. The
last column, ``hparams``, says how the hyperparameters were chosen (the entry's
:class:`~sbbench.tuning.Tuning` record): ``default``, ``given``, ``tuned (K=8)`` or
``exploratory (K=4)``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from sbbench.headline import ACCURACY_GUARD, CHANCE_ACCURACY, WORST_GROUP_SCORE, assess
from sbbench.leaderboard.glossary import column_description, metric_description

if TYPE_CHECKING:
    from sbbench.leaderboard.entry import Entry, LoadedEntry
    from sbbench.suite import Suite
    from sbbench.tasks import Task

TRACK_ORDER = ("T0", "T1", "T2", "oracle")

IDENTITY_COLUMNS = ("method", "track", "status", "score")
GUARD = "guard"
"""The worst-group suites' column naming the tasks the accuracy guard caught (empty: none)."""
HPARAMS = "hparams"
"""The column saying how the entry's hyperparameters were chosen (:attr:`~sbbench.tuning.Tuning.label`)."""
HPARAMS_MEANING = ("how the hyperparameters were chosen: default (the method's defaults, `sbbench score`), given "
                   "(set by hand, `sbbench score --hp`), tuned (K=n) (a random search of n >= 8 trials, "
                   "`sbbench sweep`, selected without test data: docs/sweep.md) or exploratory (K=n) (a search of "
                   "fewer than 8 trials); the entry's `tuning` record lists every trial")
"""One sentence on :data:`HPARAMS`, for legends and the Hub card."""
TEXT_COLUMNS = ("method", "track", "status", GUARD, HPARAMS)
"""The columns that hold text; every other column holds numbers."""

SUMMARY_METRICS = ("acc", "s_swap_acc")
"""Metrics whose mean over tasks the terminal table of a ``mean`` suite shows, with its first adversarial one."""
WORST_GROUP_SUMMARY = ("acc", "s_rand_wga", "s_rand_auc", "s_swap_acc")
"""Metrics whose mean over tasks every table of a ``worst-group`` suite shows, before :data:`STATED_ADVERSARIAL`."""
STATED_ADVERSARIAL = "mean adv acc (stated radius)"
"""Worst-group suites: the mean over tasks of ``adv_acc_<summary_attack>``, each task's stated attack."""


def status_of(loaded: LoadedEntry) -> str:
    """``stale``, ``verified``, ``rejected`` or ``unverified``: the verdict store's word on the entry as it is."""
    if loaded.stale:
        return "stale"
    if loaded.verdict is None:
        return "unverified"
    return "verified" if loaded.verdict.accepted else "rejected"


def guard_remarks(loaded: LoadedEntry, suite: Suite) -> str:
    """The guard's remarks on the entry (``failed: a; flagged: b``), empty when it caught nothing.

    Empty for a ``mean`` suite. An entry the rule cannot assess (a stale entry lacking a task or a
    metric) gets a remark saying why, so it is treated as guarded.
    """
    try:
        assessment = assess(suite, loaded.entry.runs)
    except KeyError as error:
        return f"not assessed: a run lacks {error.args[0]}"
    except ValueError as error:
        return f"not assessed: {error}"
    return "" if assessment is None else assessment.remarks


def is_worst_group(suite: Suite) -> bool:
    """Whether the suite is scored by the ``worst-group`` rule (guard and summary columns in every table)."""
    return suite.score_rule == "worst-group"


def identity_columns(suite: Suite) -> tuple[str, ...]:
    """method, track, status, score, and ``guard`` for a worst-group suite."""
    return (*IDENTITY_COLUMNS, GUARD) if is_worst_group(suite) else IDENTITY_COLUMNS


def summary_columns(suite: Suite) -> list[str]:
    """A worst-group suite's means over tasks, in table order; empty for a ``mean`` suite."""
    if not is_worst_group(suite):
        return []
    return [*(f"mean {metric}" for metric in WORST_GROUP_SUMMARY), STATED_ADVERSARIAL]


def stated_metric(task: Task) -> str | None:
    """``adv_acc_<tag>`` of the task's stated adversarial summary attack, or ``None`` when it states none."""
    tag = task.metrics.summary_attack
    return None if tag is None else f"adv_acc_{tag}"


def stated_radii(suite: Suite) -> str:
    """The attack behind :data:`STATED_ADVERSARIAL`, in words.

    ``l2 radius 1.0 on every task`` when the tasks agree, else the most common one and the
    exceptions: ``l2 radius 0.25 on every task except adv-ms57 (l2 radius 0.1)``.
    """
    texts = {task.name: _attack_words(task.metrics.summary_attack) for task in suite.tasks}
    counts = Counter(texts.values())
    common = max(counts, key=lambda text: (counts[text], -list(texts.values()).index(text)))
    others = [f"{name} ({text})" for name, text in texts.items() if text != common]
    return f"{common} on every task" + (f" except {', '.join(others)}" if others else "")


def _attack_words(tag: str | None) -> str:
    """``l2_1.0`` as ``l2 radius 1.0``; a pixel-scale radius as a fraction of 255 (``linf radius 2/255``)."""
    if tag is None:
        return "no stated attack"
    norm, _, eps = tag.partition("_")
    levels = float(eps) * 255
    if float(eps) < 1 and abs(levels - round(levels)) < 1e-9 and round(levels) >= 1:
        return f"{norm} radius {round(levels)}/255"
    return f"{norm} radius {eps}"


def _mean_over_tasks(entry: Entry, suite: Suite, metrics: Sequence[str | None]) -> float:
    """Mean over the suite's tasks of ``metrics[i]``'s seed mean on task ``i``; NaN when one is missing."""
    values = []
    for task, metric in zip(suite.tasks, metrics, strict=True):
        summary = entry.aggregates.get(task.name, {}).get(metric) if metric else None
        if summary is None:
            return float("nan")
        values.append(summary.mean)
    return sum(values) / len(values)


def _summary_values(entry: Entry, suite: Suite) -> dict[str, float]:
    """The values of :func:`summary_columns` for one entry."""
    values = {f"mean {metric}": _mean_over_tasks(entry, suite, [metric] * len(suite.tasks))
              for metric in WORST_GROUP_SUMMARY}
    values[STATED_ADVERSARIAL] = _mean_over_tasks(entry, suite, [stated_metric(task) for task in suite.tasks])
    return values


def _row(loaded: LoadedEntry, suite: Suite) -> dict[str, object]:
    """One entry's row of :func:`leaderboard_frame`."""
    entry = loaded.entry
    row: dict[str, object] = {"method": entry.method.name, "track": entry.method.track,
                              "status": status_of(loaded), "score": entry.primary_score}
    if is_worst_group(suite):
        row[GUARD] = guard_remarks(loaded, suite)
        row |= _summary_values(entry, suite)
    for task in suite.tasks:
        metrics = entry.aggregates.get(task.name, {})
        for metric in suite.table_metrics:
            row[f"{task.name}/{metric}"] = metrics[metric].mean if metric in metrics else float("nan")
    row["seeds"] = min((s.n for task in entry.aggregates.values() for s in task.values()), default=0)
    row[HPARAMS] = entry.tuning.label
    return row


def leaderboard_frame(entries: Sequence[LoadedEntry], suite: Suite, *, track: str | None = None,
                      sort: str | None = None) -> pd.DataFrame:
    """One row per entry: identity, status, primary score, (worst-group) guard and summary, per-task seed means.

    Per-task columns are ``<task>/<metric>``; ``seeds`` and :data:`HPARAMS` come last. ``sort`` names a column to
    sort by (descending) within each track instead of the score; only the score's ranking puts
    the entries the guard caught after the others.
    """
    rows = [_row(loaded, suite) for loaded in entries if track is None or loaded.entry.method.track == track]
    frame = pd.DataFrame(rows, columns=_columns(suite))
    if frame.empty:
        return frame
    key = sort or "score"
    if key not in frame.columns:
        raise KeyError(f"cannot sort by {key!r}; columns: {', '.join(frame.columns)}")
    return _ranked(frame, key)


def _ranked(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Current before stale, then by track, then (score ranking only) unguarded before guarded, then ``key``."""
    guarded = (frame[GUARD] != "") if key == "score" and GUARD in frame.columns else False
    order = frame.assign(_stale=frame["status"] == "stale", _guarded=guarded,
                         _track=frame["track"].map({t: i for i, t in enumerate(TRACK_ORDER)}).fillna(len(TRACK_ORDER)))
    order = order.sort_values(["_stale", "_track", "_guarded", key, "method"],
                              ascending=[True, True, True, False, True])
    return order.drop(columns=["_stale", "_track", "_guarded"]).reset_index(drop=True)


def summary_metrics(suite: Suite) -> list[str]:
    """A ``mean`` suite's default terminal metrics: :data:`SUMMARY_METRICS` and the table's first ``adv_acc_*``."""
    adversarial = [m for m in suite.table_metrics if m.startswith("adv_acc_")][:1]
    return [m for m in (*SUMMARY_METRICS, *adversarial) if m in suite.table_metrics]


def summary_frame(frame: pd.DataFrame, suite: Suite) -> pd.DataFrame:
    """A narrow view of a :func:`leaderboard_frame`: identity, score, means over tasks, seeds, hparams.

    A worst-group suite's view is its frame's identity, ``guard`` and :func:`summary_columns`. A
    ``mean`` suite's column ``mean <metric>`` is the unweighted mean over the suite's tasks of the
    per-task seed means of each of :func:`summary_metrics`.
    """
    if is_worst_group(suite):
        return frame[[*identity_columns(suite), *summary_columns(suite), "seeds", HPARAMS]]
    narrow = frame[list(IDENTITY_COLUMNS)].copy()
    for metric in summary_metrics(suite):
        narrow[f"mean {metric}"] = frame[[f"{task.name}/{metric}" for task in suite.tasks]].mean(axis=1)
    narrow["seeds"] = frame["seeds"]
    narrow[HPARAMS] = frame[HPARAMS]
    return narrow


def metric_columns(frame: pd.DataFrame, suite: Suite, metrics: Sequence[str]) -> pd.DataFrame:
    """Identity (with ``guard`` for a worst-group suite), the per-task columns of ``metrics`` in order, seeds, hparams.

    Raises ``KeyError`` naming the table's metrics when one of ``metrics`` is not among them.
    """
    unknown = [m for m in metrics if m not in suite.table_metrics]
    if unknown:
        raise KeyError(f"no column for {', '.join(unknown)}; the table's metrics are {', '.join(suite.table_metrics)}")
    per_task = [f"{task.name}/{metric}" for metric in metrics for task in suite.tasks]
    return frame[[*identity_columns(suite), *per_task, "seeds", HPARAMS]]


def _columns(suite: Suite) -> list[str]:
    per_task = [f"{task.name}/{metric}" for task in suite.tasks for metric in suite.table_metrics]
    return [*identity_columns(suite), *summary_columns(suite), *per_task, "seeds", HPARAMS]


def column_label(column: str) -> str:
    """A column name for people: a long radius that is a whole number of 255ths is written ``k/255``.

    ``mnist-cifar/adv_acc_linf_0.03137254901960784`` becomes ``mnist-cifar/adv_acc_linf_8/255``;
    short decimals (``0.2``, ``0.3``) stay. CSV and JSON keep the exact metric keys.
    """
    head, _, last = column.rpartition("_")
    try:
        radius = float(last)
    except ValueError:
        return column
    steps = round(radius * 255)
    if len(last) <= 8 or abs(radius * 255 - steps) > 1e-9:
        return column
    return f"{head}_{steps}/255"


def format_value(value: object) -> str:
    """Numbers with 3 decimals, NaN as a dash, everything else as text."""
    if isinstance(value, float):
        return "–" if value != value else f"{value:.3f}"
    return str(value)


def superseded_note(suite: Suite) -> str:
    """``<label> is superseded by <label>`` and what that means, or the empty string for a current suite."""
    if suite.superseded_by is None:
        return ""
    return (f"{suite.label} is superseded by {suite.superseded_by}: its entries stay browsable and checkable, "
            f"and new entries belong on {suite.superseded_by}")


def score_explanation(suite: Suite) -> str:
    """What the score and (worst-group) the guard and the summary columns mean, in a few sentences."""
    if not is_worst_group(suite):
        return (f"Score = mean over tasks of `{suite.primary_metric}` "
                "(higher means less reliance on the simple feature S).")
    return (f"Score = {WORST_GROUP_SCORE}. Guard: an entry with a task whose clean "
            f"accuracy is more than {ACCURACY_GUARD} below ERM's (flagged) or with a run at chance (below "
            f"{CHANCE_ACCURACY} accuracy: failed) ranks after every unguarded entry of its track; column `guard` "
            "names those tasks. The `mean` columns are means over tasks; adversarial column "
            f"`{STATED_ADVERSARIAL}`: {stated_radii(suite)}.")


def column_meanings(suite: Suite) -> dict[str, str]:
    """A worst-group suite's own columns (score, guard, summary) -> one sentence each; empty for a ``mean`` suite.

    The other columns mean what :func:`~sbbench.leaderboard.glossary.column_description` says.
    """
    if not is_worst_group(suite):
        return {}
    meanings = {
        "score": WORST_GROUP_SCORE,
        GUARD: f"the tasks the accuracy guard caught: flagged = clean accuracy more than {ACCURACY_GUARD} below "
               f"ERM's, failed = a run at chance (below {CHANCE_ACCURACY} accuracy); an entry with any ranks after "
               "every entry of its track with none (empty: none)",
    }
    for metric in WORST_GROUP_SUMMARY:
        meanings[f"mean {metric}"] = f"{metric_description(metric)}; mean over tasks of the seed means"
    meanings[STATED_ADVERSARIAL] = (f"accuracy under each task's stated PGD attack ({stated_radii(suite)}); "
                                    "mean over tasks of the seed means")
    return meanings


def describe_column(column: str, suite: Suite) -> str:
    """One sentence on a column of the suite's table: its own meaning (:func:`column_meanings`), :data:`HPARAMS`'s,
    or the glossary's."""
    if column == HPARAMS:
        return HPARAMS_MEANING
    if column in column_meanings(suite):
        return column_meanings(suite)[column]
    return column_description(column)


def _markdown_header(suite: Suite) -> list[str]:
    """The lines above the tables: title, superseded mark, hash and what the numbers mean."""
    lines = [f"# sbbench leaderboard: {suite.label}", ""]
    if suite.superseded_by is not None:
        lines += [f"**Superseded:** {superseded_note(suite)}.", ""]
    per_task = (" Per-task columns: `leaderboard.csv`, or `sbbench leaderboard --suite "
                f"{suite.label} --wide`." if is_worst_group(suite) else "")
    return [*lines, f"Suite hash `{suite.content_hash()[:16]}`. {score_explanation(suite)} Values are means over "
            f"seeds.{per_task} Generated by `sbbench`; do not edit by hand.", ""]


def to_markdown(frame: pd.DataFrame, suite: Suite) -> str:
    """The ``LEADERBOARD.md`` text: a header, then one table per track (a worst-group suite: its summary view)."""
    lines = _markdown_header(suite)
    if frame.empty:
        return "\n".join([*lines, "No entries yet.", ""])
    if is_worst_group(suite):
        frame = summary_frame(frame, suite)
    for track in [t for t in TRACK_ORDER if t in set(frame["track"])] + sorted(set(frame["track"]) - set(TRACK_ORDER)):
        part = frame[frame["track"] == track]
        lines += [f"## Track {track}", "", "| " + " | ".join(column_label(c) for c in part.columns) + " |",
                  "|" + "|".join("---" for _ in part.columns) + "|"]
        lines += ["| " + " | ".join(format_value(v) for v in row) + " |" for row in part.itertuples(index=False)]
        lines.append("")
    return "\n".join(lines)
