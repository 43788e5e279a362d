"""``sbbench suite audit``: is every task of a suite admitted by the admission rule?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from sbbench.cli.common import LEADERBOARD_ROOT, UserError, app, console, print_frame, suite_named
from sbbench.leaderboard.admission import admission_rows, audit, rule

suite_app = typer.Typer(help="Check a suite's tasks (admission rule).")
app.add_typer(suite_app, name="suite")

@suite_app.command("audit")
def audit_command(
    suite: Annotated[str, typer.Argument(help="suite name or label (see `sbbench suites`)")],
    root: Annotated[Path, typer.Option(help="leaderboard folder holding the suite's erm and oracle entries")]
    = LEADERBOARD_ROOT,
    format: Annotated[str, typer.Option(help="table or markdown")] = "table",
) -> None:
    """Check every task of a suite against the admission rule, from its committed ERM and oracle entries.

    Exit code 0 when every task is admitted, 1 otherwise (docs/suites/).
    """
    if format not in ("table", "markdown"):
        raise UserError(f"--format must be table or markdown, got {format!r}")
    suite_spec = suite_named(suite)
    admissions = audit(root, suite_spec)
    frame = pd.DataFrame(admission_rows(admissions))
    if format == "markdown":
        lines = ["| " + " | ".join(frame.columns) + " |", "|" + "|".join("---" for _ in frame.columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in frame.itertuples(index=False)]
        console.print("\n".join(lines), markup=False, soft_wrap=True)
    else:
        print_frame(frame, f"admission of {suite_spec.label} ({root})", compact=True,
                    header=lambda column: column.replace(" (", "\n(", 1))
        console.print(rule(suite_spec), markup=False)
    for reason in dict.fromkeys(a.missing for a in admissions if a.missing):
        console.print(f"cannot check: {reason}", markup=False, soft_wrap=True)
    rejected = [a.task for a in admissions if not a.admitted]
    if rejected:
        console.print(f"not admitted: {', '.join(rejected)}", markup=False)
        for task in rejected:
            if task in suite_spec.unadmitted:
                console.print(f"{task} (known, {suite_spec.label}'s card): {suite_spec.unadmitted[task]}", markup=False,
                              soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"every task of {suite_spec.label} is admitted", markup=False)
