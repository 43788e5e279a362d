"""Commands that browse results: the leaderboard table and paired comparisons."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sbbench.cli.common import (
    LEADERBOARD_ROOT,
    UserError,
    app,
    console,
    hub_snapshot_root,
    leaderboard_app,
    load_named_entry,
    print_frame,
    suite_named,
)
from sbbench.leaderboard.compare import compare_entries
from sbbench.leaderboard.render import leaderboard_frame
from sbbench.leaderboard.report import baseline_report
from sbbench.leaderboard.store import EntryError, load_entries


@leaderboard_app.callback(invoke_without_command=True)
def leaderboard_command(
    ctx: typer.Context,
    suite: Annotated[str, typer.Option(help="suite name")] = "synthetic",
    track: Annotated[str | None, typer.Option(help="only this track (T0, T1, T2, oracle)")] = None,
    sort: Annotated[str | None, typer.Option(help="sort by this column instead of the score")] = None,
    format: Annotated[str, typer.Option(help="table, md, csv or json")] = "table",
    root: Annotated[Path, typer.Option(help="leaderboard folder")] = LEADERBOARD_ROOT,
    from_hub: Annotated[str | None, typer.Option(help="browse Hub repository OWNER/NAME from the local Hub cache "
                                                      "(see `leaderboard pull`) instead of --root")] = None,
) -> None:
    """Show the leaderboard of a suite."""
    if ctx.invoked_subcommand is not None:
        return
    if format not in ("table", "md", "csv", "json"):
        raise UserError(f"--format must be table, md, csv or json, got {format!r}")
    if from_hub is not None:
        root = hub_snapshot_root(from_hub)
    suite_spec = suite_named(suite)
    try:
        frame = leaderboard_frame(load_entries(root, suite_spec), suite_spec, track=track, sort=sort)
    except (EntryError, KeyError) as error:
        raise UserError(str(error.args[0])) from None
    if format == "csv":
        console.file.write(frame.to_csv(index=False))
    elif format == "json":
        console.file.write(frame.to_json(orient="records", indent=1) + "\n")
    elif format == "md":
        from sbbench.leaderboard.render import to_markdown
        console.file.write(to_markdown(frame, suite_spec))
    else:
        print_frame(frame, f"sbbench leaderboard: {suite_spec.label}")


@app.command("compare")
def compare_command(
    a: Annotated[str, typer.Argument(help="first method (entry name)")],
    b: Annotated[str, typer.Argument(help="second method (entry name)")],
    suite: Annotated[str, typer.Option(help="suite name")] = "synthetic",
    root: Annotated[Path, typer.Option(help="leaderboard folder")] = LEADERBOARD_ROOT,
) -> None:
    """Paired-seed comparison of two entries: per task and metric, A - B with 95% CI and p-value."""
    suite_spec = suite_named(suite)
    entries = [load_named_entry(root, suite_spec, name) for name in (a, b)]
    comparison = compare_entries(*entries, suite_spec)
    table = Table(title=f"{a} - {b} on {suite_spec.label} (paired over shared seeds)")
    for column in ("task", "metric", a, b, "A - B", "95% CI", "p", "n"):
        table.add_column(column, justify="right" if column not in ("task", "metric") else "left")
    for row in comparison.rows:
        table.add_row(row.task, row.metric, f"{row.mean_a:.4f}", f"{row.mean_b:.4f}", f"{row.diff.mean:+.4f}",
                      f"[{row.diff.ci_low:+.4f}, {row.diff.ci_high:+.4f}]", f"{row.diff.p_value:.3g}",
                      str(row.diff.n))
    console.print(table)
    for sentence in comparison.sentences:
        console.print(sentence, markup=False)




@leaderboard_app.command("report")
def report_command(
    suite: Annotated[str, typer.Option(help="suite name")] = "synthetic",
    baseline: Annotated[str, typer.Option(help="the entry every other entry is compared with")] = "erm",
    metrics: Annotated[str | None, typer.Option(help="comma-separated metrics (default: the primary metric, "
                                                     "then acc)")] = None,
    alpha: Annotated[float, typer.Option(help="significance level of the paired t-test")] = 0.05,
    root: Annotated[Path, typer.Option(help="leaderboard folder")] = LEADERBOARD_ROOT,
) -> None:
    """Markdown report: each entry against a baseline, per task, paired over seeds."""
    if not 0.0 < alpha < 1.0:
        raise UserError(f"--alpha must lie strictly between 0 and 1, got {alpha}")
    suite_spec = suite_named(suite)
    chosen = metrics.split(",") if metrics else [suite_spec.primary_metric, "acc"]
    base = load_named_entry(root, suite_spec, baseline)
    try:
        entries = [loaded.entry for loaded in load_entries(root, suite_spec) if not loaded.stale]
    except EntryError as error:
        raise UserError(str(error.args[0])) from None
    console.file.write(baseline_report(entries, base, suite_spec, chosen, alpha) + "\n")
