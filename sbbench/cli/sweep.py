"""``sbbench sweep``: random hyperparameter search, then a normal score of the chosen setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sbbench.cache import ResultCache, default_cache_dir
from sbbench.cli.common import (
    UserError,
    app,
    console,
    errors,
    method_named,
    progress_bar,
    publish_entry,
    report_result,
    results_root,
    suite_named,
)
from sbbench.leaderboard.store import build_entry
from sbbench.runner import default_device
from sbbench.scoring import score
from sbbench.sweep import SELECTION_METRIC, Trial, run_sweep, search_space


@app.command("sweep")
def sweep_command(
    method: Annotated[str, typer.Argument(help="method name or submission folder")],
    trials: Annotated[int, typer.Option(help="number of trials; trial 0 is the defaults")] = 8,
    suite: Annotated[str, typer.Option(help="suite name (see `sbbench suites`)")] = "synthetic",
    seed: Annotated[int, typer.Option(help="sweep seed: the draws and the trials' training seed derive from it")]
    = 0,
    holdout: Annotated[float, typer.Option(help="share of the training split held out for selection (T0/T1)")]
    = 0.2,
    workers: Annotated[int, typer.Option(help="parallel worker processes for the final score")] = 1,
    root: Annotated[Path | None, typer.Option(help="leaderboard folder to write the entry into (default "
                                                   "$SBBENCH_RESULTS or ./sbbench-results)")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="result cache (default $SBBENCH_CACHE or .sbbench/cache)")]
    = None,
) -> None:
    """Random-search a method's declared hyperparameter ranges, score the chosen setting, write its entry.

    Selection never reads a test set: T0/T1 trials are scored on a held-out share of the
    training split, T2 trials on the decorrelated validation set (see docs/sweep.md).
    """
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    if not 0 < holdout < 1:
        raise UserError(f"--holdout must lie strictly between 0 and 1, got {holdout}")
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    suite_spec = suite_named(suite)
    info = method_named(method)
    if not search_space(info.cls):
        errors.print(f"{info.name} declares no search ranges: every trial uses the defaults", markup=False)
    cache = ResultCache(cache_dir or default_cache_dir())
    with progress_bar() as progress:
        bar = progress.add_task(f"sweeping {info.name} on {suite_spec.label}", total=trials)

        def on_trial(trial: Trial) -> None:
            failed = [f"{r.task}: {r.error}" for r in trial.results if r.status != "ok"]
            accs = ", ".join(f"{r.task} {r.metrics[SELECTION_METRIC]:.4f}" for r in trial.results if r.status == "ok")
            progress.console.print(f"trial {trial.index} {json.dumps(trial.hparams)}: {accs}"
                                   + (f" FAILED ({'; '.join(failed)})" if failed else ""), markup=False)
            progress.advance(bar)

        def log(message: str) -> None:
            progress.update(bar, description=f"sweeping {info.name}: {message}")

        try:
            outcome = run_sweep(info, suite_spec, trials, seed, cache=cache, holdout=holdout, on_trial=on_trial,
                                log=log)
        except ValueError as error:
            raise UserError(str(error)) from None
    console.print(f"chosen: trial {outcome.best.index} {json.dumps(outcome.best.hparams)} "
                  f"(selection accuracy {outcome.best.score:.4f})")
    jobs = len(suite_spec.tasks) * len(suite_spec.seeds)
    with progress_bar() as progress:
        bar = progress.add_task(f"scoring {info.name} on {suite_spec.label}", total=jobs)
        scored = score(info, outcome.best.hparams, suite_spec, cache=cache, workers=workers,
                       on_result=report_result(progress, bar))
    failed = [r for r in scored.results if r.status == "failed"]
    if failed:
        errors.print(f"{len(failed)} of {jobs} scoring jobs failed; the leaderboard was not changed.", markup=False)
        raise typer.Exit(1)
    entry = build_entry(info, outcome.best.hparams, outcome.source, suite_spec, scored.results,
                        str(default_device()))
    path = publish_entry(root or results_root(), suite_spec, entry)
    console.print(f"{info.name}: score {entry.primary_score:.4f} ({suite_spec.primary_metric}, mean over tasks); "
                  f"entry written to {path}")
