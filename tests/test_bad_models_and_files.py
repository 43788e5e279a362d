"""The trust boundary: bad hyperparameters, bad models and bad files are refused or recovered from, one line each.

Hyperparameters are finite, a model's metrics are finite (else the job fails with their names),
a model has usable input gradients, one broken entry file does not take the leaderboard down,
a folder at a cache file's path is a damaged cache entry, and processes started by ``fit`` die
with the fit child's process group.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from sbbench.cache import ResultCache
from sbbench.cli import main
from sbbench.isolation import IsolatedFit, Limits
from sbbench.leaderboard.entry import Entry
from sbbench.leaderboard.store import EntryError, build_entry, entry_path, load_entries, suite_dir, write_entry
from sbbench.methods.base import Track
from sbbench.methods.registry import HParamsError, load_folder, resolve_method
from sbbench.results import RunResult
from sbbench.runner import InvalidModel, build_data, check_model, fit_in_process, run_job, train_context
from sbbench.suite import SUITES, Suite
from sbbench.tasks import Task

CI = SUITES["ci"]
SUBMISSIONS = Path(__file__).resolve().parent.parent / "submissions"


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["sbbench", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


# --- 1. hyperparameters are finite ---------------------------------------------------------------


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_hparams_refuse_non_finite_floats(value: float) -> None:
    info = resolve_method("example-mixup", submissions_dir=SUBMISSIONS)
    with pytest.raises(HParamsError, match=r"alpha.*finite"):
        info.configure({"alpha": value})  # validated by the method's HParams in a describing child


def test_cli_refuses_an_infinite_hyperparameter_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SBBENCH_SUBMISSIONS", str(SUBMISSIONS))
    code, _, err = run_cli(monkeypatch, capsys, "run", "example-mixup", "--task", "lms5-ci", "--hp",
                           "alpha=Infinity")
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("error: hyperparameter alpha of example-mixup: "), err


# --- 2. a non-finite metric fails the job -----------------------------------------------------------


class NanForLargeBatches(nn.Module):
    """A trained model whose logits are NaN for batches larger than the 8 rows ``check_model`` uses."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        return logits * float("nan") if len(x) > 8 else logits


def test_a_model_with_nan_metrics_is_a_failed_job_naming_them(tiny_task: Task) -> None:
    info = resolve_method("erm", submissions_dir=None)
    result = run_job(info, info.defaults, tiny_task, 0, device=torch.device("cpu"),
                     fit=lambda info, hparams, ctx: NanForLargeBatches(fit_in_process(info, hparams, ctx)))
    assert result.status == "failed", result.metrics
    assert result.error is not None and "not finite" in result.error and "auc=nan" in result.error, result.error
    assert result.metrics == {}


# --- 3. check_model requires a usable input gradient ---------------------------------------------------


class Detaching(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.detach())


class ZeroGradient(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.detach()) + 0.0 * x.flatten(1).sum(1, keepdim=True)


class NanGradient(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + 0.0 * torch.sqrt(x - x).flatten(1).sum(1, keepdim=True)  # d sqrt(0) = inf: NaN


@pytest.mark.parametrize(("wrapper", "reason"), [
    (Detaching, "do not depend on its input"),
    (ZeroGradient, "is zero"),
    (NanGradient, "NaN or infinite"),
])
def test_a_model_without_a_usable_input_gradient_is_invalid(wrapper: type[nn.Module], reason: str,
                                                            tiny_task: Task) -> None:
    model = tiny_task.make_backbone(build_data(tiny_task, 0).space.input_shape)
    x = build_data(tiny_task, 0).train.x[:8]
    check_model(model, x)  # the plain backbone passes
    with pytest.raises(InvalidModel, match=reason):
        check_model(wrapper(model), x)

    info = resolve_method("erm", submissions_dir=None)
    result = run_job(info, info.defaults, tiny_task, 0, device=torch.device("cpu"),
                     fit=lambda info, hparams, ctx: wrapper(fit_in_process(info, hparams, ctx)))
    assert result.status == "failed" and reason in result.error, result.error


@pytest.mark.parametrize("name", ["erm", "oracle-randomize-s", "adv-train-l2"])
def test_built_in_models_pass_the_gradient_check_on_the_ci_suite(name: str) -> None:
    info = resolve_method(name, submissions_dir=None)
    result = run_job(info, info.defaults, CI.tasks[0], CI.seeds[0], device=torch.device("cpu"))
    assert result.status == "ok", result.error


# --- 4. one bad entry file does not take the leaderboard down -------------------------------------------


def erm_entry(suite: Suite) -> Entry:
    info = resolve_method("erm", submissions_dir=None)
    hparams = info.defaults
    metrics = dict.fromkeys((*suite.table_metrics, suite.primary_metric), 0.5)
    runs = [RunResult(method="erm", method_version="1", track="T0", code_hash=info.code_hash, hparams=hparams,
                      task=task.name, task_hash=task.content_hash(), seed=seed, status="ok",
                      metrics={metric: value + 0.01 * seed for metric, value in metrics.items()})
            for task in suite.tasks for seed in suite.seeds]
    return build_entry(info, hparams, "defaults", suite, runs, "cpu")


def test_a_broken_entry_file_is_skipped_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "board"
    write_entry(root, CI, erm_entry(CI))
    broken = entry_path(root, CI, "broken")
    broken.write_text("{ not json")
    null_score = json.loads(erm_entry(CI).model_dump_json())
    null_score["primary_score"] = None
    entry_path(root, CI, "nullscore").write_text(json.dumps(null_score))

    problems: list[EntryError] = []
    assert [item.entry.method.name for item in load_entries(root, CI, problems)] == ["erm"]
    assert sorted(str(p).split(":")[0] for p in problems) == sorted(
        [str(broken), str(entry_path(root, CI, "nullscore"))])
    with pytest.raises(EntryError):  # without a problems list the caller asked for strictness
        load_entries(root, CI)

    code, out, err = run_cli(monkeypatch, capsys, "leaderboard", "--suite", "ci", "--root", str(root),
                             "--format", "csv")
    assert code == 0, err
    assert "erm" in out and "Traceback" not in err
    assert err.count("warning: skipped an entry file") == 2 and str(broken) in err, err

    # a later write regenerates the tables from the readable entries instead of failing
    other = erm_entry(CI)
    other = other.model_copy(update={"method": other.method.model_copy(update={"name": "erm-again"})})
    skipped: list[EntryError] = []
    write_entry(root, CI, other, skipped)
    assert len(skipped) == 2
    csv = (suite_dir(root, CI) / "leaderboard.csv").read_text()
    assert "erm-again" in csv and "broken" not in csv


@pytest.mark.parametrize("score", [float("nan"), float("inf"), None])
def test_an_entry_never_validates_with_a_non_finite_score(score: float | None) -> None:
    raw = json.loads(erm_entry(CI).model_dump_json())
    raw["primary_score"] = score
    with pytest.raises(ValidationError):
        Entry.model_validate(raw)


# --- 5. a folder at a cache file's path ---------------------------------------------------------------


def test_a_folder_at_a_cache_path_is_a_damaged_entry_and_is_replaced(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    result = RunResult(method="erm", method_version="1", track="T0", code_hash="c", hparams={}, task="t",
                       task_hash="h", seed=0, status="ok", metrics={"acc": 1.0})
    key = "ab" + "0" * 62
    path = cache.path(key)
    (path / "inside").mkdir(parents=True)
    assert cache.load(key) is None and not path.exists()
    cache.store(key, result)
    assert cache.load(key) == result

    other = "cd" + "0" * 62
    (cache.path(other) / "inside").mkdir(parents=True)
    cache.store(other, result)  # store without a load first
    assert cache.load(other) == result


# --- 6. processes started by fit die with the fit child ------------------------------------------------

SPAWNER = '''\
import subprocess
import time
from pathlib import Path

from sbbench.methods import HParams, Method, Track, hparam


class Params(HParams):
    out: str = hparam("")


class Spawner(Method):
    """Starts a long-lived grandchild, writes its pid, then overruns the time limit."""

    name = "spawner"
    track = Track.T0
    HParams = Params

    def fit(self, ctx):
        child = subprocess.Popen(["sleep", "300"])
        Path(self.hparams.out).write_text(str(child.pid))
        time.sleep(3600)
'''


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed process its dead parent left unreaped is a zombie: gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_grandchild_of_a_fit_that_overruns_its_time_limit_is_killed(tmp_path: Path, tiny_task: Task) -> None:
    folder = tmp_path / "spawner"
    folder.mkdir()
    (folder / "submission.toml").write_text('name = "spawner"\ntrack = "T0"\n')
    (folder / "method.py").write_text(textwrap.dedent(SPAWNER))
    info = load_folder(folder)
    pid_file = tmp_path / "grandchild.pid"
    hparams = info.configure({"out": str(pid_file)})
    data = build_data(tiny_task, 0)
    ctx = train_context(tiny_task, data, Track.T0, 0, torch.device("cpu"), lambda message: None)
    fitter = IsolatedFit(limits=Limits(seconds=2, memory_gb=None))
    with pytest.raises(RuntimeError, match="time limit exceeded"):
        fitter(info, hparams, ctx)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _running(pid):
        os.kill(pid, 9)
        pytest.fail(f"the fit's grandchild {pid} outlived the job")
