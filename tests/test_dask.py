"""Dask scale-out: the same jobs on a real ``LocalCluster`` of 2 worker processes give identical results.

One cluster is started here and reached by address (``--executor dask --scheduler``); the local
shortcut (``dask-local``), which starts its own cluster, is tested too (marked slow).
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from sbbench.cli import main
from sbbench.leaderboard.store import entry_path, read_entry
from sbbench.methods.registry import resolve_method
from sbbench.results import RunResult
from sbbench.scoring import ResultCache, score
from sbbench.suite import SUITES, Suite

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


def numbers(results: list[RunResult]) -> list[tuple]:
    return [(r.task, r.seed, r.status, r.error, r.metrics, r.profiles) for r in results]


def test_a_two_worker_local_cluster_gives_the_inline_results(tmp_path: Path, tiny_suite: Suite, scheduler: str
                                                              ) -> None:
    info = resolve_method("erm", submissions_dir=None)
    hparams = info.defaults
    inline = score(info, hparams, tiny_suite, cache=ResultCache(tmp_path / "inline"), executor="inline")
    remote = score(info, hparams, tiny_suite, cache=ResultCache(tmp_path / "dask"), executor="dask",
                   scheduler=scheduler)
    assert all(r.status == "ok" for r in remote.results), [r.error for r in remote.results]
    assert numbers(remote.results) == numbers(inline.results)
    assert len(list((tmp_path / "dask").rglob("*.json"))) == len(tiny_suite.seeds)


@pytest.mark.slow
def test_the_local_cluster_shortcut_gives_the_inline_results(tmp_path: Path, tiny_suite: Suite) -> None:
    info = resolve_method("erm", submissions_dir=None)
    hparams = info.defaults
    inline = score(info, hparams, tiny_suite, cache=ResultCache(tmp_path / "inline"), executor="inline")
    local = score(info, hparams, tiny_suite, cache=ResultCache(tmp_path / "dask"), executor="dask-local", workers=2)
    assert numbers(local.results) == numbers(inline.results)


def test_score_on_a_cluster_by_address_writes_cache_and_entry_here(tmp_path: Path, scheduler: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["sbbench", "score", "erm", "--suite", "ci", "--root", str(tmp_path / "board"),
                                      "--cache-dir", str(tmp_path / "cache"), "--executor", "dask",
                                      "--scheduler", scheduler])
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0, err.getvalue()
    ci = SUITES["ci"]
    entry = read_entry(entry_path(tmp_path / "board", ci, "erm"))
    assert sorted((run.task, run.seed) for run in entry.runs) == [("lms5-ci", seed) for seed in ci.seeds]
    assert all(run.status == "ok" for run in entry.runs)
    assert len(list((tmp_path / "cache").rglob("*.json"))) == len(ci.seeds)

    info = resolve_method("erm", submissions_dir=None)
    hparams = info.defaults
    again = score(info, hparams, ci, cache=ResultCache(tmp_path / "cache"), executor="dask", scheduler=scheduler)
    assert again.reused == len(ci.seeds), "the submitting process's cache is reused; nothing runs again"


@pytest.mark.parametrize(("args", "message"), [
    (["--executor", "dask"], "--executor dask needs --scheduler ADDRESS"),
    (["--executor", "dask", "--scheduler", "not-an-address"], "cannot reach the Dask scheduler at 'not-an-address'"),
    (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler is only used by --executor dask"),
    (["--executor", "threads"], "--executor must be one of isolated, inline, dask, dask-local"),
])
def test_bad_dask_arguments_are_one_clear_error(args: list[str], message: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["sbbench", "score", "erm", "--suite", "ci", "--root", str(tmp_path), *args])
    err = io.StringIO()
    with redirect_stderr(err), pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    lines = err.getvalue().splitlines()
    assert lines[-1].startswith(f"error: {message}"), err.getvalue()
    assert [line for line in lines if "error" in line.lower()] == lines[-1:] and "Traceback" not in err.getvalue()
    assert list(tmp_path.iterdir()) == []


def test_local_cluster_workers_keep_the_default_allocator_settings() -> None:
    import os

    from sbbench.executors import dask_client

    with dask_client(None, 1) as client:
        seen = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert list(seen.values()) == [None]
