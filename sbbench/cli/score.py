"""Commands that train: `run` (one task, no leaderboard) and `score` (a suite, a leaderboard entry)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from sbbench.cache import ResultCache, default_cache_dir
from sbbench.cli.common import (
    CacheDir,
    FitMemoryGB,
    FitSeconds,
    SchedulerAddress,
    UserError,
    app,
    configure,
    console,
    errors,
    exit_if_failed,
    force_device,
    job_log,
    limits_for,
    method_named,
    parse_overrides,
    progress_bar,
    publish_entry,
    report_result,
    results_root,
    suite_named,
    task_named,
)
from sbbench.executors import EXECUTORS, ClusterError
from sbbench.headline import ACCURACY_GUARD, CHANCE_ACCURACY, assess, score_meaning
from sbbench.isolation import IsolatedFit
from sbbench.leaderboard.entry import Entry
from sbbench.leaderboard.store import build_entry, owner_conflict
from sbbench.methods.registry import MethodInfo
from sbbench.results import RunResult
from sbbench.runner import default_device, run_job
from sbbench.scoring import score
from sbbench.suite import Suite

SUMMARY_METRICS = ("acc", "auc", "s_rand_acc", "s_rand_auc", "sc_rand_acc", "sc_rand_auc", "s_swap_acc",
                   "sc_swap_acc")


@app.command("run")
def run_command(
    method: Annotated[str, typer.Argument(help="method name or submission folder")],
    task: Annotated[str, typer.Option(help="task name (see `sbbench tasks`)")] = "lms5",
    seeds: Annotated[int, typer.Option(help="number of seeds: 0 .. N-1")] = 1,
    hp: Annotated[list[str] | None, typer.Option(help="hyperparameter override key=value (repeatable)")] = None,
    out: Annotated[Path | None, typer.Option(help="write the per-seed records as a JSON list")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda[:N] (default: CUDA when present, else CPU)")]
    = None,
    fit_seconds: FitSeconds = None,
    fit_memory_gb: FitMemoryGB = None,
) -> None:
    """Train and evaluate one method on one task over several seeds (no leaderboard).

    Each fit runs in a child process under the limits, as in `sbbench score`.
    """
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    force_device(device)
    task_spec = task_named(task)
    info = method_named(method)
    hparams = configure(info, parse_overrides(hp or []))
    fitter = IsolatedFit(limits=limits_for(None, fit_seconds, fit_memory_gb))
    results = []
    log_path = results_root() / "logs" / f"{info.name}_{task_spec.name}.log"
    with progress_bar() as progress, job_log(log_path) as keep:
        bar = progress.add_task(f"{info.name} on {task_spec.name}", total=seeds)
        for seed in range(seeds):
            def log(message: str, seed: int = seed) -> None:
                keep(f"{task_spec.name} seed {seed}: {message}")
                progress.update(bar, description=f"{info.name} on {task_spec.name}, seed {seed}: {message}")
            results.append(run_job(info, hparams, task_spec, seed, log=log, fit=fitter))
            progress.advance(bar)
    if out is not None:
        out.write_text(json.dumps([r.model_dump(mode="json") for r in results], indent=1))
    _print_summary(results)
    console.print(f"training log: {log_path}", markup=False, soft_wrap=True)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


@app.command("score")
def score_command(
    method: Annotated[str, typer.Argument(help="method name or submission folder")],
    suite: Annotated[str, typer.Option(help="suite name (see `sbbench suites`)")] = "synthetic",
    hp: Annotated[list[str] | None, typer.Option(help="hyperparameter override key=value (repeatable)")] = None,
    workers: Annotated[int, typer.Option(help="parallel worker processes")] = 1,
    root: Annotated[Path | None, typer.Option(help="leaderboard folder to write the entry into (default "
                                                   "$SBBENCH_RESULTS or ./sbbench-results; `--root leaderboard` "
                                                   "writes the committed leaderboard)")] = None,
    cache_dir: CacheDir = None,
    executor: Annotated[str, typer.Option(help="isolated (fit in child processes under the suite's limits), "
                                               "inline (one process, for debugging), dask (needs --scheduler) "
                                               "or dask-local (a local Dask cluster of --workers single-core "
                                               "processes)")]
    = "isolated",
    scheduler: SchedulerAddress = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda[:N] (default: CUDA when present, else CPU)")]
    = None,
    fit_seconds: FitSeconds = None,
    fit_memory_gb: FitMemoryGB = None,
) -> None:
    """Score a method on every task x seed of a suite and write its leaderboard entry.

    The entry goes to your results folder (./sbbench-results) unless --root names another
    leaderboard folder; training messages are kept in <results>/logs/.
    """
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    check_executor(executor, scheduler)
    force_device(device)
    suite_spec = suite_named(suite)
    info = method_named(method)
    overrides = parse_overrides(hp or [])
    hparams = configure(info, overrides)
    root = root or results_root()
    refuse_owner_conflict(root, suite_spec, info)
    jobs = len(suite_spec.tasks) * len(suite_spec.seeds)
    log_path = results_root() / "logs" / f"{info.name}_{suite_spec.label}.log"
    with progress_bar() as progress, job_log(log_path) as keep:
        bar = progress.add_task(f"scoring {info.name} on {suite_spec.label}", total=jobs)

        def log(message: str) -> None:
            keep(message)
            progress.update(bar, description=f"scoring {info.name} on {suite_spec.label}: {message}")

        try:
            outcome = score(info, hparams, suite_spec, cache=ResultCache(cache_dir or default_cache_dir()),
                            workers=workers, executor=executor, scheduler=scheduler,
                            limits=limits_for(suite_spec, fit_seconds, fit_memory_gb),
                            on_result=report_result(progress, bar), log=log)
        except ClusterError as error:
            raise UserError(str(error)) from None
    exit_if_failed(outcome.results, log_path, "score")
    source = "defaults" if not overrides else "given on the command line: " + ", ".join(hp or [])
    entry = build_entry(info, hparams, source, suite_spec, outcome.results, str(default_device()))
    path = publish_entry(root, suite_spec, entry)
    console.print(f"{info.name}: score {entry.primary_score:.4f} ({score_meaning(suite_spec)}); "
                  f"{outcome.reused} of {jobs} jobs reused from the cache; entry written to {path}",
                  markup=False, soft_wrap=True)
    print_guard(suite_spec, entry)
    browse = f"sbbench leaderboard --suite {suite_spec.name} --root {root}"
    compare = f"sbbench compare {info.name} erm --suite {suite_spec.name}"
    console.print(f"next: {browse}" if info.name == "erm" else f"next: {compare}   (or: {browse})", markup=False,
                  soft_wrap=True)


def print_guard(suite: Suite, entry: Entry) -> None:
    """Say which tasks the accuracy guard caught (a failed or flagged task ranks the entry low)."""
    assessment = assess(suite, entry.runs)
    if assessment is not None and assessment.guarded:
        console.print(f"accuracy guard: {assessment.remarks} (clean accuracy more than {ACCURACY_GUARD} below "
                      f"ERM's, or a run below {CHANCE_ACCURACY}); the entry ranks after every unguarded one",
                      markup=False, soft_wrap=True)


def refuse_owner_conflict(root: Path, suite: Suite, info: MethodInfo) -> None:
    """Refuse, before any training, a score whose entry would replace another source's entry."""
    conflict = owner_conflict(root, suite, info.name, info.source)
    if conflict is not None:
        raise UserError(conflict)


def check_executor(executor: str, scheduler: str | None) -> None:
    """Refuse an unknown executor, ``dask`` without a scheduler and a scheduler without ``dask``."""
    if executor not in EXECUTORS:
        raise UserError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "dask" and not scheduler:
        raise UserError("--executor dask needs --scheduler ADDRESS (or use --executor dask-local)")
    if scheduler is not None and executor != "dask":
        raise UserError(f"--scheduler is only used by --executor dask, not {executor!r}")


def _print_summary(results: list[RunResult]) -> None:
    failed = [r for r in results if r.status == "failed"]
    for result in failed:
        errors.print(f"seed {result.seed} failed: {result.error}", markup=False)
    ok = [r for r in results if r.status == "ok"]
    if not ok:
        return
    table = Table(title=f"{ok[0].method} on {ok[0].task}: mean ± std over {len(ok)} seed(s)")
    table.add_column("metric")
    table.add_column("mean ± std", justify="right")
    names = [m for m in SUMMARY_METRICS if m in ok[0].metrics] + sorted(
        m for m in ok[0].metrics if m not in SUMMARY_METRICS)
    for name in names:
        values = np.array([r.metrics[name] for r in ok])
        table.add_row(name, f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}")
    console.print(table)
    seconds = np.mean([r.train_seconds + r.eval_seconds for r in ok])
    console.print(f"mean wall time per seed: {seconds:.1f} s")
