"""Leaderboard tables rendered from entries: a pandas frame, then Markdown, CSV or JSON.

Rows are grouped by track (T0, T1, T2, oracle), so methods that see more side information
never outrank those that see less, and sorted by the primary score within a track. Entries
scored on an older suite hash are marked ``stale`` and listed after the current ones. The
status column comes from the verdict store (:attr:`~sbbench.leaderboard.entry.LoadedEntry.verdict`),
never from the entry file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from sbbench.leaderboard.entry import LoadedEntry
    from sbbench.suite import Suite

TRACK_ORDER = ("T0", "T1", "T2", "oracle")


def status_of(loaded: LoadedEntry) -> str:
    """``stale``, ``verified``, ``rejected`` or ``unverified``: the verdict store's word on the entry as it is."""
    if loaded.stale:
        return "stale"
    if loaded.verdict is None:
        return "unverified"
    return "verified" if loaded.verdict.accepted else "rejected"


def leaderboard_frame(entries: Sequence[LoadedEntry], suite: Suite, *, track: str | None = None,
                      sort: str | None = None) -> pd.DataFrame:
    """One row per entry: identity, status, primary score and ``<task>/<metric>`` seed means.

    ``sort`` names a column to sort by (descending) instead of the primary score.
    """
    rows = []
    for loaded in entries:
        entry = loaded.entry
        if track is not None and entry.method.track != track:
            continue
        row = {"method": entry.method.name, "track": entry.method.track, "status": status_of(loaded),
               "score": entry.primary_score}
        for task in suite.tasks:
            metrics = entry.aggregates.get(task.name, {})
            for metric in suite.table_metrics:
                row[f"{task.name}/{metric}"] = metrics[metric].mean if metric in metrics else float("nan")
        row["seeds"] = min((s.n for task in entry.aggregates.values() for s in task.values()), default=0)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=_columns(suite))
    if frame.empty:
        return frame
    key = sort or "score"
    if key not in frame.columns:
        raise KeyError(f"cannot sort by {key!r}; columns: {', '.join(frame.columns)}")
    frame["_stale"] = frame["status"] == "stale"
    frame["_track"] = frame["track"].map({t: i for i, t in enumerate(TRACK_ORDER)}).fillna(len(TRACK_ORDER))
    frame = frame.sort_values(["_stale", "_track", key, "method"], ascending=[True, True, False, True])
    return frame.drop(columns=["_stale", "_track"]).reset_index(drop=True)


IDENTITY_COLUMNS = ("method", "track", "status", "score")
SUMMARY_METRICS = ("acc", "s_swap_acc")
"""Metrics whose mean over tasks the terminal table shows by default, with the suite's first adversarial one."""


def summary_metrics(suite: Suite) -> list[str]:
    """The default terminal columns' metrics: :data:`SUMMARY_METRICS` and the first ``adv_acc_*`` of the table."""
    adversarial = [m for m in suite.table_metrics if m.startswith("adv_acc_")][:1]
    return [m for m in (*SUMMARY_METRICS, *adversarial) if m in suite.table_metrics]


def summary_frame(frame: pd.DataFrame, suite: Suite) -> pd.DataFrame:
    """A narrow view of a :func:`leaderboard_frame`: identity, score, each summary metric's mean over tasks, seeds.

    Column ``mean <metric>`` is the unweighted mean over the suite's tasks of the per-task seed means.
    """
    narrow = frame[list(IDENTITY_COLUMNS)].copy()
    for metric in summary_metrics(suite):
        narrow[f"mean {metric}"] = frame[[f"{task.name}/{metric}" for task in suite.tasks]].mean(axis=1)
    narrow["seeds"] = frame["seeds"]
    return narrow


def metric_columns(frame: pd.DataFrame, suite: Suite, metrics: Sequence[str]) -> pd.DataFrame:
    """Identity, score, the per-task columns of ``metrics`` (in the given order) and seeds.

    Raises ``KeyError`` naming the table's metrics when one of ``metrics`` is not among them.
    """
    unknown = [m for m in metrics if m not in suite.table_metrics]
    if unknown:
        raise KeyError(f"no column for {', '.join(unknown)}; the table's metrics are {', '.join(suite.table_metrics)}")
    per_task = [f"{task.name}/{metric}" for metric in metrics for task in suite.tasks]
    return frame[[*IDENTITY_COLUMNS, *per_task, "seeds"]]


def _columns(suite: Suite) -> list[str]:
    per_task = [f"{task.name}/{metric}" for task in suite.tasks for metric in suite.table_metrics]
    return [*IDENTITY_COLUMNS, *per_task, "seeds"]


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


def to_markdown(frame: pd.DataFrame, suite: Suite) -> str:
    """The ``LEADERBOARD.md`` text: a header, then one table per track."""
    lines = [f"# sbbench leaderboard: {suite.label}", "",
             f"Suite hash `{suite.content_hash()[:16]}`. Score = mean over tasks of `{suite.primary_metric}` "
             "(higher means less reliance on the simple feature S). Values are means over seeds. "
             "Generated by `sbbench`; do not edit by hand.", ""]
    if frame.empty:
        return "\n".join([*lines, "No entries yet.", ""])
    for track in [t for t in TRACK_ORDER if t in set(frame["track"])] + sorted(set(frame["track"]) - set(TRACK_ORDER)):
        part = frame[frame["track"] == track]
        lines += [f"## Track {track}", "", "| " + " | ".join(column_label(c) for c in part.columns) + " |",
                  "|" + "|".join("---" for _ in part.columns) + "|"]
        lines += ["| " + " | ".join(format_value(v) for v in row) + " |" for row in part.itertuples(index=False)]
        lines.append("")
    return "\n".join(lines)
