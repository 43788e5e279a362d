"""The admission rule (sbbench.leaderboard.admission) and `sbbench suite audit`, on fabricated entries."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

from sbbench.leaderboard.admission import audit
from sbbench.leaderboard.store import build_entry, entry_path
from sbbench.methods.registry import resolve_method
from sbbench.results import RunResult
from sbbench.suite import IMAGES_CONTROL_V2, IMAGES_V2, SYNTHETIC_V2, Suite


def audit_cli(*args: str) -> tuple[int, str]:
    code, out, err = run_cli("suite", "audit", *args)
    return code, out + err

GOOD_ERM = {"acc": 1.0, "s_rand_auc": 0.50, "s_rand_acc": 0.5}
GOOD_ORACLE = {"acc": 1.0, "s_rand_auc": 1.0, "s_rand_acc": 1.0}
NOISY_ERM = {"acc": 0.948, "s_rand_auc": 0.50, "s_rand_acc": 0.5}


def write_entry(root: Path, suite: Suite, name: str, metrics_of: dict[tuple[str, int], dict[str, float]]) -> None:
    """An entry of ``name`` whose run of (task, seed) has ``metrics_of[(task, seed)]`` (plus s_rand_wga)."""
    info = resolve_method(name, submissions_dir=None)
    runs = [RunResult(method=name, method_version=info.version, track=info.track.value, code_hash=info.code_hash,
                      hparams=info.defaults, task=task.name, task_hash=task.content_hash(), seed=seed, status="ok",
                      metrics={"s_rand_wga": 0.5, **metrics_of[(task.name, seed)]})
            for task in suite.tasks for seed in suite.seeds]
    path = entry_path(root, suite, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_entry(info, info.defaults, "defaults", suite, runs, "cpu").model_dump_json())


def admissible(suite: Suite) -> tuple[dict, dict]:
    """ERM and oracle metrics that admit every task of ``suite``."""
    erm, oracle = {}, {}
    for task in suite.tasks:
        for seed in suite.seeds:
            erm[(task.name, seed)] = dict(NOISY_ERM if task.name == "noisy-lms7" else GOOD_ERM)
            oracle[(task.name, seed)] = dict(GOOD_ORACLE)
    return erm, oracle


def test_every_task_is_admitted_when_both_parts_hold_on_every_seed(tmp_path: Path) -> None:
    erm, oracle = admissible(SYNTHETIC_V2)
    write_entry(tmp_path, SYNTHETIC_V2, "erm", erm)
    write_entry(tmp_path, SYNTHETIC_V2, "oracle-randomize-s", oracle)
    admissions = audit(tmp_path, SYNTHETIC_V2)
    assert [a.task for a in admissions] == [t.name for t in SYNTHETIC_V2.tasks]
    assert all(a.admitted for a in admissions)
    assert {a.task: a.kind for a in admissions}["noisy-lms7"] == "noisy S"
    assert {a.task: a.kind for a in admissions}["spurious-lms7"] == "noise-free"


@pytest.mark.parametrize(("who", "task", "change", "why"), [
    ("erm", "lms7", {"s_rand_auc": 0.551}, "ERM uses S^c on one seed: no bias to measure"),
    ("erm", "noisy-lms7", {"acc": 0.971}, "ERM's accuracy is within 0.03 of the ceiling"),
    ("oracle-randomize-s", "ms57", {"acc": 0.969}, "the oracle misses 0.97 clean accuracy on one seed"),
    ("oracle-randomize-s", "adv-ms57", {"s_rand_acc": 0.949}, "the oracle misses 0.95 S-randomized accuracy"),
])
def test_a_task_failing_one_part_on_one_seed_is_not_admitted(tmp_path: Path, who: str, task: str, change: dict,
                                                             why: str) -> None:
    erm, oracle = admissible(SYNTHETIC_V2)
    (erm if who == "erm" else oracle)[(task, 3)].update(change)
    write_entry(tmp_path, SYNTHETIC_V2, "erm", erm)
    write_entry(tmp_path, SYNTHETIC_V2, "oracle-randomize-s", oracle)
    rejected = [a.task for a in audit(tmp_path, SYNTHETIC_V2) if not a.admitted]
    assert rejected == [task], why


def test_audit_command_prints_the_table_and_fails_when_a_task_is_not_admitted(tmp_path: Path) -> None:
    erm, oracle = admissible(SYNTHETIC_V2)
    write_entry(tmp_path, SYNTHETIC_V2, "erm", erm)
    write_entry(tmp_path, SYNTHETIC_V2, "oracle-randomize-s", oracle)
    code, output = audit_cli("synthetic", "--root", str(tmp_path))
    assert code == 0, output
    assert "every task of synthetic-v2 is admitted" in output
    _, markdown = audit_cli("synthetic", "--root", str(tmp_path), "--format", "markdown")
    assert markdown.count("| yes 5/5 |") == len(SYNTHETIC_V2.tasks)

    oracle[("lms5", 0)]["acc"] = 0.5
    write_entry(tmp_path, SYNTHETIC_V2, "oracle-randomize-s", oracle)
    code, output = audit_cli("synthetic", "--root", str(tmp_path))
    assert code == 1
    assert "not admitted: lms5" in output


def test_audit_without_entries_admits_nothing_and_says_why(tmp_path: Path) -> None:
    code, output = audit_cli("synthetic", "--root", str(tmp_path))
    assert code == 1
    assert "no readable erm entry" in output


def write_image_entries(root: Path, control_acc: float, oracle_change: dict[tuple[str, int], dict[str, float]]) -> None:
    """ERM and oracle entries of images v2 and ERM's on its controls (accuracy ``control_acc`` on every seed)."""
    write_entry(root, IMAGES_CONTROL_V2, "erm", {(t.name, seed): {"acc": control_acc} for t in IMAGES_CONTROL_V2.tasks
                                                 for seed in IMAGES_CONTROL_V2.seeds})
    oracle = {(t.name, seed): {"acc": 0.83, "s_rand_acc": 0.83, **oracle_change.get((t.name, seed), {})}
              for t in IMAGES_V2.tasks for seed in IMAGES_V2.seeds}
    write_entry(root, IMAGES_V2, "erm", {key: dict(GOOD_ERM) for key in oracle})
    write_entry(root, IMAGES_V2, "oracle-randomize-s", oracle)


def test_image_tasks_are_admitted_against_their_cifar_only_control(tmp_path: Path) -> None:
    write_image_entries(tmp_path, 0.84, {("mnist-cifar-b", 2): {"acc": 0.8201}})
    admissions = audit(tmp_path, IMAGES_V2)
    assert all(a.admitted for a in admissions), "0.83 and 0.8201 are within 0.02 of the control's 0.84"
    assert admissions[0].seeds[0].control_acc == pytest.approx(0.84)
    code, output = audit_cli("images", "--root", str(tmp_path))
    assert code == 0, output
    assert "control" in output and "CIFAR-only control in images-control-v2" in " ".join(output.split())


@pytest.mark.parametrize("change", [{"acc": 0.819}, {"s_rand_acc": 0.819}])
def test_an_oracle_more_than_002_below_the_control_on_one_seed_is_not_admitted(tmp_path: Path, change: dict) -> None:
    write_image_entries(tmp_path, 0.84, {("mnist-cifar-c", 4): change})
    assert [a.task for a in audit(tmp_path, IMAGES_V2) if not a.admitted] == ["mnist-cifar-c"]


def test_image_audit_without_the_control_entry_admits_nothing(tmp_path: Path) -> None:
    write_image_entries(tmp_path, 0.84, {})
    entry_path(tmp_path, IMAGES_CONTROL_V2, "erm").unlink()
    admissions = audit(tmp_path, IMAGES_V2)
    assert not any(a.admitted for a in admissions)
    assert "no readable erm entry in images-control-v2" in admissions[0].missing
