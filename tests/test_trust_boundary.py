"""The trust boundary against hostile submissions (tests/hostile/): each attack is refused or neutralised.

Every case runs the real command line in a subprocess (``python -m sbbench score ...``), so the
process that scores is a process of its own whose pid the test knows; a hostile submission writes
what it managed to do, with its pid, to the file named by ``$SBBENCH_HOSTILE_MARKER``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sbbench.cache import CachedResult, ResultCache
from sbbench.isolation import Limits
from sbbench.results import RunResult
from sbbench.suite import SUITES

HOSTILE = Path(__file__).resolve().parent / "hostile"


def score_in_subprocess(tmp_path: Path, folder: str, *options: str) -> tuple[subprocess.CompletedProcess, int,
                                                                                list[str], list[RunResult]]:
    """Score ``tests/hostile/<folder>`` on the smoke suite in a fresh process.

    Returns the finished process, its pid, the marker file's lines and every job's result.
    """
    marker, results, cache = tmp_path / "marker.txt", tmp_path / "results", tmp_path / "cache"
    marker.touch()
    environment = {**os.environ, "SBBENCH_HOSTILE_MARKER": str(marker), "SBBENCH_RESULTS": str(results),
                   "SBBENCH_SUBMISSIONS": str(tmp_path / "no-submissions")}
    process = subprocess.Popen(
        [sys.executable, "-m", "sbbench", "score", str(HOSTILE / folder), "--suite", "smoke", "--cache-dir",
         str(cache), *options], cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    stdout, stderr = process.communicate(timeout=600)
    finished = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    runs = [CachedResult.model_validate_json(path.read_text()).result for path in cache.rglob("*.json")]
    return finished, process.pid, marker.read_text().splitlines(), runs


def test_submitted_code_never_runs_in_the_scoring_process(tmp_path: Path) -> None:
    """Break 1: a model whose ``__reduce__`` patches the evaluation, and code run at import of method.py."""
    finished, scorer, marker, runs = score_in_subprocess(tmp_path, "reduce-patch")
    assert finished.returncode == 0, finished.stderr
    importers = {int(line.split()[1]) for line in marker if line.startswith("import ")}
    assert importers and scorer not in importers  # imported only by the describing and fit children
    assert not [line for line in marker if line.startswith("unpickled")]  # the model was never unpickled
    assert runs and all(run.status == "ok" and set(run.metrics.values()) != {0.97} for run in runs)


def test_a_pickle_written_to_the_pipe_is_never_loaded(tmp_path: Path) -> None:
    """Break 1, the pipe: messages from a fit process are JSON; a pickle is a malformed message."""
    finished, _, marker, runs = score_in_subprocess(tmp_path, "pickle-message")
    assert finished.returncode == 1
    assert not [line for line in marker if line.startswith("unpickled")]
    assert runs and all(run.status == "failed" and "malformed message" in run.error for run in runs)


def test_a_model_class_defined_in_method_py_works_under_the_default_executor(tmp_path: Path) -> None:
    """Break 8: the model crosses as data, so its class need not be importable by the scoring process."""
    finished, _, _, runs = score_in_subprocess(tmp_path, "wrapper-model")
    assert finished.returncode == 0, finished.stderr
    assert len(runs) == len(SUITES["smoke"].seeds) and all(run.status == "ok" for run in runs)
    assert all(0.5 < run.metrics["acc"] <= 1.0 for run in runs)


def test_a_method_reaches_neither_the_task_nor_its_data_seed(tmp_path: Path) -> None:
    """Break 2: the backbone factory holds no Task, and the public generator at ``ctx.seed`` gives other data."""
    finished, _, marker, _ = score_in_subprocess(tmp_path, "peek-task")
    assert finished.returncode == 0, finished.stderr
    seeds = len(SUITES["smoke"].seeds)
    assert marker.count("task-in-factory False") == seeds
    assert marker.count("regenerated-data False") == seeds


def test_the_memory_limit_binds_the_processes_fit_starts_together(tmp_path: Path) -> None:
    """Break 9: three 0.7 GB subprocesses under a 2 GB limit; each alone would pass a per-process limit."""
    finished, _, _, runs = score_in_subprocess(tmp_path, "memory-hog", "--fit-memory-gb", "2")
    assert finished.returncode == 1
    assert runs and all("memory limit exceeded" in run.error and "processes it started" in run.error
                        for run in runs)
    assert not _processes_running("block = bytearray")


def test_the_time_limit_has_a_command_line_option(tmp_path: Path) -> None:
    """Break 9: ``--fit-seconds`` overrides the suite's limit (the hog sleeps 8 s)."""
    finished, _, _, runs = score_in_subprocess(tmp_path, "memory-hog", "--fit-seconds", "3", "--hp", "megabytes=1")
    assert finished.returncode == 1
    assert runs and all(run.error.startswith("time limit exceeded after 3 s") for run in runs)
    assert not _processes_running("block = bytearray")


@pytest.mark.parametrize("name", ["smoke", "ci"])
def test_tiny_suites_have_short_default_limits(name: str) -> None:
    """Break 9: a suite that trains in seconds does not grant a fit 4 hours and 16 GB."""
    limits = Limits.of(SUITES[name])
    assert limits.seconds <= 300 and limits.memory_gb <= 4


def test_a_damaged_cache_entry_is_reported_in_one_line(tmp_path: Path) -> None:
    """Break 12: a folder at a cache file's path is removed, the job recomputed, and the user told."""
    lines: list[str] = []
    cache = ResultCache(tmp_path, warn=lines.append)
    cache.path("ab" * 32).mkdir(parents=True)
    assert cache.load("ab" * 32) is None
    assert len(lines) == 1 and lines[0].startswith("warning: damaged cache entry") and "a folder" in lines[0]


def _processes_running(fragment: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if fragment.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_method_that_regenerates_its_data_on_public_seeds_is_rejected_on_secret_fresh_seeds(
        tmp_path: Path) -> None:
    """Break 2, end to end: on the ci suite's public seeds the guesser trains like the oracle; verify's fresh
    data seeds are secret, so there it is plain ERM and its claimed numbers do not reproduce."""
    marker = tmp_path / "marker.txt"
    environment = {**os.environ, "SBBENCH_HOSTILE_MARKER": str(marker),
                   "SBBENCH_SUBMISSIONS": str(HOSTILE)}
    common = ["--root", str(tmp_path / "board"), "--suite", "ci"]

    def sbbench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sbbench", *args], cwd=tmp_path, env=environment,
                              capture_output=True, text=True, timeout=900)

    scored = sbbench("score", "hostile-seed-guesser", *common, "--cache-dir", str(tmp_path / "cache"))
    assert scored.returncode == 0, scored.stderr
    seeds = len(SUITES["ci"].seeds)
    assert marker.read_text().splitlines() == ["guessed True"] * seeds  # the cheat works on public seeds
    verified = sbbench("verify", "hostile-seed-guesser", *common, "--fresh-seeds", "--seeds", "3")
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert "REJECTED" in verified.stdout
    assert marker.read_text().splitlines()[seeds:] == ["guessed False"] * 3  # and never on secret seeds
