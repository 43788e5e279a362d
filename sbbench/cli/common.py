"""The typer application, shared consoles, and helpers that turn bad input into one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from sbbench.leaderboard.render import column_label, format_value
from sbbench.leaderboard.store import EntryError, entry_path, read_entry
from sbbench.methods.registry import MethodInfo, RegistryError, SubmissionError, discover, resolve_method
from sbbench.results import RunResult
from sbbench.suite import Suite, get_suite
from sbbench.tasks import Task, get_task

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="sbbench: a benchmark for simplicity bias in neural networks.")
data_app = typer.Typer(no_args_is_help=True, help="Export the benchmark's datasets.")
app.add_typer(data_app, name="data")
leaderboard_app = typer.Typer(help="Browse the leaderboard (and render or publish it).")
app.add_typer(leaderboard_app, name="leaderboard")

LEADERBOARD_ROOT = Path("leaderboard")

console = Console()
errors = Console(stderr=True)

# Recent typer releases vendor click, so its usage-error class is found through typer itself.
UsageError = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")


class UserError(UsageError):
    """A bad argument or input: printed as one line, exit code 2."""

def main() -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except UsageError as error:
        errors.print(f"error: {one_line(error.format_message())}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        errors.print("aborted", markup=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def one_line(message: str) -> str:
    """``message`` with line breaks and other control characters (which may come from user input) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)




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


def configure(info: MethodInfo, overrides: dict[str, object]):
    try:
        return info.cls.with_overrides(overrides)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise UserError(f"hyperparameter {where} of {info.name}: {problem['msg']}") from None


def suite_named(name: str) -> Suite:
    try:
        return get_suite(name)
    except KeyError as error:
        raise UserError(error.args[0]) from None


def load_named_entry(root: Path, suite: Suite, name: str):
    path = entry_path(root, suite, name)
    if not path.is_file():
        raise UserError(f"no entry {name!r} for {suite.label} under {root} (expected {path})")
    try:
        return read_entry(path)
    except EntryError as error:
        raise UserError(str(error)) from None


def hub_snapshot_root(repo: str) -> Path:
    """The cached snapshot of Hub repository ``repo`` (see `sbbench leaderboard pull`), as a leaderboard root."""
    from sbbench.leaderboard.hub import HubError, cached_snapshot

    try:
        return cached_snapshot(repo)
    except HubError as error:
        raise UserError(str(error)) from None


def print_frame(frame, title: str) -> None:
    table = Table(title=title)
    for column in frame.columns:
        label = column_label(column).replace("/", "\n", 1)
        table.add_column(label, justify="left" if column in ("method", "track", "status") else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*(format_value(v) for v in row))
    if frame.empty:
        console.print(f"{title}: no entries yet")
    else:
        console.print(table)


def force_device(device: str | None) -> None:
    """Make ``device`` (``cpu``, ``cuda``, ``cuda:1``, ...) the one every job of this command uses.

    It is passed on through ``$SBBENCH_DEVICE``, so isolated fit children and local Dask workers
    inherit it; ``None`` keeps the automatic choice (CUDA when present, else CPU).
    """
    if device is None:
        return
    import os

    import torch

    from sbbench.runner import DEVICE_ENV

    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device must name a torch device such as cpu, cuda or cuda:1, got {device!r}") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    if chosen.type not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda[:N], got {device!r}")
    os.environ[DEVICE_ENV] = device


def task_named(name: str) -> Task:
    try:
        return get_task(name)
    except KeyError as error:
        raise UserError(error.args[0]) from None


def method_named(name_or_path: str) -> MethodInfo:
    try:
        return resolve_method(name_or_path)
    except (RegistryError, SubmissionError) as error:
        raise UserError(str(error)) from None


def discover_methods():
    try:
        return discover()
    except (RegistryError, SubmissionError) as error:
        raise UserError(str(error)) from None


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=errors, transient=False)




def report_result(progress: Progress, bar: TaskID) -> Callable[[RunResult, bool], None]:
    """A ``score`` callback printing one line per finished job and advancing ``bar``."""

    def on_result(result: RunResult, reused: bool) -> None:
        state = "cached" if reused else result.status
        progress.console.print(f"{result.task} seed {result.seed}: {state}"
                               + (f" ({result.error})" if result.error else ""), markup=False)
        progress.advance(bar)

    return on_result
