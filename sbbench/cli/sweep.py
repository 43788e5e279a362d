"""``sbbench sweep``: random hyperparameter search, then a normal score of the chosen setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sbbench.cache import ResultCache, default_cache_dir
from sbbench.cli.common import (
    CacheDir,
    FitMemoryGB,
    FitSeconds,
    SchedulerAddress,
    UserError,
    app,
    console,
    errors,
    exit_if_failed,
    job_log,
    limits_for,
    method_named,
    progress_bar,
    publish_entry,
    report_result,
    results_root,
    suite_named,
)
from sbbench.cli.score import check_executor, print_guard, refuse_owner_conflict
from sbbench.executors import ClusterError
from sbbench.headline import score_meaning
from sbbench.leaderboard.store import build_entry
from sbbench.methods.describe import DescribeError
from sbbench.runner import default_device
from sbbench.scoring import score
from sbbench.selection import selection_name
from sbbench.sweep import DEFAULT_TRIALS, Trial, run_sweep, search_space
from sbbench.tuning import MIN_TUNED_TRIALS


@app.command("sweep")
def sweep_command(
    method: Annotated[str, typer.Argument(help="method name or submission folder")],
    trials: Annotated[int, typer.Option(help=f"number of trials K; trial 0 is the defaults. The protocol's K is "
                                             f"{DEFAULT_TRIALS}; with fewer the entry is marked exploratory, "
                                             "not tuned")] = DEFAULT_TRIALS,
    suite: Annotated[str, typer.Option(help="suite name (see `sbbench suites`)")] = "synthetic",
    seed: Annotated[int, typer.Option(help="sweep seed: the draws and the trials' training seed derive from it")]
    = 0,
    holdout: Annotated[float, typer.Option(help="share of the training split held out for selection (T0/T1; "
                                                "T2 and oracle select on the validation set)")]
    = 0.2,
    workers: Annotated[int, typer.Option(help="parallel worker processes (trials and the final score)")] = 1,
    root: Annotated[Path | None, typer.Option(help="leaderboard folder to write the entry into (default "
                                                   "$SBBENCH_RESULTS or ./sbbench-results)")] = None,
    cache_dir: CacheDir = None,
    executor: Annotated[str, typer.Option(help="where trials and scored jobs run: isolated (fit in child "
                                               "processes under the suite's limits), inline (one process, for "
                                               "debugging), dask (needs --scheduler) or dask-local (a local Dask "
                                               "cluster of --workers single-core processes)")]
    = "isolated",
    scheduler: SchedulerAddress = None,
    fit_seconds: FitSeconds = None,
    fit_memory_gb: FitMemoryGB = None,
) -> None:
    """Random-search a method's declared hyperparameter ranges, score the chosen setting, write its entry.

    Selection never reads a test set: T0/T1 trials are scored by accuracy on a held-out share of
    the training split, T2 and oracle trials by worst-group accuracy (S from training examples) on the
    decorrelated validation set. Every trial runs like a scored job: on the executor, with fit
    isolated under the suite's limits, cached. The entry records every trial; it is tuned when
    K >= 8, exploratory below (see docs/sweep.md).
    """
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    if not 0 < holdout < 1:
        raise UserError(f"--holdout must lie strictly between 0 and 1, got {holdout}")
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    check_executor(executor, scheduler)
    suite_spec = suite_named(suite)
    info = method_named(method)
    root = root or results_root()
    refuse_owner_conflict(root, suite_spec, info)
    if not search_space(info):
        errors.print(f"{info.name} declares no search ranges: every trial uses the defaults", markup=False)
    if trials < MIN_TUNED_TRIALS:
        errors.print(f"{trials} trials: fewer than the protocol's K = {MIN_TUNED_TRIALS}, so the entry will be marked "
                     f"exploratory (K={trials}), not tuned", markup=False, soft_wrap=True)
    cache = ResultCache(cache_dir or default_cache_dir())
    limits = limits_for(suite_spec, fit_seconds, fit_memory_gb)
    log_path = results_root() / "logs" / f"{info.name}_{suite_spec.label}.log"
    with progress_bar() as progress, job_log(log_path) as keep:
        bar = progress.add_task(f"sweeping {info.name} on {suite_spec.label}", total=trials)

        def on_trial(trial: Trial, reused: bool) -> None:
            failed = [r for r in trial.results if r.status != "ok"]
            scores = ", ".join(f"{r.task} {r.metrics[trial.metric]:.4f}" if r.status == "ok" else f"{r.task} failed"
                               for r in trial.results)
            progress.console.print(f"trial {trial.index} {json.dumps(trial.hparams)}: {scores}"
                                   + (" (cached)" if reused else ""), markup=False, soft_wrap=True)
            for result in failed:
                progress.console.print(f"trial {trial.index} {result.task} seed {result.seed}: failed ({result.error})",
                                       markup=False, soft_wrap=True)
            progress.advance(bar)

        def log(message: str) -> None:
            keep(message)
            progress.update(bar, description=f"sweeping {info.name} on {suite_spec.label}: {message}")

        try:
            outcome = run_sweep(info, suite_spec, trials, seed, cache=cache, holdout=holdout, executor=executor,
                                workers=workers, scheduler=scheduler, limits=limits, on_trial=on_trial, log=log)
        except (ValueError, DescribeError, ClusterError) as error:
            raise UserError(str(error)) from None
    failed = [trial for trial in outcome.trials if trial.failed]
    if outcome.best is None or outcome.tuning is None:
        errors.print(f"{len(failed)} of {trials} trials failed; the leaderboard was not changed. Finished trials "
                     f"are cached: fix the method and sweep again (training log: {log_path}).",
                     markup=False, soft_wrap=True)
        raise typer.Exit(1)
    if failed:
        errors.print(f"{len(failed)} of {trials} trials failed and cannot be chosen (training log: {log_path}).",
                     markup=False, soft_wrap=True)
    console.print(f"chosen: trial {outcome.best.index} {json.dumps(outcome.best.hparams)} "
                  f"({selection_name(info.track)} {outcome.best.score:.4f}); {outcome.reused} of {outcome.jobs} "
                  "trial jobs reused from the cache", markup=False, soft_wrap=True)
    jobs = len(suite_spec.tasks) * len(suite_spec.seeds)
    with progress_bar() as progress, job_log(log_path) as keep:
        bar = progress.add_task(f"scoring {info.name} on {suite_spec.label}", total=jobs)

        def score_log(message: str) -> None:
            keep(message)
            progress.update(bar, description=f"scoring {info.name} on {suite_spec.label}: {message}")

        try:
            scored = score(info, outcome.best.hparams, suite_spec, cache=cache, workers=workers, executor=executor,
                           scheduler=scheduler, limits=limits, on_result=report_result(progress, bar), log=score_log)
        except ClusterError as error:
            raise UserError(str(error)) from None
    exit_if_failed(scored.results, log_path, "sweep")
    entry = build_entry(info, outcome.best.hparams, outcome.source, suite_spec, scored.results,
                        str(default_device()), tuning=outcome.tuning)
    path = publish_entry(root, suite_spec, entry)
    console.print(f"{info.name} ({entry.tuning.label}): score {entry.primary_score:.4f} ({score_meaning(suite_spec)}); "
                  f"{scored.reused} of {jobs} jobs reused from the cache; entry written to {path}",
                  markup=False, soft_wrap=True)
    print_guard(suite_spec, entry)
