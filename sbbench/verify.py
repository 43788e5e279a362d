"""Verifying a leaderboard entry: re-train its method and accept or reject its claimed numbers.

Training here is cheap, so an entry is checked the strong way: its method is trained again,
with the hyperparameters the entry records, on the entry's suite, in a fresh result cache (no
result of the entry's own runs is reused), and the claims are compared with the re-run by
:data:`RULE` (``docs/verification.md`` explains it):

1. *consistency*: the entry's runs cover every (task, seed) of its suite and belong to the
   method it names; its per-task aggregates and its primary score are recomputed from those
   runs and must match to 1e-9;
2. *reproduction*: for every task and every metric of the suite's table (and the primary
   metric) that the entry reports, the claimed seed mean must lie inside the re-run's 95%
   Student-t confidence interval widened by :data:`TOLERANCE` on each side.

The verdict (who, when, which sbbench, which seeds, every check) is stored in the entry file
under the leaderboard lock and the tables are regenerated. A re-run in which a job fails gives
no verdict: the failure says nothing about the claimed numbers.
"""

from __future__ import annotations

import getpass
import math
import os
import secrets
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import sbbench
from sbbench.cache import ResultCache, atomic_write_text
from sbbench.leaderboard.entry import Entry, Verdict
from sbbench.leaderboard.stats import Summary, summarize
from sbbench.leaderboard.store import read_entry, regenerate_tables, suite_lock
from sbbench.methods.registry import MethodInfo, RegistryError, SubmissionError, resolve_method
from sbbench.results import RunResult
from sbbench.scoring import score
from sbbench.suite import Suite

TOLERANCE = 0.02
"""Absolute slack added on each side of the re-run's confidence interval (metrics lie in [0, 1])."""

CONSISTENCY = 1e-9
"""How closely the stored aggregates must match the ones recomputed from the entry's runs."""

RULE = (f"aggregates and score recomputed from the entry's runs match within {CONSISTENCY:g}; and for every task "
        f"and every table metric (and the primary metric) the claimed seed mean lies within the re-run's 95% "
        f"Student-t CI widened by {TOLERANCE} on each side")
"""The acceptance rule, as recorded in every verdict."""

VERIFIER_ENV = "SBBENCH_VERIFIER"

FRESH_SEED_RANGE = (1_000, 2**31 - 1)
"""Fresh seeds are drawn uniformly from this range (never one of the suite's own seeds)."""


class VerifyError(ValueError):
    """The entry cannot be verified (other code, stale suite, bad seeds, failed re-run); nothing was recorded."""


@dataclass(frozen=True)
class Check:
    """One claimed mean against the re-run."""

    task: str
    metric: str
    claimed: float
    rerun: Summary | None
    tolerance: float

    @property
    def passed(self) -> bool:
        if self.rerun is None or not math.isfinite(self.claimed):
            return False
        return self.rerun.ci_low - self.tolerance <= self.claimed <= self.rerun.ci_high + self.tolerance

    def describe(self) -> str:
        head = f"{self.task}/{self.metric}: claimed {self.claimed:.4f}"
        if self.rerun is None:
            return f"{head}, missing from the re-run: FAIL"
        return (f"{head}, re-run mean {self.rerun.mean:.4f}, 95% CI [{self.rerun.ci_low:.4f}, "
                f"{self.rerun.ci_high:.4f}] ± {self.tolerance:g} (n={self.rerun.n}): "
                f"{'ok' if self.passed else 'FAIL'}")


def verification_seeds(suite: Suite, count: int | None, fresh: bool) -> list[int]:
    """The seeds to re-train on: the suite's first ``count`` (default all), or ``count`` fresh ones."""
    count = len(suite.seeds) if count is None else count
    if count < 1:
        raise VerifyError(f"--seeds must be at least 1, got {count}")
    if not fresh:
        if count > len(suite.seeds):
            raise VerifyError(f"suite {suite.label} has {len(suite.seeds)} seeds; ask for at most that many "
                              "or add --fresh-seeds")
        return list(suite.seeds[:count])
    draw = secrets.SystemRandom()
    seeds: list[int] = []
    while len(seeds) < count:
        seed = draw.randrange(*FRESH_SEED_RANGE)
        if seed not in suite.seeds and seed not in seeds:
            seeds.append(seed)
    return sorted(seeds)


def consistency_problems(entry: Entry, suite: Suite) -> list[str]:
    """What in the entry does not follow from its own runs (empty when it is consistent)."""
    problems = []
    expected = {(task.name, seed) for task in suite.tasks for seed in suite.seeds}
    found = [(run.task, run.seed) for run in entry.runs]
    if sorted(found) != sorted(expected):
        problems.append(f"the runs cover {sorted(found)}, the suite needs {sorted(expected)}")
    for run in entry.runs:
        if (run.status, run.method, run.code_hash, run.hparams) != ("ok", entry.method.name, entry.method.code_hash,
                                                                     entry.method.hparams):
            problems.append(f"run {run.task} seed {run.seed} is not an ok run of this method, code and "
                            "hyperparameters")
    for task, metrics in entry.aggregates.items():
        runs = [run for run in entry.runs if run.task == task]
        for metric, claimed in metrics.items():
            values = [run.metrics.get(metric) for run in runs]
            if not runs or any(value is None for value in values):
                problems.append(f"{task}/{metric}: not measured by every run of the task")
                continue
            recomputed = summarize(values)
            if not _close(recomputed.mean, claimed.mean) or recomputed.n != claimed.n:
                problems.append(f"{task}/{metric}: aggregate mean {claimed.mean:.6f} (n={claimed.n}) but the runs "
                                f"give {recomputed.mean:.6f} (n={recomputed.n})")
    means = [entry.aggregates.get(task.name, {}).get(suite.primary_metric) for task in suite.tasks]
    if any(mean is None for mean in means):
        problems.append(f"the primary metric {suite.primary_metric} is missing from some task")
    elif not _close(sum(m.mean for m in means) / len(means), entry.primary_score):
        problems.append(f"primary score {entry.primary_score:.6f} is not the mean over tasks of "
                        f"{suite.primary_metric} ({sum(m.mean for m in means) / len(means):.6f})")
    return problems


def reproduction_checks(entry: Entry, suite: Suite, rerun: list[RunResult], tolerance: float = TOLERANCE
                        ) -> list[Check]:
    """One :class:`Check` per task and per table (or primary) metric that the entry reports."""
    checks = []
    metrics = list(dict.fromkeys((*suite.table_metrics, suite.primary_metric)))
    for task in suite.tasks:
        claimed = entry.aggregates.get(task.name, {})
        runs = [run for run in rerun if run.task == task.name]
        for metric in metrics:
            if metric not in claimed:
                continue
            values = [run.metrics[metric] for run in runs if metric in run.metrics]
            summary = summarize(values) if runs and len(values) == len(runs) else None
            checks.append(Check(task=task.name, metric=metric, claimed=claimed[metric].mean, rerun=summary,
                                tolerance=tolerance))
    return checks


def judge(entry: Entry, suite: Suite, rerun: list[RunResult], seeds: list[int]) -> Verdict:
    """The verdict of :data:`RULE` on ``entry`` given the re-run's results."""
    problems = consistency_problems(entry, suite)
    checks = reproduction_checks(entry, suite, rerun)
    details = [f"inconsistent: {problem}" for problem in problems] + [check.describe() for check in checks]
    accepted = not problems and bool(checks) and all(check.passed for check in checks)
    return Verdict(accepted=accepted, rule=RULE, seeds=seeds, details=details, by=verifier(),
                   at=datetime.now(timezone.utc), sbbench_version=sbbench.__version__)


def verifier() -> str:
    """``$SBBENCH_VERIFIER``, else ``user@host``."""
    named = os.environ.get(VERIFIER_ENV)
    if named:
        return named
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def retrainable(entry: Entry, suite: Suite) -> tuple[MethodInfo, dict[str, Any]]:
    """The entry's method and validated hyperparameters, when the entry can be re-trained as it was scored.

    Raises :class:`VerifyError` when the method is unknown, its code or the suite changed since
    the entry was scored, or its hyperparameters no longer validate.
    """
    if entry.suite.hash != suite.content_hash():
        raise VerifyError(f"the entry was scored on another definition of {suite.label} (hash "
                          f"{entry.suite.hash[:12]}, now {suite.content_hash()[:12]}): it is stale, score it again")
    try:
        info = resolve_method(entry.method.name)
    except (RegistryError, SubmissionError) as error:
        raise VerifyError(f"cannot find method {entry.method.name!r} to re-train it: {error}") from None
    if info.code_hash != entry.method.code_hash:
        raise VerifyError(f"the code of method {info.name!r} changed since the entry was scored (entry "
                          f"{entry.method.code_hash[:12]}, now {info.code_hash[:12]}); re-training other code "
                          "cannot vouch for the entry: score it again")
    try:
        hparams = info.make(entry.method.hparams).hparams.model_dump(mode="json")
    except ValidationError as error:
        raise VerifyError(f"the entry's hyperparameters are not valid for {info.name!r}: "
                          f"{error.errors()[0]['msg']}") from None
    return info, hparams


def retrain(info: MethodInfo, hparams: dict[str, Any], suite: Suite, seeds: list[int], *,
            executor: str = "isolated", workers: int = 1, scheduler: str | None = None,
            on_result: Callable[[RunResult, bool], None] = lambda result, reused: None,
            log: Callable[[str], None] = lambda message: None) -> list[RunResult]:
    """Train the method again on ``seeds`` of ``suite`` in a fresh, temporary result cache.

    Raises :class:`VerifyError` when a job fails.
    """
    rerun_suite = suite.model_copy(update={"seeds": tuple(seeds)})
    with tempfile.TemporaryDirectory(prefix="sbbench-verify-") as scratch:
        outcome = score(info, hparams, rerun_suite, cache=ResultCache(Path(scratch)), executor=executor,
                        workers=workers, scheduler=scheduler, on_result=on_result, log=log)
    failed = [run for run in outcome.results if run.status == "failed"]
    if failed:
        reasons = "; ".join(f"{run.task} seed {run.seed}: {run.error}" for run in failed)
        raise VerifyError(f"{len(failed)} re-run job(s) failed, so no verdict was recorded: {reasons}")
    return outcome.results


def record_verdict(root: Path, suite: Suite, path: Path, verified: Entry, verdict: Verdict) -> Entry:
    """Store ``verdict`` in the entry file at ``path`` and regenerate the suite's tables, under the lock.

    Refuses (:class:`VerifyError`) when the file no longer holds the entry that was verified.
    """
    with suite_lock(root, suite):
        current = read_entry(path)
        if _claims(current) != _claims(verified):
            raise VerifyError(f"{path} changed while it was being verified; verify it again")
        updated = current.model_copy(update={"verification": verdict})
        atomic_write_text(path, updated.model_dump_json(indent=1) + "\n")
        regenerate_tables(root, suite)
    return updated


def _claims(entry: Entry) -> str:
    """The entry without its verdict, canonically serialised."""
    return entry.model_copy(update={"verification": None}).model_dump_json()


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=CONSISTENCY, abs_tol=CONSISTENCY)
