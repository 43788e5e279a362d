"""``sbbench verify``: a real ERM entry is accepted, doctored copies are rejected, verdicts show on the board.

The entry is produced by a real ``sbbench score`` on the ``ci`` suite; every command runs through
the console script's ``main`` in this process (so its isolated workers are shared).
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest

from sbbench.cli import main
from sbbench.leaderboard.entry import Entry
from sbbench.leaderboard.stats import summarize
from sbbench.leaderboard.store import entry_path, read_entry
from sbbench.suite import SUITES
from sbbench.verify import RULE, TOLERANCE, VERIFIER_ENV

CI = SUITES["ci"]


def sbbench(*args: str) -> tuple[int, str, str]:
    """Run the console script's entry point here; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["sbbench", *args]
    try:
        with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as exited:
            main()
    finally:
        sys.argv = argv
    return exited.value.code, out.getvalue(), err.getvalue()


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def statuses(root: Path) -> dict[str, str]:
    code, out, err = sbbench("leaderboard", "--suite", "ci", "--root", str(root), "--format", "csv")
    assert code == 0, err
    table = pd.read_csv(io.StringIO(out))
    return dict(zip(table["method"], table["status"], strict=True))


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaderboard root holding a real ERM entry for the ci suite."""
    base = tmp_path_factory.mktemp("verify")
    root = base / "leaderboard"
    code, _out, err = sbbench("score", "erm", "--suite", "ci", "--root", str(root), "--cache-dir", str(base / "cache"))
    assert code == 0, err
    return root


@pytest.fixture
def board(scored: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(VERIFIER_ENV, "test-verifier")
    monkeypatch.chdir(tmp_path)
    return Path(shutil.copytree(scored, tmp_path / "leaderboard"))


def rewrite(root: Path, change) -> Entry:
    path = entry_path(root, CI, "erm")
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))
    return read_entry(path)


def test_verify_accepts_the_real_entry_and_the_board_shows_it_verified(board: Path) -> None:
    assert statuses(board) == {"erm": "unverified"}
    before = read_entry(entry_path(board, CI, "erm"))
    code, out, err = sbbench("verify", "erm", "--suite", "ci", "--root", str(board))
    assert code == 0, err
    assert "erm on ci-v1: ACCEPTED" in out and "Traceback" not in err
    after = read_entry(entry_path(board, CI, "erm"))
    verdict = after.verification
    assert verdict is not None and verdict.accepted and verdict.rule == RULE
    assert verdict.seeds == list(CI.seeds) and verdict.by == "test-verifier"
    assert any(line.startswith("lms5-ci/s_rand_auc: claimed") and line.endswith(": ok") for line in verdict.details)
    assert after.model_copy(update={"verification": None}) == before, "only the verdict was added"
    assert statuses(board) == {"erm": "verified"}
    assert "| erm | T0 | verified |" in (board / CI.label / "LEADERBOARD.md").read_text()


def test_verify_rejects_a_copy_with_a_doctored_number(board: Path) -> None:
    def doctor(raw: dict) -> None:
        """Add 0.3 to s_rand_auc in every run, and keep the aggregates and score consistent."""
        for run in raw["runs"]:
            run["metrics"]["s_rand_auc"] += 0.3
        values = [run["metrics"]["s_rand_auc"] for run in raw["runs"]]
        raw["aggregates"]["lms5-ci"]["s_rand_auc"] = summarize(values).model_dump()
        raw["primary_score"] = raw["aggregates"]["lms5-ci"]["s_rand_auc"]["mean"]

    rewrite(board, doctor)
    code, out, err = sbbench("verify", str(entry_path(board, CI, "erm")))
    assert code == 1, err
    assert "erm on ci-v1: REJECTED" in out
    verdict = read_entry(entry_path(board, CI, "erm")).verification
    assert verdict is not None and not verdict.accepted
    failed = [line for line in verdict.details if line.endswith("FAIL")]
    assert [line.split(":")[0] for line in failed] == ["lms5-ci/s_rand_auc"], verdict.details
    assert not any(line.startswith("inconsistent") for line in verdict.details)
    assert statuses(board) == {"erm": "rejected"}


def test_verify_rejects_an_aggregate_that_does_not_follow_from_the_runs(board: Path) -> None:
    def doctor(raw: dict) -> None:
        raw["aggregates"]["lms5-ci"]["acc"]["mean"] -= TOLERANCE / 2  # small, but not what the runs say

    rewrite(board, doctor)
    code, _out, err = sbbench("verify", "erm", "--suite", "ci", "--root", str(board), "--seeds", "2")
    assert code == 1, err
    verdict = read_entry(entry_path(board, CI, "erm")).verification
    assert verdict is not None and not verdict.accepted and verdict.seeds == [0, 1]
    assert any(line.startswith("inconsistent: lms5-ci/acc: aggregate mean") for line in verdict.details)


def test_verify_refuses_other_code_and_changes_nothing(board: Path) -> None:
    rewrite(board, lambda raw: raw["method"].update(code_hash="0" * 64))
    before = snapshot(board)
    code, _out, err = sbbench("verify", "erm", "--suite", "ci", "--root", str(board))
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert err.startswith("error: the code of method 'erm' changed since the entry was scored")
    assert snapshot(board) == before


def test_verify_with_fresh_seeds_retrains_on_new_data_and_records_them(board: Path) -> None:
    code, _out, err = sbbench("verify", "erm", "--suite", "ci", "--root", str(board), "--seeds", "2", "--fresh-seeds")
    verdict = read_entry(entry_path(board, CI, "erm")).verification
    assert verdict is not None and code == (0 if verdict.accepted else 1), err
    assert len(verdict.seeds) == 2 and not set(verdict.seeds) & set(CI.seeds)
    assert f"seeds {verdict.seeds}" in err
