"""``sbbench verify`` end to end: real entries re-trained, tampered copies rejected or refused, secrets kept.

The entries come from a real ``sbbench score`` of ERM and the oracle on the ``ci`` suite; every
command runs through the console script's ``main`` in this process (so its isolated workers are
shared). ``tests/test_verdicts.py`` covers the verdict store and the rules' arithmetic without training.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import run_cli as sbbench

import sbbench.verify as verify
from sbbench.leaderboard.entry import Entry
from sbbench.leaderboard.stats import summarize
from sbbench.leaderboard.store import entry_path, read_entry
from sbbench.suite import SUITES

CI = SUITES["ci"]
ORACLE = "oracle-randomize-s"
FIXED_FRESH_SEEDS = [10_000_000_019, 2**40 + 3, 2**61 + 7, 123_456_789_012, 3**30, 2**50 + 11, 987_654_321_987,
                     2**45 + 1, 5**20, 2**33 + 5]
"""Stand-ins for the secret draw where a test needs a reproducible outcome (ten, the default count)."""


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def statuses(root: Path) -> dict[str, str]:
    code, out, err = sbbench("leaderboard", "--suite", "ci", "--root", str(root), "--format", "csv")
    assert code == 0, err
    table = pd.read_csv(io.StringIO(out))
    return dict(zip(table["method"], table["status"], strict=True))


def claims_key(root: Path, name: str = "erm") -> str:
    """The verdict store's key of entry ``name`` as it is now: sha256 of its canonical JSON without any verdict."""
    raw = json.loads(entry_path(root, CI, name).read_text())
    raw.pop("verification", None)
    claims = Entry.model_validate(raw).model_dump(mode="json")
    claims.pop("verification", None)
    return hashlib.sha256(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def verdicts(root: Path) -> Path:
    return root / CI.label / "verdicts"


def stored_verdict(root: Path, name: str = "erm") -> dict[str, Any]:
    """The verdict store's verdict on the entry as it is now."""
    return json.loads((verdicts(root) / f"{claims_key(root, name)}.json").read_text())


def process_dumpable() -> bool:
    """PR_GET_DUMPABLE of this process, asked of libc directly."""
    prctl = ctypes.CDLL(None).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl(3, 0, 0, 0, 0) != 0


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaderboard root holding real ERM and oracle entries for the ci suite."""
    base = tmp_path_factory.mktemp("verify")
    root = base / "leaderboard"
    for method in ("erm", ORACLE):
        code, _out, err = sbbench("score", method, "--suite", "ci", "--root", str(root), "--cache-dir",
                                  str(base / "cache"))
        assert code == 0, err
    return root


@pytest.fixture
def board(scored: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(verify.VERIFIER_ENV, "test-verifier")
    monkeypatch.chdir(tmp_path)
    return Path(shutil.copytree(scored, tmp_path / "leaderboard"))


@pytest.fixture
def fixed_seeds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace the secret draw by :data:`FIXED_FRESH_SEEDS`, so a statistical outcome is reproducible."""
    monkeypatch.setattr(verify, "draw_fresh_seeds", lambda suite, count: FIXED_FRESH_SEEDS[:count], raising=False)
    return FIXED_FRESH_SEEDS


def rewrite(root: Path, change: Callable[[dict], None], name: str = "erm") -> Entry:
    path = entry_path(root, CI, name)
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))
    return read_entry(path)


def shift(metric: str, delta: float) -> Callable[[dict], None]:
    """Add ``delta`` to ``metric`` in every run and keep the aggregates and the score consistent with the runs."""

    def change(raw: dict) -> None:
        for run in raw["runs"]:
            run["metrics"][metric] += delta
        raw["aggregates"]["lms5-ci"][metric] = summarize([run["metrics"][metric] for run in raw["runs"]]).model_dump()
        raw["primary_score"] = raw["aggregates"]["lms5-ci"][raw["primary_metric"]]["mean"]

    return change


def test_verify_accepts_the_real_entry_bit_for_bit_and_keeps_the_verdict_out_of_the_entry(board: Path) -> None:
    assert statuses(board) == {"erm": "unverified", ORACLE: "unverified"}
    entry_file = entry_path(board, CI, "erm")
    before = entry_file.read_bytes()
    code, out, err = sbbench("verify", "erm", "--suite", "ci", "--root", str(board))
    assert code == 0, err
    assert "erm on ci-v1: ACCEPTED" in out and "Traceback" not in err
    assert entry_file.read_bytes() == before, "verify never writes the entry file"
    assert "erm on ci-v1: ACCEPTED (rule identical)" in out
    verdict = stored_verdict(board)
    assert [path.name for path in verdicts(board).iterdir()] == [f"{claims_key(board)}.json"]
    assert verdict["accepted"] and verdict["mode"] == "identical" and verdict["rule"].startswith("identical: ")
    assert verdict["seeds"] == list(CI.seeds) and verdict["by"] == "test-verifier" and verdict["method"] == "erm"
    assert [line.split(":")[0] for line in verdict["details"]] == [f"lms5-ci seed {seed}" for seed in CI.seeds]
    assert all(line.endswith("bit-identical to the re-run: ok") for line in verdict["details"]), verdict["details"]
    assert "same software as the entry" in verdict["software"]
    assert statuses(board) == {"erm": "verified", ORACLE: "unverified"}
    assert "| erm | T0 | verified |" in (board / CI.label / "LEADERBOARD.md").read_text()


@pytest.mark.parametrize(("metric", "delta"), [("s_rand_auc", 0.03), ("auc", -0.30), ("acc", 1e-12)])
def test_verify_on_the_suite_seeds_rejects_any_change_to_any_metric(board: Path, metric: str, delta: float) -> None:
    """A table metric moved by 0.03, a metric outside the table by 0.30, or by one ulp: no run matches."""
    rewrite(board, shift(metric, delta))
    code, out, err = sbbench("verify", str(entry_path(board, CI, "erm")))
    assert code == 1, err
    assert "erm on ci-v1: REJECTED (rule identical)" in out
    verdict = stored_verdict(board)
    assert not verdict["accepted"]
    failed = [line for line in verdict["details"] if line.endswith("FAIL")]
    assert [line.split(":")[0] for line in failed] == [f"lms5-ci seed {seed}" for seed in CI.seeds]
    assert all(f": {metric} claimed " in line for line in failed), failed
    assert not any(line.startswith("inconsistent") for line in verdict["details"])
    assert statuses(board)["erm"] == "rejected"


def test_verify_rejects_an_aggregate_that_does_not_follow_from_the_runs(board: Path) -> None:
    rewrite(board, lambda raw: raw["aggregates"]["lms5-ci"]["acc"].update(ci_high=1.0))  # a tighter-looking CI
    code, _out, err = sbbench("verify", "erm", "--suite", "ci", "--root", str(board))
    assert code == 1, err
    verdict = stored_verdict(board)
    assert not verdict["accepted"]
    assert any(line.startswith("inconsistent: lms5-ci/acc: aggregate") for line in verdict["details"]), verdict


@pytest.mark.parametrize(("name", "field", "value", "actual"), [
    (ORACLE, "track", "T0", "oracle"),
    (ORACLE, "version", "9.9", "1"),
    ("erm", "source", "folder /elsewhere/erm", "built-in sbbench.methods.erm:ERM"),
    ("erm", "code_hash", "0" * 64, None),
])
def test_verify_refuses_an_entry_relabelled_as_another_method(board: Path, name: str, field: str, value: str,
                                                              actual: str | None) -> None:
    """An oracle entry relabelled T0 (or given another version, source or code hash) is never verified."""
    actual = actual or read_entry(entry_path(board, CI, name)).method.code_hash
    rewrite(board, lambda raw: raw["method"].update({field: value}), name)
    before = snapshot(board)
    code, _out, err = sbbench("verify", name, "--suite", "ci", "--root", str(board))
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert f"method.{field}: the entry says {value!r}, the method found says {actual!r}" in err
    assert snapshot(board) == before


@pytest.mark.parametrize(("options", "message"), [
    (["--executor", "inline"], "--executor inline runs the method's code in the verifying process"),
    (["--seeds", "2"], "--seeds is the number of fresh seeds and needs --fresh-seeds"),
    (["--fresh-seeds", "--seeds", "2"], "a fresh-seed verification needs at least 3 seeds"),
    (["--fresh-seeds", "--executor", "dask-local"], "Dask workers would hold them unprotected"),
])
def test_verify_refuses_an_unsafe_executor_or_too_few_seeds_before_training(board: Path, options: list[str],
                                                                            message: str) -> None:
    before = snapshot(board)
    code, out, err = sbbench("verify", "erm", "--suite", "ci", "--root", str(board), *options)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert "job 1 of" not in err and not out
    assert snapshot(board) == before


def test_fresh_seeds_are_secret_while_any_fit_runs(board: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drawn from a 2**62 range, never cached on disk, logged or printed before the fits end; not dumpable meanwhile."""
    out, err = io.StringIO(), io.StringIO()
    seen: dict[str, Any] = {}
    real_score = verify.score

    def spy(info: Any, hparams: Any, suite: Any, **options: Any) -> Any:
        seen.update(seeds=list(suite.seeds), cache=options.get("cache"), dumpable=process_dumpable())
        options.get("log", lambda message: None)(f"lms5-ci seed {suite.seeds[0]}: epoch 1")
        outcome = real_score(info, hparams, suite, **options)
        seen["printed"] = out.getvalue() + err.getvalue()
        return outcome

    monkeypatch.setattr(verify, "score", spy)
    code, stdout, stderr = sbbench("verify", "erm", "--suite", "ci", "--root", str(board), "--fresh-seeds", out=out,
                                   err=err)
    assert code in (0, 1), stderr
    seeds = seen["seeds"]
    assert all(0 <= seed < 2**62 and seed not in CI.seeds for seed in seeds) and max(seeds) > 2**32
    assert not any(str(seed) in seen["printed"] for seed in seeds), seen["printed"]
    assert seen["cache"] is None, "a fresh-seed re-run keeps its results in memory only"
    assert seen["dumpable"] is False, "the verifying process is not dumpable while the secret seeds live"
    assert "10 fresh secret data seeds" in seen["printed"] and "lms5-ci: job 10 of 10 ok" in seen["printed"]
    assert f"fresh data seeds, secret until training ended: {seeds}" in stdout
    assert stored_verdict(board)["seeds"] == seeds and len(seeds) == verify.DEFAULT_FRESH_SEEDS
    assert process_dumpable(), "dumpable again once the verification has ended"


def test_fresh_seed_rule_accepts_the_honest_entry_and_rejects_a_shift_on_every_reported_metric(
        board: Path, fixed_seeds: list[int]) -> None:
    code, out, err = sbbench("verify", "erm", "--suite", "ci", "--root", str(board), "--fresh-seeds")
    assert code == 0, out + err
    honest = stored_verdict(board)
    assert honest["accepted"] and honest["mode"] == "fresh-seeds" and honest["seeds"] == fixed_seeds
    reported = set(read_entry(entry_path(board, CI, "erm")).aggregates["lms5-ci"])
    assert {line.split(":")[0] for line in honest["details"]} == {f"lms5-ci/{metric}" for metric in reported}

    rewrite(board, shift("acc", 0.03))
    rewrite(board, shift("auc", -0.30))  # not a metric of the suite's table
    code, out, err = sbbench("verify", "erm", "--suite", "ci", "--root", str(board), "--fresh-seeds")
    assert code == 1, err
    tampered = stored_verdict(board)
    failed = sorted(line.split(":")[0] for line in tampered["details"] if line.endswith("FAIL"))
    assert failed == ["lms5-ci/acc", "lms5-ci/auc"], tampered["details"]
    assert statuses(board)["erm"] == "rejected"
