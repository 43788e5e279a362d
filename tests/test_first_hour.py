"""A new user's first hour (README and docs only): every step works and nothing committed is touched.

Each test stands for one finding of that first hour and failed before it was fixed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sbbench.cli.common import RESULTS_ENV
from sbbench.leaderboard.compare import ACCURACY_GUARD, compare_entries
from sbbench.leaderboard.store import EntryError, build_entry, read_entry, write_entry
from sbbench.methods.registry import RegistryError, resolve_method
from sbbench.results import RunResult
from sbbench.suite import SUITES

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "submissions" / "example-mixup"


def sbbench(*args: str, cwd: Path, columns: int = 100, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != RESULTS_ENV}
    environment |= {"OMP_NUM_THREADS": "1", "SBBENCH_CACHE": str(cwd / "cache"), "COLUMNS": str(columns), **env}
    return subprocess.run([sys.executable, "-m", "sbbench", *args], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=600)


def copy_folder(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


# 1. `sbbench tasks` crashed on the image tasks.
def test_tasks_lists_synthetic_and_image_tasks(tmp_path: Path) -> None:
    done = sbbench("tasks", cwd=tmp_path, columns=200)
    assert done.returncode == 0, done.stderr
    assert "lms5" in done.stdout and "mnist-cifar-control" in done.stdout and "CIFAR-10 half" in done.stdout


# 2. The README's main command rewrote the committed leaderboard.
def test_score_writes_the_users_results_folder_and_never_the_committed_leaderboard(tmp_path: Path) -> None:
    (tmp_path / "leaderboard").mkdir()
    done = sbbench("score", "erm", "--suite", "ci", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sbbench-results" / "ci-v1" / "entries" / "erm.json").is_file()
    assert list((tmp_path / "leaderboard").iterdir()) == []
    mixup = sbbench("score", str(EXAMPLE), "--suite", "ci", cwd=tmp_path)
    assert mixup.returncode == 0, mixup.stderr
    assert "next: sbbench compare example-mixup erm --suite ci" in " ".join(mixup.stdout.split())
    published = sbbench("score", "erm", "--suite", "ci", "--root", "leaderboard", cwd=tmp_path)
    assert published.returncode == 0, published.stderr
    assert (tmp_path / "leaderboard" / "ci-v1" / "entries" / "erm.json").is_file()
    # 4. The printed score says what it means and what to do next.
    text = " ".join(done.stdout.split())
    assert "0.5 = the model ignores everything but S" in text
    assert "next: sbbench leaderboard --suite ci --root sbbench-results" in text


def test_readme_states_the_time_meaning_and_next_step_of_its_main_command() -> None:
    readme = (REPO / "README.md").read_text()
    intro = readme.split("## What it measures")[0]
    assert re.search(r"takes about \d+", intro), "the main command's expected time on 2 cores"
    assert "0 means the model" in intro and "sbbench compare" in intro and "sbbench-results/" in intro


# 5. Terminal tables were cut at 120 columns (synthetic-v2's table: tests/test_v2_views.py).
@pytest.mark.parametrize("suite", ["synthetic-v1", "images-v1"])
def test_leaderboard_table_fits_100_columns_without_cutting_a_name(tmp_path: Path, suite: str) -> None:
    done = sbbench("leaderboard", "--suite", suite, "--root", str(REPO / "leaderboard"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= 100 and "…" not in done.stdout
    names = {path.stem for path in (REPO / "leaderboard" / suite / "entries").glob("*.json")}
    shown = {line.split()[0] for line in lines if line.strip() and line.split()[0] in names}
    assert shown == names
    wide = sbbench("leaderboard", "--suite", suite, "--root", str(REPO / "leaderboard"), "--metrics", "acc",
                   cwd=tmp_path)
    assert wide.returncode == 0 and "acc" in wide.stdout


def test_methods_table_never_cuts_a_source(tmp_path: Path) -> None:
    done = sbbench("methods", cwd=tmp_path, columns=80)
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout and max(map(len, done.stdout.splitlines())) <= 80


# 6. ctx.log messages were overwritten by the progress bar and kept nowhere.
def test_training_messages_are_kept_in_a_log_file(tmp_path: Path) -> None:
    done = sbbench("run", "erm", "--task", "lms5-ci", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "sbbench-results" / "logs" / "erm_lms5-ci.log").read_text()
    assert re.search(r"lms5-ci seed 0: epoch 1: loss \d", log)


# 7. Name clashes: a copied folder overwrote another method's entry; a clash broke every command.
def test_a_copied_folder_with_the_same_name_is_refused_naming_both_folders(tmp_path: Path) -> None:
    submissions = tmp_path / "submissions"
    copy_folder(EXAMPLE, submissions / "example-mixup")
    copy = copy_folder(EXAMPLE, submissions / "my-copy")
    with pytest.raises(RegistryError) as caught:
        resolve_method(str(copy), submissions_dir=submissions)
    assert "example-mixup" in str(caught.value) and "submission.toml" in str(caught.value)
    assert resolve_method("erm", submissions_dir=submissions).name == "erm", "only that name is blocked"


def test_a_folder_may_not_take_a_builtin_name(tmp_path: Path) -> None:
    folder = copy_folder(EXAMPLE, tmp_path / "impostor")
    toml = folder / "submission.toml"
    toml.write_text(toml.read_text().replace('name = "example-mixup"', 'name = "erm"'))
    with pytest.raises(RegistryError, match=r"built-in sbbench\.methods\.erm:ERM"):
        resolve_method(str(folder), submissions_dir=None)


def test_an_entry_belongs_to_its_source(tmp_path: Path) -> None:
    suite = SUITES["ci"]
    erm = resolve_method("erm", submissions_dir=None)
    run = RunResult(method="erm", method_version="1", track="T0", code_hash=erm.code_hash, hparams={},
                    task="lms5-ci", task_hash=suite.tasks[0].content_hash(), seed=0, status="ok",
                    metrics={"acc": 0.9, "s_rand_auc": 0.5})
    write_entry(tmp_path, suite, build_entry(erm, {}, "defaults", suite, [run], "cpu"))
    impostor = build_entry(erm, {}, "defaults", suite, [run], "cpu")
    impostor = impostor.model_copy(update={"method": impostor.method.model_copy(update={"source": "folder x"})})
    with pytest.raises(EntryError, match="is the entry of built-in"):
        write_entry(tmp_path, suite, impostor)
    assert read_entry(tmp_path / "ci-v1" / "entries" / "erm.json").method.source.startswith("built-in")


def test_a_clash_blocks_only_its_name_and_methods_shows_it(tmp_path: Path) -> None:
    submissions = tmp_path / "submissions"
    copy_folder(EXAMPLE, submissions / "example-mixup")
    copy_folder(EXAMPLE, submissions / "again")
    listing = sbbench("methods", cwd=tmp_path, columns=200)
    assert listing.returncode == 0, listing.stderr
    assert "name clash" in listing.stdout and "claimed twice" in listing.stderr
    blocked = sbbench("run", "example-mixup", "--task", "lms5-ci", cwd=tmp_path)
    assert blocked.returncode == 2 and "claimed twice" in blocked.stderr
    assert sbbench("run", "erm", "--task", "lms5-ci", cwd=tmp_path).returncode == 0


def test_submissions_are_found_from_a_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_folder(EXAMPLE, tmp_path / "submissions" / "example-mixup")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "deep" / "er")
    assert resolve_method("example-mixup").folder.resolve() == (tmp_path / "submissions" / "example-mixup")


# 8. compare defaulted to the synthetic suite and praised a method that had lost its accuracy.
def test_compare_finds_the_suite_both_entries_have_and_explains_a_missing_one(tmp_path: Path) -> None:
    root = str(REPO / "leaderboard")
    default = sbbench("compare", "erm", "erm", "--root", root, cwd=tmp_path, columns=200)
    assert default.returncode == 0 and "on synthetic-v2" in default.stdout, "the current synthetic when both have it"
    for suite in ("smoke", "ci"):
        target = tmp_path / "lb" / f"{suite}-v1" / "entries"
        target.mkdir(parents=True)
        shutil.copy(REPO / "leaderboard" / f"{suite}-v1" / "entries" / "erm.json", target)
    several = sbbench("compare", "erm", "erm", "--root", "lb", cwd=tmp_path)
    assert several.returncode == 2 and "choose one with --suite" in several.stderr
    missing = sbbench("compare", "example-mixup", "erm", "--root", root, cwd=tmp_path, columns=300)
    assert missing.returncode == 2 and "sbbench score example-mixup --suite" in missing.stderr
    smoke = sbbench("compare", "erm", "erm", "--suite", "smoke", "--root", root, cwd=tmp_path)
    assert smoke.returncode == 0, smoke.stderr


def test_compare_does_not_call_a_gain_bought_with_accuracy_a_win() -> None:
    erm = read_entry(REPO / "leaderboard" / "synthetic-v1" / "entries" / "erm.json")
    broken_runs = [run.model_copy(update={"metrics": {**run.metrics, "acc": run.metrics["acc"] - 0.4,
                                                      "s_swap_acc": run.metrics["s_swap_acc"] + 0.4}})
                   for run in erm.runs]
    broken = erm.model_copy(update={"runs": broken_runs, "method": erm.method.model_copy(update={"name": "bad"})})
    sentences = compare_entries(broken, erm, SUITES["synthetic"]).sentences
    assert not any(s.startswith("bad beats erm") and "s_swap_acc" in s for s in sentences)
    assert any("bad is higher on" in s and f"more than {ACCURACY_GUARD} lower" in s for s in sentences)


# 9. No `--version`; the ci suite was missing from the docs.
def test_version_and_every_suite_is_documented(tmp_path: Path) -> None:
    import sbbench as package

    done = sbbench("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"sbbench {package.__version__}"
    docs = (REPO / "docs" / "suites-and-metrics.md").read_text()
    assert all(f"| `{name}` |" in docs for name in SUITES)
    for suite in ("smoke", "ci"):
        assert (REPO / "leaderboard" / f"{suite}-v1" / "entries" / "erm.json").is_file(), \
            f"a committed ERM entry for {suite}, to compare a smoke score with"


def test_entry_point_rule_is_documented() -> None:
    text = " ".join((REPO / "docs" / "writing-a-method.md").read_text().split())
    assert "The entry point's key must equal the class's `name` attribute" in text
