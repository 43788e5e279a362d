"""Verdicts live in the maintainers' verdict store, keyed by the entry's claims; the rules' arithmetic.

No training here: entries are built from hand-made runs and verdicts written through the store,
so every view (terminal, Markdown and CSV tables, report, web site, Hub card and push) is
checked against the same two facts: a verdict pasted into an entry file counts for nothing, and
a stored verdict counts only while the entry is exactly what was verified.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_cli as sbbench_cli

import sbbench
import sbbench.verify as verify
from sbbench.leaderboard.entry import Entry, Verdict, claims_digest
from sbbench.leaderboard.hub import PushPlan, plan_push
from sbbench.leaderboard.site import build_site
from sbbench.leaderboard.store import (
    build_entry,
    entry_path,
    load_entries,
    read_entry,
    suite_lock,
    verdict_path,
    write_entry,
    write_verdict,
)
from sbbench.methods.registry import resolve_method
from sbbench.results import RunResult
from sbbench.runner import method_fields
from sbbench.suite import SUITES

CI = SUITES["ci"]
PASTED = {"accepted": True, "rule": "trust me", "seeds": [0, 1, 2, 3], "details": [], "by": "maintainer@example",
          "at": "2026-01-01T00:00:00Z", "sbbench_version": sbbench.__version__}
"""A verdict as entry files used to carry it: anyone could write one."""


def make_entry(name: str = "erm", shift: float = 0.0) -> Entry:
    """An entry of built-in method ``name`` on ci from hand-made runs (no training)."""
    info = resolve_method(name, submissions_dir=None)
    hparams = info.defaults
    task = CI.tasks[0]
    runs = [RunResult(**method_fields(info, hparams), task=task.name, task_hash=task.content_hash(), seed=seed,
                      status="ok", metrics={"acc": 0.99 - 0.002 * seed + shift, "auc": 0.999,
                                            "s_rand_auc": 0.5 + 0.01 * seed + shift})
            for seed in CI.seeds]
    return build_entry(info, hparams, "defaults", CI, runs, "cpu")


def make_verdict(entry: Entry, accepted: bool = True) -> Verdict:
    return Verdict(claims=claims_digest(entry), method=entry.method.name, accepted=accepted, mode="identical",
                   rule="test", software="test", seeds=list(CI.seeds), by="test-verifier",
                   at=datetime.now(timezone.utc), sbbench_version=sbbench.__version__,
                   torch_version=torch.__version__)


def store(root: Path, verdict: Verdict) -> Path:
    with suite_lock(root, CI):
        return write_verdict(root, CI, verdict)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A leaderboard with ERM (baseline) and the oracle on ci; the working directory has no results folder."""
    monkeypatch.chdir(tmp_path)
    board = tmp_path / "leaderboard"
    write_entry(board, CI, make_entry("erm"))
    write_entry(board, CI, make_entry("oracle-randomize-s", shift=0.01))
    return board


def paste_verdict(root: Path, name: str = "erm") -> None:
    path = entry_path(root, CI, name)
    raw = json.loads(path.read_text())
    raw["verification"] = PASTED
    path.write_text(json.dumps(raw, indent=1))


def every_view(root: Path, tmp_path: Path, name: str = "erm") -> dict[str, str]:
    """The status of entry ``name`` in every view of the leaderboard under ``root``."""
    views = {}
    code, out, err = sbbench_cli("leaderboard", "--suite", "ci", "--root", str(root), "--format", "csv")
    assert code == 0, err
    views["csv"] = dict(zip(*pd.read_csv(io.StringIO(out))[["method", "status"]].values.T, strict=True))[name]
    code, out, err = sbbench_cli("leaderboard", "--suite", "ci", "--root", str(root), "--format", "md")
    views["md"] = next(line for line in out.splitlines() if line.startswith(f"| {name} |")).split(" | ")[2]
    code, out, err = sbbench_cli("leaderboard", "--suite", "ci", "--root", str(root))
    views["terminal"] = next(line for line in out.splitlines() if line.strip().startswith(name)).split()[2]
    code, out, err = sbbench_cli("leaderboard", "report", "--suite", "ci", "--root", str(root), "--baseline", "erm")
    assert code == 0, err
    views["report"] = next(line for line in out.splitlines() if line.startswith(f"| {name}")).split(" | ")[2]
    site = tmp_path / f"site-{len(list(tmp_path.glob('site-*')))}"
    build_site(root, site, [CI])
    page = (site / CI.label / "entries" / f"{name}.html").read_text()
    views["site badge"] = page.split('class="badge badge-')[1].split('"')[0]
    views["site verification"] = "verified" if "Accepted by test-verifier" in page else (
        "rejected" if "Rejected by test-verifier" in page else "unverified")
    views["hub card"] = card_status(plan_push(root, None, [CI]), name)
    return views


def test_a_verdict_pasted_into_an_entry_file_counts_for_nothing(root: Path, tmp_path: Path) -> None:
    paste_verdict(root)
    assert set(every_view(root, tmp_path).values()) == {"unverified"}
    assert "verification" not in read_entry(entry_path(root, CI, "erm")).model_dump()


def test_a_stored_verdict_counts_only_while_the_entry_is_what_was_verified(root: Path, tmp_path: Path) -> None:
    entry = read_entry(entry_path(root, CI, "erm"))
    stored = store(root, make_verdict(entry))
    assert stored == verdict_path(root, CI, claims_digest(entry)) == root / "ci-v1" / "verdicts" / stored.name
    assert set(every_view(root, tmp_path).values()) == {"verified"}

    edited = entry.model_copy(update={"method": entry.method.model_copy(update={"description": "better"})})
    entry_path(root, CI, "erm").write_text(edited.model_dump_json(indent=1))
    assert set(every_view(root, tmp_path).values()) == {"unverified"}, "an entry edited after its verdict"

    entry_path(root, CI, "erm").write_text(json.dumps(json.loads(entry.model_dump_json()), indent=4))
    assert set(every_view(root, tmp_path).values()) == {"verified"}, "the claims, not the file's bytes, are verified"


def test_a_rejection_shows_and_a_verdict_under_another_name_or_method_is_ignored(root: Path, tmp_path: Path) -> None:
    erm = read_entry(entry_path(root, CI, "erm"))
    oracle = read_entry(entry_path(root, CI, "oracle-randomize-s"))
    store(root, make_verdict(erm, accepted=False))
    verdict_path(root, CI, claims_digest(oracle)).write_text(make_verdict(erm).model_dump_json())  # renamed copy
    forged = make_verdict(oracle).model_copy(update={"method": "erm"})
    assert every_view(root, tmp_path)["csv"] == "rejected"
    assert every_view(root, tmp_path, "oracle-randomize-s")["csv"] == "unverified"
    verdict_path(root, CI, claims_digest(oracle)).write_text(forged.model_dump_json())
    assert {item.entry.method.name: item.verdict for item in load_entries(root, CI)}["oracle-randomize-s"] is None


def test_writing_an_entry_drops_a_pasted_verdict(root: Path) -> None:
    paste_verdict(root)
    entry = read_entry(entry_path(root, CI, "erm"))
    write_entry(root, CI, entry)
    assert "verification" not in json.loads(entry_path(root, CI, "erm").read_text())
    assert claims_digest(entry) == claims_digest(make_entry("erm").model_copy(update={"provenance": entry.provenance}))


def test_a_push_commit_carries_the_verdicts_and_a_pull_request_never_does(root: Path, tmp_path: Path) -> None:
    erm = read_entry(entry_path(root, CI, "erm"))
    stored = store(root, make_verdict(erm))
    verdict_file = f"ci-v1/verdicts/{stored.name}"

    commit = plan_push(root, None, [CI])
    assert verdict_file in commit.paths and commit.changed_verdicts == [verdict_file]
    assert card_status(commit, "erm") == "verified"
    proposal = plan_push(root, None, [CI], verdicts=False)
    assert not [path for path in proposal.paths if "/verdicts/" in path] and proposal.changed_verdicts == []
    assert card_status(proposal, "erm") == "unverified", "a pull request's tables trust no local verdict"

    repository = tmp_path / "repository"  # the Hub repository after the commit, as `pull` downloads it
    for operation in commit.operations:
        (repository / operation.path_in_repo).parent.mkdir(parents=True, exist_ok=True)
        (repository / operation.path_in_repo).write_bytes(operation.path_or_fileobj)
    pulled = {item.entry.method.name: item.verdict for item in load_entries(repository, CI)}
    assert pulled["erm"] == Verdict.model_validate_json(stored.read_bytes())

    write_entry(root, CI, make_entry("oracle-randomize-s", shift=0.02))
    proposal = plan_push(root, repository, [CI], verdicts=False)
    assert card_status(proposal, "erm") == "verified", "the repository's own verdict still applies"
    write_entry(root, CI, make_entry("erm", shift=0.001))
    proposal = plan_push(root, repository, [CI], verdicts=False)
    assert card_status(proposal, "erm") == "unverified" and proposal.changed_verdicts == []


def card_status(plan: PushPlan, name: str) -> str:
    """The status of entry ``name`` in the standings of the dataset card that ``plan`` sends."""
    card = next(op.path_or_fileobj.decode() for op in plan.operations if op.path_in_repo == "README.md")
    row = next(line for line in card.splitlines() if line.split(" | ")[1:2] == [name])
    return row.split(" | ")[3].rstrip(" |")


def test_the_process_is_not_dumpable_inside_non_dumpable_only() -> None:
    if verify.dumpable() is None:
        pytest.skip("PR_GET_DUMPABLE exists on Linux only")
    assert verify.dumpable()
    with verify.non_dumpable():
        assert verify.dumpable() is False
    assert verify.dumpable()


def test_fresh_seeds_are_large_distinct_and_never_the_suite_s() -> None:
    seeds = verify.draw_fresh_seeds(CI, 50)
    assert len(set(seeds)) == 50 and not set(seeds) & set(CI.seeds)
    assert all(0 <= seed < 2**62 for seed in seeds) and max(seeds) > 2**40


def test_other_software_switches_to_the_fresh_seed_rule_and_says_so() -> None:
    entry = make_entry()
    assert verify.plan_verification(entry, CI, None, fresh=False).mode == "identical"
    older = entry.model_copy(update={"provenance": entry.provenance.model_copy(update={"torch": "2.2.0"})})
    plan = verify.plan_verification(older, CI, None, fresh=False)
    assert plan.mode == "fresh-seeds" and plan.count == verify.DEFAULT_FRESH_SEEDS
    assert f"torch 2.2.0 (entry) vs {torch.__version__} (here)" in plan.software
    with pytest.raises(verify.VerifyError, match="at least 3 seeds"):
        verify.plan_verification(entry, CI, 2, fresh=True)


def _check(claimed: list[float], rerun: list[float], checks: int = 11) -> verify.MeanCheck:
    return verify.MeanCheck(task="lms5-ci", metric="acc", claimed=tuple(claimed), rerun=tuple(rerun),
                            alpha=verify.FAMILY_ALPHA / checks)


RERUN_ACC = [0.984, 0.994, 0.992, 0.994, 0.99, 0.986, 0.996, 0.98, 0.992, 0.988]
"""ERM's acc on ten fresh ci seeds (a measured re-run)."""


def test_welch_rule_accepts_the_same_distribution_and_rejects_a_consistent_shift() -> None:
    claimed = [0.984, 0.994, 0.992, 0.994]
    assert _check(claimed, RERUN_ACC).passed
    assert not _check([value + 0.03 for value in claimed], RERUN_ACC).passed
    assert _check([value + 0.004 for value in claimed], RERUN_ACC).passed, "within the slack and the noise"


def test_welch_rule_without_spread_leaves_only_the_slack() -> None:
    assert _check([1.0] * 4, [1.0] * 10).passed
    assert _check([1.0] * 4, [0.996] * 10).passed
    assert not _check([1.0] * 4, [0.99] * 10).passed


def test_welch_rule_fails_a_metric_missing_on_either_side() -> None:
    assert not _check([], RERUN_ACC).passed and "missing from the entry" in _check([], RERUN_ACC).describe()
    assert not _check([0.99] * 4, []).passed and "missing from the re-run" in _check([0.99] * 4, []).describe()


def test_bonferroni_spreads_the_family_level_over_every_check() -> None:
    entry = make_entry()
    runs = [run.model_copy(update={"seed": 100 + run.seed}) for run in entry.runs]
    checks = verify.fresh_checks(entry, CI, runs)
    assert [check.metric for check in checks] == ["acc", "auc", "s_rand_auc"]
    assert all(check.alpha == verify.FAMILY_ALPHA / 3 for check in checks)


def test_fresh_seeds_are_refused_where_the_data_goes_through_a_disk_cache() -> None:
    verify.check_secrecy(SUITES["images"], "identical")
    verify.check_secrecy(CI, "fresh-seeds")
    with pytest.raises(verify.VerifyError, match="on-disk image cache"):
        verify.check_secrecy(SUITES["images"], "fresh-seeds")


def test_a_verdict_is_recorded_only_for_the_claims_still_in_the_entry_file(root: Path) -> None:
    path = entry_path(root, CI, "erm")
    verified = read_entry(path)
    write_entry(root, CI, make_entry("erm", shift=0.001))
    with pytest.raises(verify.VerifyError, match="changed while it was being verified"):
        verify.record_verdict(root, CI, path, make_verdict(verified))
    assert not verdict_path(root, CI, claims_digest(verified)).exists()
    current = read_entry(path)
    stored = verify.record_verdict(root, CI, path, make_verdict(current))
    assert stored == verdict_path(root, CI, claims_digest(current))
    assert "| erm | T0 | verified |" in (root / CI.label / "LEADERBOARD.md").read_text()
