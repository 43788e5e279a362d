"""The typer application, shared consoles, and helpers that turn bad input into one-line errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

import sbbench
from sbbench.isolation import DEFAULT_LIMITS, Limits
from sbbench.leaderboard.entry import Entry
from sbbench.leaderboard.render import TEXT_COLUMNS, column_label, format_value
from sbbench.leaderboard.store import EntryError, entry_path, read_entry, write_entry
from sbbench.methods.describe import DescribeError
from sbbench.methods.registry import HParamsError, MethodInfo, RegistryError, SubmissionError, resolve_method
from sbbench.results import RunResult
from sbbench.suite import ALL_SUITES, Suite, get_suite
from sbbench.tasks import Task, get_task

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

LEADERBOARD_ROOT = Path("leaderboard")
"""The committed leaderboard: what browsing commands read by default; written only when asked (``--root``)."""

RESULTS_ENV = "SBBENCH_RESULTS"

console = Console()
errors = Console(stderr=True)

# Recent typer releases vendor click, so its usage-error class is found through typer itself.
UsageError = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")


class UserError(UsageError):
    """A bad argument or input: printed as one line, exit code 2."""


def results_root() -> Path:
    """Where ``score`` and ``sweep`` write entries by default: ``$SBBENCH_RESULTS`` or ``./sbbench-results``."""
    return Path(os.environ.get(RESULTS_ENV) or "sbbench-results")


def _print_version(value: bool) -> None:
    if value:
        console.print(f"sbbench {sbbench.__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _sbbench(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                   help="print the version and exit")] = False) -> None:
    """sbbench: a benchmark for simplicity bias in neural networks."""

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


def configure(info: MethodInfo, overrides: dict[str, object]) -> dict[str, object]:
    """The method's full hyperparameters with ``overrides`` applied, validated by its ``HParams``."""
    try:
        return info.configure(overrides)
    except (HParamsError, DescribeError) as error:
        raise UserError(str(error)) from None


FitSeconds = Annotated[float | None, typer.Option(
    "--fit-seconds", min=1, help="wall-time limit of one job's fit, in seconds (default: the suite's)")]
FitMemoryGB = Annotated[float | None, typer.Option(
    "--fit-memory-gb", min=0.1, help="memory limit of one job's fit and every process it starts, in GB "
                                     "(default: the suite's)")]
CacheDir = Annotated[Path | None, typer.Option(help="result cache (default $SBBENCH_CACHE or .sbbench/cache)")]
SchedulerAddress = Annotated[str | None, typer.Option(help="Dask scheduler address, e.g. tcp://host:8786")]


def limits_for(suite: Suite | None, seconds: float | None, memory_gb: float | None) -> Limits:
    """The fit limits of a command: the suite's (or the defaults), replaced by the options given."""
    base = Limits.of(suite) if suite is not None else DEFAULT_LIMITS
    return Limits(seconds=seconds or base.seconds, memory_gb=memory_gb or base.memory_gb)


def suite_named(name: str) -> Suite:
    try:
        return get_suite(name)
    except KeyError as error:
        raise UserError(error.args[0]) from None


def browse_roots(root: Path) -> list[Path]:
    """The folders a browsing command looks in for an entry: ``root``, then the user's results folder."""
    return list(dict.fromkeys([root, results_root()]))


def suites_with_entry(roots: list[Path], name: str) -> list[Suite]:
    """The suites for which some folder of ``roots`` holds an entry named ``name``."""
    return [suite for suite in ALL_SUITES if any(entry_path(root, suite, name).is_file() for root in roots)]


def load_named_entry(root: Path, suite: Suite, name: str):
    """Entry ``name`` of ``suite`` from ``root`` or else the user's results folder; a clear error names both."""
    roots = browse_roots(root)
    path = next((entry_path(r, suite, name) for r in roots if entry_path(r, suite, name).is_file()), None)
    if path is None:
        elsewhere = suites_with_entry(roots, name)
        hint = (f"; {name!r} has entries for {', '.join(s.label for s in elsewhere)}: add --suite "
                f"{elsewhere[0].name}" if elsewhere else f"; score it first: sbbench score {name} --suite {suite.name}")
        raise UserError(f"no entry {name!r} for {suite.label} under {' or '.join(map(str, roots))}{hint}")
    try:
        return read_entry(path)
    except EntryError as error:
        raise UserError(str(error)) from None


def publish_entry(root: Path, suite: Suite, entry: Entry) -> Path:
    """Write ``entry`` under ``root`` (a refused write is one error line); warn about entry files the tables skip."""
    skipped: list[EntryError] = []
    try:
        path = write_entry(root, suite, entry, skipped)
    except EntryError as error:
        raise UserError(str(error)) from None
    for problem in skipped:
        errors.print(f"warning: the tables leave out an entry file that cannot be read: {problem}", markup=False,
                     soft_wrap=True)
    return path


def hub_snapshot_root(repo: str) -> Path:
    """The cached snapshot of Hub repository ``repo`` (see `sbbench leaderboard pull`), as a leaderboard root."""
    from sbbench.leaderboard.hub import HubError, cached_snapshot

    try:
        return cached_snapshot(repo)
    except HubError as error:
        raise UserError(str(error)) from None


def print_frame(frame, title: str, *, compact: bool = False,
                header: Callable[[str], str] | None = None) -> None:
    """``frame`` as a terminal table: names never cut, long headers folded, numbers right-aligned.

    ``compact``: no cell padding and no outer edge (one space between columns); ``header`` maps
    a column name to its printed header (default: :func:`column_label`, folded at ``/`` and ``mean``).
    """
    if frame.empty:
        console.print(f"{title}: no entries yet", markup=False)
        return
    table = (Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False) if compact
             else Table(title=title, box=box.SIMPLE_HEAD))
    for column in frame.columns:
        label = header(column) if header else column_label(column).replace("/", "\n", 1).replace("mean ", "mean\n", 1)
        table.add_column(label, justify="left" if column in TEXT_COLUMNS else "right",
                         no_wrap=column in ("method", "status"), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(format_value(v) for v in row))
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


@contextmanager
def job_log(path: Path) -> Iterator[Callable[[str], None]]:
    """A callback that appends each training message, timestamped, to ``path`` (kept after the progress bar).

    The file (and its folder) is created at the first message, so a command that fails before
    training writes nothing.
    """
    handle = None

    def keep(message: str) -> None:
        nonlocal handle
        if handle is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a")  # noqa: SIM115  (closed when the block ends)
            handle.write(f"--- {datetime.now():%Y-%m-%d %H:%M:%S} sbbench {' '.join(sys.argv[1:])}\n")
        handle.write(f"{datetime.now():%H:%M:%S} {message}\n")
        handle.flush()

    try:
        yield keep
    finally:
        if handle is not None:
            handle.close()


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


def exit_if_failed(results: list[RunResult], log_path: Path, command: str) -> None:
    """Print how many jobs failed and exit 1 when any did; the leaderboard stays as it was."""
    failed = [r for r in results if r.status == "failed"]
    if failed:
        errors.print(f"{len(failed)} of {len(results)} jobs failed; the leaderboard was not changed. Finished jobs "
                     f"are cached: fix the method and {command} again (training log: {log_path}).",
                     markup=False, soft_wrap=True)
        raise typer.Exit(1)
