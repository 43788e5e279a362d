"""Commands for the core jobs: list tasks, suites and methods; run; score; export data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from sbbench.cli.common import (
    LEADERBOARD_ROOT,
    UserError,
    app,
    configure,
    console,
    data_app,
    discover_methods,
    errors,
    force_device,
    method_named,
    parse_overrides,
    progress_bar,
    report_result,
    suite_named,
    task_named,
)
from sbbench.cluster import ClusterError
from sbbench.leaderboard.store import build_entry, write_entry
from sbbench.results import RunResult
from sbbench.runner import default_device, run_job
from sbbench.scoring import EXECUTORS, ResultCache, default_cache_dir, score
from sbbench.suite import SUITES
from sbbench.tasks import TASKS

SUMMARY_METRICS = ("acc", "auc", "s_rand_acc", "s_rand_auc", "sc_rand_acc", "sc_rand_auc", "s_swap_acc",
                   "sc_swap_acc")

@app.command("tasks")
def tasks_command() -> None:
    """List the named tasks with their dataset, blocks, backbone and budget."""
    table = Table(title="sbbench tasks")
    for column in ("task", "dataset", "train/test", "blocks", "backbone", "budget"):
        table.add_column(column)
    for task in TASKS.values():
        data, budget = task.data, task.budget
        table.add_row(
            task.name, task.description, f"{data.n_train:,} / {data.n_test:,}",
            f"S: {data.simple.dims} coord, S^c: {data.complex.dims}",
            f"({task.backbone.width},{task.backbone.depth})-{task.backbone.kind.upper()}",
            f"{budget.optimizer} lr {budget.lr} mom {budget.momentum} wd {budget.weight_decay} "
            f"bs {budget.batch_size}, <= {budget.max_epochs} epochs",
        )
    console.print(table)


@app.command("methods")
def methods_command() -> None:
    """List every available method with its track and source."""
    table = Table(title="sbbench methods")
    for column in ("method", "version", "track", "source"):
        table.add_column(column)
    for name, info in sorted(discover_methods().items()):
        table.add_row(name, str(info.cls.version), info.cls.track.value, info.source)
    console.print(table)


@app.command("run")
def run_command(
    method: Annotated[str, typer.Argument(help="method name or submission folder")],
    task: Annotated[str, typer.Option(help="task name (see `sbbench tasks`)")] = "lms5",
    seeds: Annotated[int, typer.Option(help="number of seeds: 0 .. N-1")] = 1,
    hp: Annotated[list[str] | None, typer.Option(help="hyperparameter override key=value (repeatable)")] = None,
    out: Annotated[Path | None, typer.Option(help="write the per-seed records as a JSON list")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda[:N] (default: CUDA when present, else CPU)")]
    = None,
) -> None:
    """Train and evaluate one method on one task over several seeds (no leaderboard)."""
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    force_device(device)
    task_spec = task_named(task)
    info = method_named(method)
    configured = configure(info, parse_overrides(hp or []))
    results = []
    with progress_bar() as progress:
        bar = progress.add_task(f"{info.name} on {task_spec.name}", total=seeds)
        for seed in range(seeds):
            def log(message: str, seed: int = seed) -> None:
                progress.update(bar, description=f"{info.name} on {task_spec.name}, seed {seed}: {message}")
            # A fresh method per seed, as `score` does: fit may keep state on the instance.
            results.append(run_job(info, info.cls(configured.hparams), task_spec, seed, log=log))
            progress.advance(bar)
    if out is not None:
        out.write_text(json.dumps([r.model_dump(mode="json") for r in results], indent=1))
    _print_summary(results)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


@app.command("suites")
def suites_command() -> None:
    """List the suites with their version, hash, tasks and seeds."""
    table = Table(title="sbbench suites")
    for column in ("suite", "version", "hash", "tasks", "seeds", "score"):
        table.add_column(column)
    for suite in SUITES.values():
        table.add_row(suite.name, str(suite.version), suite.content_hash()[:16],
                      ", ".join(t.name for t in suite.tasks), ", ".join(map(str, suite.seeds)),
                      f"mean {suite.primary_metric} over tasks")
    console.print(table)


@app.command("score")
def score_command(
    method: Annotated[str, typer.Argument(help="method name or submission folder")],
    suite: Annotated[str, typer.Option(help="suite name (see `sbbench suites`)")] = "synthetic",
    hp: Annotated[list[str] | None, typer.Option(help="hyperparameter override key=value (repeatable)")] = None,
    workers: Annotated[int, typer.Option(help="parallel worker processes")] = 1,
    root: Annotated[Path, typer.Option(help="leaderboard folder")] = LEADERBOARD_ROOT,
    cache_dir: Annotated[Path | None, typer.Option(help="result cache (default $SBBENCH_CACHE or .sbbench/cache)")]
    = None,
    executor: Annotated[str, typer.Option(help="isolated (fit in child processes under the suite's limits), "
                                               "inline (one process, for debugging), dask (needs --scheduler) "
                                               "or dask-local (a local Dask cluster of --workers single-core "
                                               "processes)")]
    = "isolated",
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, e.g. tcp://host:8786")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda[:N] (default: CUDA when present, else CPU)")]
    = None,
) -> None:
    """Score a method on every task x seed of a suite and write its leaderboard entry."""
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    check_executor(executor, scheduler)
    force_device(device)
    suite_spec = suite_named(suite)
    info = method_named(method)
    overrides = parse_overrides(hp or [])
    hparams = configure(info, overrides).hparams.model_dump(mode="json")
    jobs = len(suite_spec.tasks) * len(suite_spec.seeds)
    with progress_bar() as progress:
        bar = progress.add_task(f"scoring {info.name} on {suite_spec.label}", total=jobs)

        def log(message: str) -> None:
            progress.update(bar, description=f"scoring {info.name} on {suite_spec.label}: {message}")

        try:
            outcome = score(info, hparams, suite_spec, cache=ResultCache(cache_dir or default_cache_dir()),
                            workers=workers, executor=executor, scheduler=scheduler,
                            on_result=report_result(progress, bar), log=log)
        except ClusterError as error:
            raise UserError(str(error)) from None
    failed = [r for r in outcome.results if r.status == "failed"]
    if failed:
        errors.print(f"{len(failed)} of {jobs} jobs failed; the leaderboard was not changed. "
                     "Finished jobs are cached: fix the method and score again.", markup=False)
        raise typer.Exit(1)
    source = "defaults" if not overrides else "given on the command line: " + ", ".join(hp or [])
    entry = build_entry(info, hparams, source, suite_spec, outcome.results, str(default_device()))
    path = write_entry(root, suite_spec, entry)
    console.print(f"{info.name}: score {entry.primary_score:.4f} ({suite_spec.primary_metric}, mean over tasks); "
                  f"{outcome.reused} of {jobs} jobs reused from the cache; entry written to {path}")


@data_app.command("export")
def export_command(
    task: Annotated[str, typer.Argument(help="task name")],
    out: Annotated[Path, typer.Option(help="output .npz file")],
    seed: Annotated[int, typer.Option(help="data seed")] = 0,
) -> None:
    """Write a task's data for one seed as .npz (see docs/data-format.md)."""
    data = task_named(task).build(seed)
    rotation = data.space.rotation
    np.savez_compressed(
        out,
        x_train=data.train.x.numpy(), y_train=data.train.y.numpy(),
        x_test=data.test.x.numpy(), y_test=data.test.y.numpy(),
        rotation=np.eye(data.space.n_features, dtype=np.float32) if rotation is None else rotation.numpy(),
        block_S=np.asarray(data.space.blocks["S"]), block_Sc=np.asarray(data.space.blocks["Sc"]),
    )
    console.print(f"wrote {out} ({len(data.train)} train, {len(data.test)} test, d={data.space.n_features})")


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
