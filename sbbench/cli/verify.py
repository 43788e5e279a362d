"""``sbbench verify``: re-train an entry's method and record whether its claimed numbers hold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sbbench.cli.common import LEADERBOARD_ROOT, UserError, app, console, errors, suite_named
from sbbench.cli.score import check_executor
from sbbench.executors import ClusterError
from sbbench.leaderboard.store import EntryError, entry_path, read_entry
from sbbench.results import RunResult
from sbbench.suite import SUITES, Suite
from sbbench.verify import TOLERANCE, VerifyError, judge, record_verdict, retrain, retrainable, verification_seeds


@app.command("verify")
def verify_command(
    entry: Annotated[str, typer.Argument(help="entry name (a method name) under --root, or the path of an entry file "
                                              "inside a leaderboard folder")],
    suite: Annotated[str | None, typer.Option(help="suite name (default: synthetic, or the suite of an entry file)")]
    = None,
    seeds: Annotated[int | None, typer.Option(help="re-train on this many seeds (default: as many as the suite has)")]
    = None,
    fresh_seeds: Annotated[bool, typer.Option("--fresh-seeds", help="re-train on new random seeds (new rotations "
                                                                      "and data) instead of the suite's")] = False,
    root: Annotated[Path, typer.Option(help="leaderboard folder")] = LEADERBOARD_ROOT,
    executor: Annotated[str, typer.Option(help="isolated, inline, dask or dask-local (as for `sbbench score`)")]
    = "isolated",
    workers: Annotated[int, typer.Option(help="parallel worker processes")] = 1,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address (with --executor dask)")] = None,
) -> None:
    """Re-train an entry's method with its recorded hyperparameters and accept or reject its numbers.

    The claimed seed mean of every task and table metric must lie within the re-run's 95% CI
    widened by the tolerance (docs/verification.md); the verdict is stored in the entry and
    shown by `sbbench leaderboard`. Exit code 0: accepted, 1: rejected, 2: not verifiable.
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
        seed_list = verification_seeds(suite_spec, seeds, fresh_seeds)
        info, hparams = retrainable(claimed, suite_spec)
        errors.print(f"re-training {info.name} on {suite_spec.label}, seeds {seed_list}, in a fresh cache",
                     markup=False)
        rerun = retrain(info, hparams, suite_spec, seed_list, executor=executor, workers=workers,
                        scheduler=scheduler, on_result=_report)
        verdict = judge(claimed, suite_spec, rerun, seed_list)
        record_verdict(root, suite_spec, path, claimed, verdict)
    except (VerifyError, ClusterError, EntryError) as error:
        raise UserError(str(error)) from None
    for line in verdict.details:
        console.print(line, markup=False)
    outcome = "ACCEPTED" if verdict.accepted else "REJECTED"
    console.print(f"{claimed.method.name} on {suite_spec.label}: {outcome} (tolerance {TOLERANCE}); verdict by "
                  f"{verdict.by} recorded in {path}", markup=False)
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
            suite_spec = next((spec for spec in SUITES.values() if spec.label == folder), None)
            if suite_spec is None:
                raise UserError(f"{candidate}: folder {folder!r} is not the folder of a known suite "
                                f"({', '.join(spec.label for spec in SUITES.values())})")
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


def _report(result: RunResult, reused: bool) -> None:
    state = "cached" if reused else result.status
    errors.print(f"{result.task} seed {result.seed}: {state}" + (f" ({result.error})" if result.error else ""),
                 markup=False)
