"""``sbbench verify``: re-train an entry's method and record whether its claimed numbers hold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from sbbench.cli.common import LEADERBOARD_ROOT, UserError, app, console, errors, suite_named
from sbbench.cli.score import check_executor
from sbbench.executors import ClusterError
from sbbench.leaderboard.store import EntryError, entry_path, read_entry
from sbbench.results import RunResult
from sbbench.suite import SUITE_LABELS, Suite
from sbbench.verify import (
    DEFAULT_FRESH_SEEDS,
    MIN_FRESH_SEEDS,
    VerifyError,
    plan_verification,
    record_verdict,
    verify_entry,
)


@app.command("verify")
def verify_command(
    entry: Annotated[str, typer.Argument(help="entry name (a method name) under --root, or the path of an entry file "
                                              "inside a leaderboard folder")],
    suite: Annotated[str | None, typer.Option(help="suite name (default: synthetic, or the suite of an entry file)")]
    = None,
    seeds: Annotated[int | None, typer.Option(help=f"with --fresh-seeds: how many (default {DEFAULT_FRESH_SEEDS}, "
                                                   f"at least {MIN_FRESH_SEEDS})")] = None,
    fresh_seeds: Annotated[bool, typer.Option("--fresh-seeds", help="re-train on new secret data seeds and test every "
                                                                      "metric statistically, instead of reproducing "
                                                                      "the suite's seeds bit for bit")] = False,
    root: Annotated[Path, typer.Option(help="leaderboard folder")] = LEADERBOARD_ROOT,
    executor: Annotated[str, typer.Option(help="isolated, dask or dask-local (never inline: it would run the "
                                               "method's code in the verifying process)")] = "isolated",
    workers: Annotated[int, typer.Option(help="parallel worker processes")] = 1,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address (with --executor dask)")] = None,
) -> None:
    """Re-train an entry's method with its recorded hyperparameters and accept or reject its numbers.

    On the suite's seeds with the entry's software every run must be reproduced bit for bit;
    with --fresh-seeds (or other software) every metric is tested on new secret seeds
    (docs/verification.md). The verdict goes to the suite's verdict store, keyed by the entry's
    content, and shows in `sbbench leaderboard`. Exit code 0: accepted, 1: rejected, 2: not verifiable.
    """
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    check_executor(executor, scheduler)
    path, root, suite_spec = _locate(entry, suite, root)
    try:
        claimed = read_entry(path)
    except EntryError as error:
        raise UserError(str(error)) from None
    if (claimed.suite.name, claimed.suite.version) != (suite_spec.name, suite_spec.version):
        raise UserError(f"{path} is an entry of {claimed.suite.name}-v{claimed.suite.version}, not {suite_spec.label}")
    try:
        plan = plan_verification(claimed, suite_spec, seeds, fresh_seeds)
        verdict = verify_entry(claimed, suite_spec, plan, executor=executor, workers=workers, scheduler=scheduler,
                               announce=lambda text: errors.print(text, markup=False, soft_wrap=True),
                               on_result=_progress(len(suite_spec.tasks) * plan.count))
        stored = record_verdict(root, suite_spec, path, verdict)
    except (VerifyError, ClusterError, EntryError) as error:
        raise UserError(str(error)) from None
    for line in [verdict.software, *verdict.details]:
        console.print(line, markup=False, soft_wrap=True)
    if verdict.mode == "fresh-seeds":
        console.print(f"fresh data seeds, secret until training ended: {verdict.seeds}", markup=False, soft_wrap=True)
    outcome = "ACCEPTED" if verdict.accepted else "REJECTED"
    console.print(f"{claimed.method.name} on {suite_spec.label}: {outcome} (rule {verdict.mode}); verdict by "
                  f"{verdict.by} recorded in {stored}", markup=False, soft_wrap=True)
    if not verdict.accepted:
        raise typer.Exit(1)


def _locate(entry: str, suite: str | None, root: Path) -> tuple[Path, Path, Suite]:
    """The entry file, its leaderboard root and its suite, from a name or a path."""
    candidate = Path(entry)
    if candidate.suffix == ".json" or candidate.is_file():
        if not candidate.is_file():
            raise UserError(f"no entry file {candidate}")
        if candidate.parent.name != "entries":
            raise UserError(f"{candidate} is not inside a leaderboard folder (<root>/<suite>-v<N>/entries/)")
        folder = candidate.parent.parent.name
        if suite is None:
            suite_spec = SUITE_LABELS.get(folder)
            if suite_spec is None:
                raise UserError(f"{candidate}: folder {folder!r} is not the folder of a known suite "
                                f"({', '.join(SUITE_LABELS)})")
        else:
            suite_spec = suite_named(suite)
        if folder != suite_spec.label:
            raise UserError(f"{candidate} is not in the {suite_spec.label} folder of a leaderboard")
        return candidate, candidate.parent.parent.parent, suite_spec
    suite_spec = suite_named(suite or "synthetic")
    path = entry_path(root, suite_spec, entry)
    if not path.is_file():
        raise UserError(f"no entry {entry!r} for {suite_spec.label} under {root} (expected {path})")
    return path, root, suite_spec


def _progress(total: int) -> Callable[[RunResult, bool], None]:
    """A callback printing one line per finished re-run job: its task and count, never its (maybe secret) seed."""
    done = 0

    def report(result: RunResult, reused: bool) -> None:
        nonlocal done
        done += 1
        errors.print(f"{result.task}: job {done} of {total} {result.status}", markup=False)

    return report
