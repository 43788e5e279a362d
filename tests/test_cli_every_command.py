"""Every command of ``sbbench --help``, run once end to end, each in its cheapest honest way.

The commands are discovered from the typer application: a command or subcommand without a
check in :data:`CHECKS` fails :func:`test_every_command_has_a_check`, so no new command goes
untested. Training commands use suite ``ci`` and task ``lms5-ci`` (about a second per job;
the fit process is started once and reused); Hub commands work offline against a local Hub
cache laid out as ``huggingface_hub`` writes it (the helpers of tests/test_hub.py and
tests/test_images_hub.py); ``images build`` reads the real MNIST/CIFAR-10 files of
``../shared/data`` and skips without them. Everything is written under a temporary folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import typer
from conftest import run_cli
from huggingface_hub import constants
from real_images import shared_data_dir
from test_hub import COMMIT, REPO_ID, lay_out_hub_cache
from test_images_hub import build_cache, subset  # noqa: F401  (subset: a fixture, requested by name)

from sbbench.cli import app
from sbbench.data.images.sources import DEFAULT_HUB
from sbbench.leaderboard.hub import plan_push
from sbbench.leaderboard.store import entry_path, read_entry, write_entry
from sbbench.suite import get_suite

CI = get_suite("ci")
TASK = "lms5-ci"
ORACLE = "oracle-randomize-s"


def command_paths(command: object, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Every runnable command under the click command ``command``, as ``"group sub"`` paths.

    A group counts as a command itself when it runs without a subcommand (``sbbench leaderboard``).
    """
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield " ".join(path)
        return
    if path and getattr(command, "invoke_without_command", False):
        yield " ".join(path)
    for name, sub in subcommands.items():
        yield from command_paths(sub, (*path, name))


@dataclass
class Workspace:
    """The temporary folder the commands run in (also the working directory) and what was scored there."""

    folder: Path
    scores: dict[str, tuple[int, str, str]]

    @property
    def board(self) -> Path:
        """The leaderboard root holding the ci-suite entries of ERM and the oracle."""
        return self.folder / "board"


@dataclass
class Check:
    """What a check gets: the workspace (scored on first use), a private folder and a monkeypatch."""

    request: pytest.FixtureRequest
    tmp: Path
    monkeypatch: pytest.MonkeyPatch

    @property
    def ws(self) -> Workspace:
        return self.request.getfixturevalue("scored")

    def cli(self, *args: str, code: int = 0) -> str:
        """Run ``sbbench args`` in this process, assert its exit code, return stdout and stderr together."""
        exit_code, out, err = run_cli(*args)
        assert exit_code == code, f"sbbench {' '.join(args)} exited {exit_code}:\n{out}\n{err}"
        return out + err

    def offline_hub(self) -> Path:
        """An empty local Hub cache, offline; returns its folder."""
        cache = self.tmp / "hub-cache"
        self.monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
        self.monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        return cache


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary working directory with its own results folder, result cache and data cache."""
    folder = tmp_path_factory.mktemp("every-command")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for variable, name in (("SBBENCH_RESULTS", "results"), ("SBBENCH_CACHE", "cache"),
                               ("SBBENCH_DATA_CACHE", "data-cache")):
            patch.setenv(variable, str(folder / name))
        for variable in ("SBBENCH_SUBMISSIONS", "SBBENCH_DATA_DIR", "SBBENCH_DEVICE"):
            patch.delenv(variable, raising=False)
        patch.setenv("SBBENCH_VERIFIER", "test-every-command")
        yield folder


@pytest.fixture(scope="module")
def scored(workspace: Path) -> Workspace:
    """``sbbench score`` of ERM and the oracle on suite ci into ``board/``: the entries later commands read."""
    scores = {name: run_cli("score", name, "--suite", "ci", "--root", str(workspace / "board"))
              for name in ("erm", ORACLE)}
    return Workspace(folder=workspace, scores=scores)


@pytest.fixture
def check(request: pytest.FixtureRequest, workspace: Path, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Check:
    return Check(request=request, tmp=tmp_path, monkeypatch=monkeypatch)


# --- the checks, one per command --------------------------------------------------------------------------------


def check_tasks(c: Check) -> None:
    output = c.cli("tasks")  # a terminal table 80 columns wide: long cells are folded, these are not
    assert "sbbench tasks" in output and f"\n {TASK} " in output and "(32,2)-FCN" in output


def check_suites(c: Check) -> None:
    output = c.cli("suites")
    assert "sbbench suites" in output and f"\n {CI.label} " in output and CI.content_hash()[:8] in output


def check_methods(c: Check) -> None:
    output = c.cli("methods")
    assert "sbbench methods" in output and "│ erm " in output and f"│ {ORACLE} " in output and "built-in" in output


def check_run(c: Check) -> None:
    out = c.tmp / "runs.json"
    output = c.cli("run", "erm", "--task", TASK, "--seeds", "1", "--out", str(out))
    [record] = json.loads(out.read_text())
    assert (record["method"], record["task"], record["seed"], record["status"]) == ("erm", TASK, 0, "ok")
    assert record["metrics"]["acc"] > 0.9 and "training log:" in output


def check_score(c: Check) -> None:
    for name in ("erm", ORACLE):
        code, out, err = c.ws.scores[name]
        assert code == 0, err
        assert f"{name}: score " in out and "0 of 4 jobs reused from the cache" in out
        assert read_entry(entry_path(c.ws.board, CI, name)).method.name == name
    assert "next: sbbench leaderboard --suite ci" in c.ws.scores["erm"][1]


def check_compare(c: Check) -> None:
    output = c.cli("compare", ORACLE, "erm", "--suite", "ci", "--root", str(c.ws.board))
    assert f"{ORACLE} - erm on ci-v1 (paired over shared seeds)" in output
    assert "│ lms5-ci │ acc " in output and "│ lms5-ci │ auc " in output
    assert f"erm beats {ORACLE} (higher, p < 0.05) on: lms5-ci acc" in output


def check_plot(c: Check) -> None:
    output = c.cli("plot", "erm", "--task", TASK, "--out", str(c.tmp), "--format", "svg")
    names = sorted(path.name for path in c.tmp.iterdir())
    assert names == [f"erm_{TASK}_seed0_{kind}.svg" for kind in ("boundary", "logits", "profile")]
    assert all((c.tmp / name).read_text().lstrip().startswith("<?xml") for name in names)
    assert output.count("wrote ") == 3


def check_sweep(c: Check) -> None:
    root = c.tmp / "board"
    cache = c.ws.folder / "cache"  # the score's cache: the chosen defaults need no new training
    output = c.cli("sweep", "erm", "--trials", "1", "--suite", "ci", "--root", str(root), "--cache-dir", str(cache))
    assert "chosen: trial 0 {}" in output and "4 of 4 jobs reused from the cache" in output
    assert read_entry(entry_path(root, CI, "erm")).primary_score == read_entry(
        entry_path(c.ws.board, CI, "erm")).primary_score


def check_verify(c: Check) -> None:
    board = Path(shutil.copytree(c.ws.board, c.tmp / "board"))
    output = c.cli("verify", "erm", "--suite", "ci", "--root", str(board))
    assert "erm on ci-v1: ACCEPTED (rule identical)" in output


def check_data_export(c: Check) -> None:
    out = c.tmp / "lms5-ci.npz"
    output = c.cli("data", "export", TASK, "--seed", "0", "--out", str(out))
    assert "2000 train, 500 test, d=10" in output
    with np.load(out) as data:
        assert data["x_train"].shape == (2000, 10) and data["y_test"].shape == (500,)
        assert data["block_S"].tolist() == [0]


def check_leaderboard(c: Check) -> None:
    output = c.cli("leaderboard", "--suite", "ci", "--root", str(c.ws.board), "--format", "csv")
    rows = output.splitlines()
    assert rows[0].startswith("method,") and sorted(row.split(",")[0] for row in rows[1:]) == ["erm", ORACLE]


def check_leaderboard_report(c: Check) -> None:
    output = c.cli("leaderboard", "report", "--suite", "ci", "--root", str(c.ws.board), "--baseline", "erm")
    assert f"| {ORACLE} " in output and "s_rand_auc" in output


def check_leaderboard_html(c: Check) -> None:
    output = c.cli("leaderboard", "html", "--out", str(c.tmp / "web"), "--suite", "ci", "--root", str(c.ws.board))
    assert "for 2 entries (ci-v1)" in output
    assert (c.tmp / "web" / "index.html").is_file() and (c.tmp / "web" / "ci-v1" / "entries" / "erm.html").is_file()


def check_leaderboard_push(c: Check) -> None:
    only_erm = c.tmp / "hub-side"
    write_entry(only_erm, CI, read_entry(entry_path(c.ws.board, CI, "erm")))
    lay_out_hub_cache(plan_push(only_erm, None, [CI]), c.offline_hub())
    output = c.cli("leaderboard", "push", "--repo", REPO_ID, "--root", str(c.ws.board), "--suite", "ci",
                   "--create-pr", "--dry-run")
    lines = output.splitlines()
    assert lines[0] == f"on top of {REPO_ID} at {COMMIT[:12]}: 1 new or changed entry"
    assert f"add ci-v1/entries/{ORACLE}.json" in output and lines[-1] == "dry run: nothing was sent"


def check_leaderboard_pull(c: Check) -> None:
    snapshot = lay_out_hub_cache(plan_push(c.ws.board, None, [CI]), c.offline_hub())
    output = c.cli("leaderboard", "pull", "--repo", REPO_ID)
    assert f"at revision {COMMIT[:12]} is in the local Hub cache" in output and "ci-v1: 2 entries" in output
    assert str(snapshot) in output.replace("\n", "")


def check_suite_audit(c: Check) -> None:
    # ci is a test suite, not a benchmark: in its 5 epochs the oracle does not learn lms5-ci (clean accuracy
    # about 0.5, the rule asks for 0.97), so the real entries give the documented verdict "not admitted", exit 1.
    output = c.cli("suite", "audit", "ci", "--root", str(c.ws.board), "--format", "markdown", code=1)
    [row] = [line for line in output.splitlines() if line.startswith(f"| {TASK} |")]
    assert row.startswith(f"| {TASK} | noise-free | auc 0.") and row.endswith("| no 0/4 |")
    assert output.splitlines()[-1] == f"not admitted: {TASK}"


def check_images_fetch(c: Check) -> None:
    build_cache(c.offline_hub(), c.request.getfixturevalue("subset"), DEFAULT_HUB)
    output = c.cli("images", "fetch")
    for dataset, repo in DEFAULT_HUB.items():
        for split, name in repo.files.items():
            assert f"{dataset} {split}: {repo.repo_id}@{repo.revision[:12]} -> " in output
            assert name in output.replace("\n", "")


def check_images_build(c: Check) -> None:
    output = c.cli("images", "build", "--task", "mnist-cifar-smoke", "--seeds", "1", "--data-dir",
                   str(shared_data_dir()))
    assert "mnist-cifar-smoke seed 0: train 1,000, test 500, pool 200, val 100" in output
    assert any((c.ws.folder / "data-cache" / "images").glob("*.npz"))


CHECKS: dict[str, Callable[[Check], None]] = {
    "tasks": check_tasks,
    "suites": check_suites,
    "methods": check_methods,
    "data export": check_data_export,
    "run": check_run,
    "score": check_score,
    "compare": check_compare,
    "plot": check_plot,
    "sweep": check_sweep,
    "verify": check_verify,
    "leaderboard": check_leaderboard,
    "leaderboard report": check_leaderboard_report,
    "leaderboard html": check_leaderboard_html,
    "leaderboard push": check_leaderboard_push,
    "leaderboard pull": check_leaderboard_pull,
    "suite audit": check_suite_audit,
    "images fetch": check_images_fetch,
    "images build": check_images_build,
}


def test_every_command_has_a_check() -> None:
    commands = set(command_paths(typer.main.get_command(app)))
    assert commands - CHECKS.keys() == set(), "add a check of these commands to CHECKS"
    assert CHECKS.keys() - commands == set(), "CHECKS names commands that no longer exist"


@pytest.mark.parametrize("command", list(CHECKS))
def test_command_runs(command: str, check: Check) -> None:
    CHECKS[command](check)
