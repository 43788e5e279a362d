"""`sbbench compare`: paired-seed differences of two entries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sbbench.cli.common import (
    LEADERBOARD_ROOT,
    UserError,
    app,
    browse_roots,
    console,
    load_named_entry,
    suite_named,
    suites_with_entry,
)
from sbbench.leaderboard.compare import compare_entries
from sbbench.suite import SUITES, Suite


@app.command("compare")
def compare_command(
    a: Annotated[str, typer.Argument(help="first method (entry name)")],
    b: Annotated[str, typer.Argument(help="second method (entry name)")],
    suite: Annotated[str | None, typer.Option(help="suite name (default: the one suite both have entries for)")]
    = None,
    root: Annotated[Path, typer.Option(help="leaderboard folder, searched before your results folder")]
    = LEADERBOARD_ROOT,
) -> None:
    """Paired-seed comparison of two entries: per task and metric, A - B with 95% CI and p-value.

    Each entry is looked up in --root, then in your results folder (./sbbench-results).
    """
    suite_spec = suite_named(suite) if suite is not None else _shared_suite(root, a, b)
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


def _shared_suite(root: Path, a: str, b: str) -> Suite:
    """The suite both entries exist for; with several, ``synthetic`` when shared, else a clear error."""
    roots = browse_roots(root)
    of_a, of_b = suites_with_entry(roots, a), suites_with_entry(roots, b)
    shared = [suite for suite in of_a if suite in of_b]
    if len(shared) == 1 or (shared and SUITES["synthetic"] in shared):
        return shared[0] if len(shared) == 1 else SUITES["synthetic"]

    def listing(suites: list[Suite]) -> str:
        return ", ".join(suite.label for suite in suites) or "none"

    if shared:
        raise UserError(f"{a} and {b} both have entries for {listing(shared)}: choose one with --suite")
    missing, present = (a, of_b) if not of_a else (b, of_a)
    raise UserError(f"{a} and {b} have no suite in common under {' or '.join(map(str, roots))} ({a}: {listing(of_a)}; "
                    f"{b}: {listing(of_b)}): score the missing one, e.g. sbbench score {missing} --suite "
                    f"{(present or [SUITES['smoke']])[0].name}")
