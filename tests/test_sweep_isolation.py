"""Sweep trials are jobs: they run through the executors, with ``fit`` isolated under the limits, and are cached.

The methods here are submission folders written into ``tmp_path``, so the sweeping process never
imports them and the fit children are real processes with real limits.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from pathlib import Path

import pytest
from conftest import poisoned
from typer.testing import CliRunner

import sbbench
from sbbench import selection as selection_module
from sbbench import suite as suite_module
from sbbench.cache import ResultCache
from sbbench.cli import app
from sbbench.executors import JobSpec, execute_job
from sbbench.isolation import Limits
from sbbench.leaderboard.store import load_entries
from sbbench.methods.registry import MethodInfo, load_folder
from sbbench.runner import build_data
from sbbench.selection import SELECTION_METRIC
from sbbench.suite import Suite
from sbbench.sweep import Trial, run_sweep, trial_seed
from sbbench.tasks import Task

RECORDER = '''\
import os
import time

import torch
from torch import nn

from sbbench.methods import HParams, Method, Track, hparam


class Params(HParams):
    out: str = hparam({out!r})
    sleep: float = hparam({sleep!r})
    scale: float = hparam(1.0, low=0.5, high=2.0)


class Recorder(Method):
    """Appends its process id to ``out`` at every fit, sleeps ``sleep`` seconds, returns a linear model."""

    name = {name!r}
    track = Track.T1
    HParams = Params

    def fit(self, ctx):
        with open(self.hparams.out, "a") as handle:
            handle.write(f"{{os.getpid()}}\\n")
        time.sleep(self.hparams.sleep)
        torch.manual_seed(ctx.seed)
        return nn.Linear(ctx.input_shape[0], 2)
'''




def write_recorder(folder: Path, out: Path, sleep: float = 0.0, name: str = "recorder") -> MethodInfo:
    """A submission folder whose ``fit`` records its pid in ``out`` (one line per fit)."""
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_text(f'name = "{name}"\ntrack = "T1"\n')
    (folder / "method.py").write_text(textwrap.dedent(RECORDER.format(out=str(out), sleep=sleep, name=name)))
    return load_folder(folder)


@pytest.fixture
def one_task(tiny_suite: Suite) -> Suite:
    """The tiny suite (one task): a sweep on it runs one trial job per trial."""
    assert len(tiny_suite.tasks) == 1
    return tiny_suite


def fits(out: Path) -> list[str]:
    """The pids of the fits recorded so far."""
    return out.read_text().split() if out.exists() else []


def test_a_sweep_trial_fits_in_another_process_and_never_reads_the_test_split(
        tmp_path: Path, one_task: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "pids.txt"
    info = write_recorder(tmp_path / "recorder", out)
    assert info.cls is None  # a submission: its class is never imported here
    monkeypatch.setattr(selection_module, "build_data", lambda task, seed: poisoned(build_data(task, seed)))
    outcome = run_sweep(info, one_task, 2, 0, cache=ResultCache(tmp_path / "cache"))
    assert [trial.failed for trial in outcome.trials] == [False, False], [
        r.error for t in outcome.trials for r in t.results]
    assert outcome.trials[0].hparams["scale"] == 1.0 and outcome.trials[1].hparams["scale"] != 1.0
    pids = fits(out)
    assert len(pids) == 2 and str(os.getpid()) not in pids, "a trial's fit ran in the sweeping process"
    assert all(set(r.metrics) == {SELECTION_METRIC} and r.seed == trial_seed(0)
               for t in outcome.trials for r in t.results)


def test_a_trial_over_the_time_limit_fails_and_the_sweep_reports_it_like_score(
        tmp_path: Path, one_task: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(suite_module.SUITES, one_task.name, one_task)
    monkeypatch.setenv("SBBENCH_RESULTS", str(tmp_path / "results"))
    folder = tmp_path / "sleeper"
    write_recorder(folder, tmp_path / "pids.txt", sleep=120.0, name="sleeper")
    root, cache = tmp_path / "board", tmp_path / "cache"
    result = CliRunner().invoke(app, ["sweep", str(folder), "--trials", "1", "--suite", one_task.name,
                                      "--fit-seconds", "2", "--root", str(root), "--cache-dir", str(cache)])
    task = one_task.tasks[0].name
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    # score's format: "<task> seed <seed>: failed (<reason>)", then "N of M ... failed; the leaderboard was not changed"
    assert (f"trial 0 {task} seed {trial_seed(0)}: failed (time limit exceeded after 2 s (the suite's "
            "fit_seconds_limit; raise it with --fit-seconds))") in output
    assert "1 of 1 trials failed; the leaderboard was not changed. Finished trials are cached" in output
    assert "Traceback" not in result.output
    assert load_entries(root, one_task) == []
    [stored] = [json.loads(path.read_text())["result"] for path in cache.rglob("*.json")]
    assert stored["status"] == "failed" and stored["error"].startswith("time limit exceeded after 2 s")
    assert len(fits(tmp_path / "pids.txt")) == 1


def test_a_second_identical_sweep_reuses_every_trial_and_a_longer_one_runs_only_the_new_trials(
        tmp_path: Path, one_task: Suite) -> None:
    out = tmp_path / "pids.txt"
    info = write_recorder(tmp_path / "recorder", out)
    cache = ResultCache(tmp_path / "cache")
    first = run_sweep(info, one_task, 2, 0, cache=cache)
    assert len(fits(out)) == 2 and first.reused == 0 and first.jobs == 2

    seen: list[tuple[int, bool]] = []

    def on_trial(trial: Trial, reused: bool) -> None:
        seen.append((trial.index, reused))

    again = run_sweep(info, one_task, 2, 0, cache=cache, on_trial=on_trial)
    assert len(fits(out)) == 2, "a cached trial was trained again"
    assert again.reused == 2 and seen == [(0, True), (1, True)]
    assert [t.results for t in again.trials] == [t.results for t in first.trials]
    assert again.best == first.best and again.source == first.source

    longer = run_sweep(info, one_task, 3, 0, cache=cache)  # an interrupted 3-trial sweep resumes the same way
    assert len(fits(out)) == 3 and longer.reused == 2
    assert [t.hparams for t in longer.trials[:2]] == [t.hparams for t in first.trials]


def test_a_scored_jobs_cache_key_is_unchanged_and_a_trials_key_is_disjoint(
        tiny_task: Task, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sbbench, "__version__", "0.0.0-test")
    monkeypatch.setattr(Task, "content_hash", lambda self: "task-hash")
    job = JobSpec(hparams={"lr": 0.1, "k": 3}, task=tiny_task, seed=2)
    key = job.key("code-hash", "suite-hash")
    # The key scored jobs have always had: existing caches stay valid.
    payload = json.dumps(["0.0.0-test", "suite-hash", "code-hash", {"lr": 0.1, "k": 3}, "tiny-lms5", "task-hash", 2],
                         sort_keys=True)
    assert key == hashlib.sha256(payload.encode()).hexdigest()
    assert key == "99c4113d40587569b25c39ae917c7409927b9f8f87fcbb47b649b2e82b58c8f6"
    assert JobSpec(hparams={"lr": 0.1, "k": 3}, task=tiny_task, seed=2, holdout=None).key(
        "code-hash", "suite-hash") == key

    trial = JobSpec(hparams={"lr": 0.1, "k": 3}, task=tiny_task, seed=2, holdout=0.2)
    trial_key = trial.key("code-hash", "suite-hash")
    assert trial_key != key
    assert trial_key == trial.key("code-hash", "another-suite")  # a trial does not depend on the suite
    assert trial_key != JobSpec(hparams={"lr": 0.1, "k": 3}, task=tiny_task, seed=2, holdout=0.3).key(
        "code-hash", "suite-hash")
    assert trial_key != trial.key("other-code", "suite-hash")


def test_a_dask_worker_runs_a_trial_job_as_a_trial(tmp_path: Path, one_task: Suite) -> None:
    """``execute_job`` (what Dask workers run) trains a trial job isolated and scores it on its selection set."""
    out = tmp_path / "pids.txt"
    info = write_recorder(tmp_path / "recorder", out)
    trial = JobSpec(hparams=info.defaults, task=one_task.tasks[0], seed=trial_seed(0), holdout=0.2)
    result = execute_job(trial, info, Limits.of(one_task))
    assert result.status == "ok", result.error
    assert set(result.metrics) == {SELECTION_METRIC}
    assert fits(out) and str(os.getpid()) not in fits(out)
