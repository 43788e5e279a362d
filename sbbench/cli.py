"""The ``sbbench`` command line (typer + rich)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sbbench.leaderboard.compare import compare_entries
from sbbench.leaderboard.render import format_value, leaderboard_frame
from sbbench.leaderboard.store import EntryError, build_entry, entry_path, load_entries, read_entry, write_entry
from sbbench.methods.registry import MethodInfo, RegistryError, SubmissionError, discover, resolve_method
from sbbench.results import RunResult
from sbbench.runner import default_device, run_job
from sbbench.scoring import ResultCache, default_cache_dir, score
from sbbench.suite import SUITES, Suite, get_suite
from sbbench.tasks import TASKS, get_task

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="sbbench: a benchmark for simplicity bias in neural networks.")
data_app = typer.Typer(no_args_is_help=True, help="Export the benchmark's datasets.")
app.add_typer(data_app, name="data")
leaderboard_app = typer.Typer(help="Browse the leaderboard (and render or publish it).")
app.add_typer(leaderboard_app, name="leaderboard")

LEADERBOARD_ROOT = Path("leaderboard")

console = Console()
errors = Console(stderr=True)

SUMMARY_METRICS = ("acc", "auc", "s_rand_acc", "s_rand_auc", "sc_rand_acc", "sc_rand_auc", "s_swap_acc",
                   "sc_swap_acc")


# Recent typer releases vendor click, so its usage-error class is found through typer itself.
UsageError = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")


class UserError(UsageError):
    """A bad argument or input: printed as one line, exit code 2."""


def main() -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except UsageError as error:
        errors.print(f"error: {error.format_message()}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        errors.print("aborted", markup=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


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
    for name, info in sorted(_discover().items()):
        table.add_row(name, str(info.cls.version), info.cls.track.value, info.source)
    console.print(table)


@app.command("run")
def run_command(
    method: Annotated[str, typer.Argument(help="method name or submission folder")],
    task: Annotated[str, typer.Option(help="task name (see `sbbench tasks`)")] = "lms5",
    seeds: Annotated[int, typer.Option(help="number of seeds: 0 .. N-1")] = 1,
    out: Annotated[Path | None, typer.Option(help="write the per-seed records as a JSON list")] = None,
) -> None:
    """Train and evaluate one method on one task over several seeds (no leaderboard)."""
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    task_spec = _task(task)
    info = _method(method)
    results = []
    with _progress() as progress:
        bar = progress.add_task(f"{info.name} on {task_spec.name}", total=seeds)
        for seed in range(seeds):
            def log(message: str, seed: int = seed) -> None:
                progress.update(bar, description=f"{info.name} on {task_spec.name}, seed {seed}: {message}")
            results.append(run_job(info, info.cls(), task_spec, seed, log=log))
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
) -> None:
    """Score a method on every task x seed of a suite and write its leaderboard entry."""
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    suite_spec = _suite(suite)
    info = _method(method)
    overrides = parse_overrides(hp or [])
    hparams = _configure(info, overrides).hparams.model_dump(mode="json")
    jobs = len(suite_spec.tasks) * len(suite_spec.seeds)
    with _progress() as progress:
        bar = progress.add_task(f"scoring {info.name} on {suite_spec.label}", total=jobs)

        def on_result(result: RunResult, reused: bool) -> None:
            state = "cached" if reused else result.status
            progress.console.print(f"{result.task} seed {result.seed}: {state}"
                                   + (f" ({result.error})" if result.error else ""), markup=False)
            progress.advance(bar)

        def log(message: str) -> None:
            progress.update(bar, description=f"scoring {info.name} on {suite_spec.label}: {message}")

        outcome = score(info, hparams, suite_spec, cache=ResultCache(cache_dir or default_cache_dir()),
                        workers=workers, executor="process" if workers > 1 else "inline",
                        on_result=on_result, log=log)
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


@leaderboard_app.callback(invoke_without_command=True)
def leaderboard_command(
    ctx: typer.Context,
    suite: Annotated[str, typer.Option(help="suite name")] = "synthetic",
    track: Annotated[str | None, typer.Option(help="only this track (T0, T1, T2, oracle)")] = None,
    sort: Annotated[str | None, typer.Option(help="sort by this column instead of the score")] = None,
    format: Annotated[str, typer.Option(help="table, md, csv or json")] = "table",
    root: Annotated[Path, typer.Option(help="leaderboard folder")] = LEADERBOARD_ROOT,
) -> None:
    """Show the leaderboard of a suite."""
    if ctx.invoked_subcommand is not None:
        return
    if format not in ("table", "md", "csv", "json"):
        raise UserError(f"--format must be table, md, csv or json, got {format!r}")
    suite_spec = _suite(suite)
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
        _print_frame(frame, f"sbbench leaderboard: {suite_spec.label}")


@app.command("compare")
def compare_command(
    a: Annotated[str, typer.Argument(help="first method (entry name)")],
    b: Annotated[str, typer.Argument(help="second method (entry name)")],
    suite: Annotated[str, typer.Option(help="suite name")] = "synthetic",
    root: Annotated[Path, typer.Option(help="leaderboard folder")] = LEADERBOARD_ROOT,
) -> None:
    """Paired-seed comparison of two entries: per task and metric, A - B with 95% CI and p-value."""
    suite_spec = _suite(suite)
    entries = [_entry(root, suite_spec, name) for name in (a, b)]
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


@data_app.command("export")
def export_command(
    task: Annotated[str, typer.Argument(help="task name")],
    out: Annotated[Path, typer.Option(help="output .npz file")],
    seed: Annotated[int, typer.Option(help="data seed")] = 0,
) -> None:
    """Write a task's data for one seed as .npz (see docs/data-format.md)."""
    data = _task(task).build(seed)
    rotation = data.space.rotation
    np.savez_compressed(
        out,
        x_train=data.train.x.numpy(), y_train=data.train.y.numpy(),
        x_test=data.test.x.numpy(), y_test=data.test.y.numpy(),
        rotation=np.eye(data.space.n_features, dtype=np.float32) if rotation is None else rotation.numpy(),
        block_S=np.asarray(data.space.blocks["S"]), block_Sc=np.asarray(data.space.blocks["Sc"]),
    )
    console.print(f"wrote {out} ({len(data.train)} train, {len(data.test)} test, d={data.space.n_features})")


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``["lam=0.1", "k=3"]`` -> ``{"lam": 0.1, "k": 3}``; values are JSON when they parse, else text."""
    overrides: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--hp expects key=value, got {item!r}")
        try:
            overrides[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key.strip()] = raw
    return overrides


def _configure(info: MethodInfo, overrides: dict[str, object]):
    try:
        return info.cls.with_overrides(overrides)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise UserError(f"hyperparameter {where} of {info.name}: {problem['msg']}") from None


def _suite(name: str) -> Suite:
    try:
        return get_suite(name)
    except KeyError as error:
        raise UserError(error.args[0]) from None


def _entry(root: Path, suite: Suite, name: str):
    path = entry_path(root, suite, name)
    if not path.is_file():
        raise UserError(f"no entry {name!r} for {suite.label} under {root} (expected {path})")
    try:
        return read_entry(path)
    except EntryError as error:
        raise UserError(str(error)) from None


def _print_frame(frame, title: str) -> None:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(column.replace("/", "\n"), justify="left" if column in ("method", "track", "status")
                         else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*(format_value(v) for v in row))
    if frame.empty:
        console.print(f"{title}: no entries yet")
    else:
        console.print(table)


def _task(name: str):
    try:
        return get_task(name)
    except KeyError as error:
        raise UserError(error.args[0]) from None


def _method(name_or_path: str):
    try:
        return resolve_method(name_or_path)
    except (RegistryError, SubmissionError) as error:
        raise UserError(str(error)) from None


def _discover():
    try:
        return discover()
    except (RegistryError, SubmissionError) as error:
        raise UserError(str(error)) from None


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=errors, transient=False)


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
