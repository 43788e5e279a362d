"""Verifying a leaderboard entry: re-train its method and accept or reject its claimed numbers.

Training here is cheap, so an entry is checked the strong way (``docs/verification.md``):

* the method the entry names is resolved here and must have the entry's track, version, source
  and code hash; the entry's hyperparameters must validate unchanged; its suite must be current;
* the method is trained again in isolated fit processes (never ``inline``, which would run the
  method's code in this process) and nothing of the re-run is written to disk;
* :func:`judge` accepts the entry when its runs are *consistent* (aggregates and score follow
  from them) and *reproduced*, by one of two rules (:data:`RULES`):

  - ``identical``: on the suite's own seeds with the entry's sbbench, torch and device, every
    metric and profile of every (task, seed) run equals the re-run's bit for bit;
  - ``fresh-seeds``: on at least :data:`MIN_FRESH_SEEDS` new data seeds (``--fresh-seeds``, or
    automatically when the software differs), Welch's two-sample test on every metric the
    entry reports, Bonferroni-corrected over all checks (:class:`MeanCheck`).

Fresh seeds are drawn with :mod:`secrets` from ``[0, 2**62)`` and are the jobs' *data* seeds: a
fit process sees only a one-way hash of its seed, so it cannot regenerate its test split. They
are never printed, logged or written before every fit has finished, and the verifying process
is not dumpable while re-training (:func:`non_dumpable`), so other processes of the same user
(the fit processes included) can neither read its memory nor attach to it.

The verdict is written to the suite's verdict store (:func:`record_verdict`) under the
leaderboard lock, keyed by the digest of the entry's claims; the entry file is not touched. A
re-run in which a job fails gives no verdict: the failure says nothing about the claimed numbers.
"""

from __future__ import annotations

import ctypes
import getpass
import math
import os
import secrets
import socket
import struct
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sbbench
from sbbench.data.images import DominoSpec
from sbbench.headline import suite_score
from sbbench.leaderboard.entry import Entry, Verdict, VerifyMode, claims_digest
from sbbench.leaderboard.stats import Summary, summarize
from sbbench.leaderboard.store import EntryError, read_entry, regenerate_tables, suite_lock, write_verdict
from sbbench.methods.describe import DescribeError
from sbbench.methods.registry import HParamsError, MethodInfo, RegistryError, SubmissionError, resolve_method
from sbbench.results import RunResult
from sbbench.runner import default_device
from sbbench.scoring import score
from sbbench.suite import Suite

CONSISTENCY = 1e-9
"""How closely the stored aggregates and score must match the ones recomputed from the entry's runs."""

FRESH_SEED_BOUND = 2**62
"""Fresh data seeds are drawn uniformly from ``[0, FRESH_SEED_BOUND)`` (never one of the suite's seeds)."""

MIN_FRESH_SEEDS = 3
"""The fewest fresh seeds a verification accepts: Welch's test needs a spread on each side."""

DEFAULT_FRESH_SEEDS = 10
"""Fresh seeds re-trained on by default (on ``ci``, rejects a +0.03 on ``acc``; docs/verification.md)."""

FAMILY_ALPHA = 0.05
"""The chance that an honest entry fails some check of the fresh-seed rule, at most (Bonferroni)."""

SLACK = 0.005
"""Absolute slack added to every fresh-seed bound: metric steps (1/500 on a 500-point test set), metrics with
no spread on either side and floating-point differences between machines (metrics lie in [0, 1])."""

VERIFY_EXECUTORS = ("isolated", "dask", "dask-local")
"""Executors that never run the method's code in the verifying process (``inline`` does)."""

RULES: dict[VerifyMode, str] = {
    "identical": (f"identical: the entry's aggregates and score follow from its runs (to {CONSISTENCY:g}), and "
                  "re-training on the suite's own seeds with the entry's sbbench, torch and device reproduces every "
                  "metric and profile of every (task, seed) run bit for bit"),
    "fresh-seeds": (f"fresh-seeds: the entry's aggregates and score follow from its runs (to {CONSISTENCY:g}), and "
                    f"on at least {MIN_FRESH_SEEDS} fresh secret data seeds, for every task and every metric that the "
                    "entry reports or the re-run produces, |claimed mean - re-run mean| <= t x SE + "
                    f"{SLACK:g}, where SE = sqrt(s_claimed^2/n_claimed + s_rerun^2/n_rerun) over the per-run values "
                    f"and t is Student's two-sided (1 - {FAMILY_ALPHA:g}/checks) quantile at Welch's degrees of "
                    "freedom (Bonferroni over all checks)"),
}
"""The acceptance rules, as recorded in every verdict."""

VERIFIER_ENV = "SBBENCH_VERIFIER"

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


class VerifyError(ValueError):
    """The entry cannot be verified (other code, stale suite, bad seeds, failed re-run); nothing was recorded."""


# --- what to re-run ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How an entry is verified: the rule, how many seeds and what the software comparison implied."""

    mode: VerifyMode
    count: int
    software: str

    def describe(self, info: MethodInfo, suite: Suite) -> str:
        """What is about to be re-trained, without any secret seed."""
        head = f"re-training {info.name} on {suite.label}"
        if self.mode == "identical":
            return f"{head} on the suite's seeds {list(suite.seeds)}; {self.software}"
        return f"{head} on {self.count} fresh secret data seeds (shown once training has ended); {self.software}"


def software_differences(entry: Entry) -> list[str]:
    """How the entry's sbbench, torch and device differ from this process's (empty: the same)."""
    here = {"sbbench": sbbench.__version__, "torch": torch.__version__, "device": str(default_device())}
    there = {"sbbench": entry.provenance.sbbench_version, "torch": entry.provenance.torch,
             "device": entry.provenance.device}
    return [f"{name} {there[name]} (entry) vs {here[name]} (here)" for name in here if there[name] != here[name]]


def plan_verification(entry: Entry, suite: Suite, seeds: int | None, fresh: bool) -> Plan:
    """The :class:`Plan` for ``entry``: ``identical`` on the suite's seeds, unless ``fresh`` or the software differs.

    ``seeds`` is the number of fresh seeds (default :data:`DEFAULT_FRESH_SEEDS`). Raises
    :class:`VerifyError` for ``seeds`` without ``fresh`` or fewer than :data:`MIN_FRESH_SEEDS`.
    """
    if seeds is not None and not fresh:
        raise VerifyError(f"--seeds is the number of fresh seeds and needs --fresh-seeds: a re-run on the suite's "
                          f"seeds re-trains all {len(suite.seeds)} of them (every run of the entry is compared)")
    differences = software_differences(entry)
    if not fresh and not differences:
        return Plan(mode="identical", count=len(suite.seeds),
                    software=f"same software as the entry (sbbench {sbbench.__version__}, torch {torch.__version__}, "
                             f"device {default_device()}): the re-run must be bit-identical")
    count = DEFAULT_FRESH_SEEDS if seeds is None else seeds
    if count < MIN_FRESH_SEEDS:
        raise VerifyError(f"--seeds {count}: a fresh-seed verification needs at least {MIN_FRESH_SEEDS} seeds")
    if not differences:
        return Plan(mode="fresh-seeds", count=count, software="fresh seeds asked for (--fresh-seeds)")
    return Plan(mode="fresh-seeds", count=count,
                software=f"the software differs from the entry's ({'; '.join(differences)}): a bit-identical re-run "
                         "is not expected, so the fresh-seed rule applies")


def draw_fresh_seeds(suite: Suite, count: int) -> list[int]:
    """``count`` distinct data seeds from :mod:`secrets`, none of the suite's; keep them secret until the fits end."""
    seeds: list[int] = []
    while len(seeds) < count:
        seed = secrets.randbelow(FRESH_SEED_BOUND)
        if seed not in suite.seeds and seed not in seeds:
            seeds.append(seed)
    return seeds


def identity_mismatches(entry: Entry, info: MethodInfo) -> list[str]:
    """``method.<field>: ...`` for each of track, version, source and code hash where the entry and ``info`` differ."""
    found = {"track": info.track.value, "version": info.version, "source": info.source, "code_hash": info.code_hash}
    return [f"method.{name}: the entry says {getattr(entry.method, name)!r}, the method found says {value!r}"
            for name, value in found.items() if getattr(entry.method, name) != value]


def retrainable(entry: Entry, suite: Suite) -> tuple[MethodInfo, dict[str, Any]]:
    """The entry's method and hyperparameters, when the entry can be re-trained as it was scored.

    Raises :class:`VerifyError` when the suite changed since the entry was scored, the method is
    unknown, its track, version, source or code hash differ from the entry's, or the entry's
    hyperparameters are not exactly the method's validated hyperparameters.
    """
    if entry.suite.hash != suite.content_hash():
        raise VerifyError(f"the entry was scored on another definition of {suite.label} (hash "
                          f"{entry.suite.hash[:12]}, now {suite.content_hash()[:12]}): it is stale, score it again")
    try:
        info = resolve_method(entry.method.name)
    except (RegistryError, SubmissionError) as error:
        raise VerifyError(f"cannot find method {entry.method.name!r} to re-train it: {error}") from None
    mismatches = identity_mismatches(entry, info)
    if mismatches:
        raise VerifyError(f"the entry does not describe method {info.name!r} as found here: {'; '.join(mismatches)}; "
                          "re-training this method cannot vouch for the entry: score it again")
    try:
        hparams = info.configure(entry.method.hparams)
    except (HParamsError, DescribeError) as error:
        raise VerifyError(f"the entry's hyperparameters are not valid for {info.name!r}: {error}") from None
    if hparams != entry.method.hparams:
        raise VerifyError(f"the entry's hyperparameters {entry.method.hparams} are not the full validated set of "
                          f"{info.name!r} ({hparams}): score it again")
    return info, hparams


# --- re-training -------------------------------------------------------------------------------------------------


def check_secrecy(suite: Suite, mode: VerifyMode) -> None:
    """Refuse fresh seeds for a suite whose data is built through an on-disk cache (the image tasks).

    Building an image task's data for a seed stores it, test split and seed included, in the
    image data cache (``~/.cache/sbbench``), where any process of the same user, the fit
    processes included, can read it: fresh seeds would not stay secret.
    """
    cached = [task.name for task in suite.tasks if isinstance(task.data, DominoSpec)]
    if mode == "fresh-seeds" and cached:
        raise VerifyError(f"the data of {', '.join(cached)} is built through the on-disk image cache, which would "
                          "hand every fresh seed's test split to the fit processes: verify this suite on its own "
                          "seeds with the entry's sbbench, torch and device (without --fresh-seeds)")


def check_executor(executor: str, mode: VerifyMode) -> None:
    """Refuse an executor that would run the method's code here, or expose secret seeds to Dask workers."""
    if executor == "inline":
        raise VerifyError("--executor inline runs the method's code in the verifying process (which holds the test "
                          "data and writes the verdict): verify with --executor isolated, dask or dask-local")
    if executor not in VERIFY_EXECUTORS:
        raise VerifyError(f"--executor must be one of {', '.join(VERIFY_EXECUTORS)}, got {executor!r}")
    if mode == "fresh-seeds" and executor != "isolated":
        raise VerifyError(f"--executor {executor}: a fresh-seed verification keeps its secret seeds in this process, "
                          "protected while fits run; Dask workers would hold them unprotected: use --executor isolated")


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` on Linux, else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    function.restype = ctypes.c_int
    return function


def dumpable() -> bool | None:
    """Whether this process is dumpable (``PR_GET_DUMPABLE``); ``None`` where that cannot be asked (not Linux)."""
    prctl = _prctl()
    return None if prctl is None else prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0


@contextmanager
def non_dumpable() -> Iterator[None]:
    """This process is not dumpable inside the block (Linux; elsewhere a no-op), then as before.

    A non-dumpable process's ``/proc/<pid>/mem`` cannot be read, and it cannot be ptraced, by
    other processes of the same user (fit processes included), and it leaves no core dump.
    """
    prctl = _prctl()
    if prctl is None:
        yield
        return
    was_dumpable = dumpable()
    if prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise VerifyError(f"cannot make the verifying process non-dumpable: {os.strerror(ctypes.get_errno())}")
    try:
        yield
    finally:
        if was_dumpable:
            prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)


def retrain(info: MethodInfo, hparams: dict[str, Any], suite: Suite, seeds: Sequence[int], *,
            executor: str = "isolated", workers: int = 1, scheduler: str | None = None,
            on_result: Callable[[RunResult, bool], None] = lambda result, reused: None) -> list[RunResult]:
    """Train the method again on data seeds ``seeds`` of ``suite``, with no result cache and no progress log.

    The executor's per-job messages name their data seed, so none is passed on; the caller has
    checked the executor (:func:`check_executor`). Raises :class:`VerifyError` when a job fails
    (its reasons are given once every job has ended).
    """
    rerun_suite = suite.model_copy(update={"seeds": tuple(seeds)})
    outcome = score(info, hparams, rerun_suite, cache=None, executor=executor, workers=workers, scheduler=scheduler,
                    on_result=on_result)
    failed = [run for run in outcome.results if run.status == "failed"]
    if failed:
        reasons = "; ".join(f"{run.task} seed {run.seed}: {run.error}" for run in failed)
        raise VerifyError(f"{len(failed)} re-run job(s) failed, so no verdict was recorded: {reasons}")
    return outcome.results


def verify_entry(entry: Entry, suite: Suite, plan: Plan, *, executor: str = "isolated", workers: int = 1,
                 scheduler: str | None = None, announce: Callable[[str], None] = lambda message: None,
                 on_result: Callable[[RunResult, bool], None] = lambda result, reused: None) -> Verdict:
    """Re-train ``entry``'s method as ``plan`` says and judge the entry (nothing is recorded).

    Everything that can refuse does so before training (:func:`check_executor`,
    :func:`check_secrecy`, :func:`retrainable`); ``announce`` then gets :meth:`Plan.describe`.
    Seeds are drawn, used and judged while this process is :func:`non_dumpable`. Raises
    :class:`VerifyError`.
    """
    check_executor(executor, plan.mode)
    check_secrecy(suite, plan.mode)
    info, hparams = retrainable(entry, suite)
    announce(plan.describe(info, suite))
    with non_dumpable():
        seeds = list(suite.seeds) if plan.mode == "identical" else draw_fresh_seeds(suite, plan.count)
        rerun = retrain(info, hparams, suite, seeds, executor=executor, workers=workers, scheduler=scheduler,
                        on_result=on_result)
        return judge(entry, suite, rerun, seeds, plan)


# --- judging -----------------------------------------------------------------------------------------------------


def consistency_problems(entry: Entry, suite: Suite) -> list[str]:
    """What in the entry does not follow from its own runs (empty when it is consistent)."""
    return [*_coverage_problems(entry, suite), *_run_problems(entry, suite), *_aggregate_problems(entry),
            *_score_problems(entry, suite)]


def _coverage_problems(entry: Entry, suite: Suite) -> list[str]:
    expected = sorted((task.name, seed) for task in suite.tasks for seed in suite.seeds)
    found = sorted((run.task, run.seed) for run in entry.runs)
    problems = [] if found == expected else [f"the runs cover {found}, the suite needs {expected}"]
    if sorted(entry.aggregates) != sorted(task.name for task in suite.tasks):
        problems.append(f"the aggregates cover tasks {sorted(entry.aggregates)}, the suite has "
                        f"{sorted(task.name for task in suite.tasks)}")
    return problems


def _run_problems(entry: Entry, suite: Suite) -> list[str]:
    """Runs that are not ``ok`` runs of the entry's method, version, track, code and hyperparameters on the suite."""
    task_hashes = {task.name: task.content_hash() for task in suite.tasks}
    method = entry.method
    wanted = ("ok", method.name, method.version, method.track, method.code_hash, method.hparams)
    return [f"run {run.task} seed {run.seed} is not an ok run of this method, version, track, code, hyperparameters "
            "and task" for run in entry.runs
            if (run.status, run.method, run.method_version, run.track, run.code_hash, run.hparams) != wanted
            or run.task_hash != task_hashes.get(run.task)]


def _aggregate_problems(entry: Entry) -> list[str]:
    """Per-task summaries that are not exactly those of the task's runs, metric for metric."""
    problems = []
    for task, metrics in entry.aggregates.items():
        runs = [run for run in entry.runs if run.task == task]
        for run in runs:
            if set(run.metrics) != set(metrics):
                problems.append(f"run {task} seed {run.seed} measures {sorted(run.metrics)}, the aggregates of "
                                f"{task} give {sorted(metrics)}")
        for metric, claimed in metrics.items():
            values = [run.metrics[metric] for run in runs if metric in run.metrics]
            if not runs or len(values) != len(runs):
                continue
            recomputed = summarize(values)
            if not _same_summary(recomputed, claimed):
                problems.append(f"{task}/{metric}: aggregate {_summary_text(claimed)} but the runs give "
                                f"{_summary_text(recomputed)}")
    return problems


def _score_problems(entry: Entry, suite: Suite) -> list[str]:
    if entry.primary_metric != suite.primary_metric:
        return [f"the primary metric {suite.primary_metric} is not the entry's ({entry.primary_metric})"]
    try:
        recomputed = suite_score(suite, entry.runs)
    except (KeyError, ValueError) as error:
        return [f"the primary score cannot be recomputed from the runs: {error}"]
    if not _close(recomputed, entry.primary_score):
        return [f"primary score {entry.primary_score:.6f} is not the suite's {suite.score_rule} score of the runs "
                f"({recomputed:.6f})"]
    return []


@dataclass(frozen=True)
class RunCheck:
    """One (task, seed) run of the entry against the re-run on the same data seed: bit for bit."""

    task: str
    seed: int
    claimed: RunResult | None
    rerun: RunResult | None

    @property
    def differences(self) -> list[str]:
        if self.claimed is None or self.rerun is None:
            return ["missing from the " + ("entry" if self.claimed is None else "re-run")]
        return [*_value_differences("", self.claimed.metrics, self.rerun.metrics),
                *_value_differences("profile ", self.claimed.profiles, self.rerun.profiles)]

    @property
    def passed(self) -> bool:
        return not self.differences

    def describe(self) -> str:
        head = f"{self.task} seed {self.seed}"
        if self.claimed is not None and self.passed:
            return (f"{head}: {len(self.claimed.metrics)} metrics and {len(self.claimed.profiles)} profiles "
                    "bit-identical to the re-run: ok")
        return f"{head}: {'; '.join(self.differences)}: FAIL"


def _value_differences(kind: str, claimed: dict[str, Any], rerun: dict[str, Any]) -> list[str]:
    """``<kind><name> ...`` for each value missing on one side or not bit-identical (floats or lists of floats)."""
    differences = [f"{kind}{name} missing from the entry" for name in sorted(rerun.keys() - claimed.keys())]
    differences += [f"{kind}{name} not produced by the re-run" for name in sorted(claimed.keys() - rerun.keys())]
    for name in sorted(claimed.keys() & rerun.keys()):
        if not _same_bits(claimed[name], rerun[name]):
            shown = (f"claimed {claimed[name]!r}, re-run {rerun[name]!r}" if isinstance(claimed[name], float)
                     else "differs")
            differences.append(f"{kind}{name} {shown}")
    return differences


def _same_bits(a: float | list[float], b: float | list[float]) -> bool:
    """Whether two floats (or two lists of floats) are bit-for-bit equal."""
    first, second = (a, b) if isinstance(a, list) and isinstance(b, list) else ([a], [b])
    if len(first) != len(second):
        return False
    try:
        return all(struct.pack("<d", x) == struct.pack("<d", y) for x, y in zip(first, second, strict=True))
    except struct.error:
        return False


def identical_checks(entry: Entry, suite: Suite, rerun: list[RunResult]) -> list[RunCheck]:
    """One :class:`RunCheck` per (task, seed) of the suite."""
    claimed = {(run.task, run.seed): run for run in entry.runs}
    again = {(run.task, run.seed): run for run in rerun}
    return [RunCheck(task=task.name, seed=seed, claimed=claimed.get((task.name, seed)),
                     rerun=again.get((task.name, seed))) for task in suite.tasks for seed in suite.seeds]


@dataclass(frozen=True)
class MeanCheck:
    """One metric of one task: the entry's per-run values against the re-run's on fresh seeds (Welch's test).

    Passes when ``|mean(claimed) - mean(rerun)| <= t x SE + slack``, where SE is Welch's standard
    error of the difference and ``t`` Student's two-sided ``1 - alpha`` quantile at Welch's
    degrees of freedom. An empty side means the metric is missing there: the check fails.
    """

    task: str
    metric: str
    claimed: tuple[float, ...]
    rerun: tuple[float, ...]
    alpha: float
    slack: float = SLACK

    @property
    def difference(self) -> float:
        return float(np.mean(self.claimed) - np.mean(self.rerun))

    @property
    def measurable(self) -> bool:
        values = (*self.claimed, *self.rerun)
        return len(self.claimed) >= 2 and len(self.rerun) >= 2 and all(math.isfinite(v) for v in values)

    @property
    def passed(self) -> bool:
        if not self.measurable:
            return False
        t, se = welch_bound(self.claimed, self.rerun, self.alpha)
        return abs(self.difference) <= t * se + self.slack

    def describe(self) -> str:
        head = f"{self.task}/{self.metric}"
        if not self.claimed:
            return f"{head}: produced by the re-run but missing from the entry: FAIL"
        if not self.rerun:
            return f"{head}: missing from the re-run: FAIL"
        if not self.measurable:
            return f"{head}: needs at least 2 finite values on each side: FAIL"
        t, se = welch_bound(self.claimed, self.rerun, self.alpha)
        return (f"{head}: claimed mean {np.mean(self.claimed):.4f} (n={len(self.claimed)}), re-run mean "
                f"{np.mean(self.rerun):.4f} (n={len(self.rerun)}); |difference| {abs(self.difference):.4f}, allowed "
                f"{t * se + self.slack:.4f} = t {t:.2f} x SE {se:.4f} + {self.slack:g}: "
                f"{'ok' if self.passed else 'FAIL'}")


def welch_bound(a: Sequence[float], b: Sequence[float], alpha: float) -> tuple[float, float]:
    """``(t, se)`` for ``mean(a) - mean(b)``: Welch's standard error and Student's two-sided ``1 - alpha``
    quantile at the Welch-Satterthwaite degrees of freedom (``(0, 0)`` when neither side varies)."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return 0.0, 0.0
    denominator = va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)
    df = (va + vb) ** 2 / denominator if denominator > 0 else min(len(a), len(b)) - 1
    from scipy import stats  # imported where used: scipy.stats takes 1-2 s to import
    return float(stats.t.ppf(1 - alpha / 2, df)), se


def fresh_checks(entry: Entry, suite: Suite, rerun: list[RunResult]) -> list[MeanCheck]:
    """One :class:`MeanCheck` per task and per metric the entry reports or the re-run produces, at level
    :data:`FAMILY_ALPHA` / number of checks."""
    pairs = []
    for task in suite.tasks:
        claimed = [run for run in entry.runs if run.task == task.name]
        again = [run for run in rerun if run.task == task.name]
        metrics = dict.fromkeys([*entry.aggregates.get(task.name, {}), *(m for run in again for m in run.metrics)])
        pairs += [(task.name, metric, _values(claimed, metric), _values(again, metric)) for metric in metrics]
    alpha = FAMILY_ALPHA / max(len(pairs), 1)
    return [MeanCheck(task=task, metric=metric, claimed=mine, rerun=theirs, alpha=alpha)
            for task, metric, mine, theirs in pairs]


def _values(runs: list[RunResult], metric: str) -> tuple[float, ...]:
    """Each run's value of ``metric``; empty unless every run has one."""
    if not runs or any(metric not in run.metrics for run in runs):
        return ()
    return tuple(run.metrics[metric] for run in runs)


def judge(entry: Entry, suite: Suite, rerun: list[RunResult], seeds: list[int], plan: Plan) -> Verdict:
    """The verdict of ``RULES[plan.mode]`` on ``entry`` given the re-run's results on data seeds ``seeds``."""
    problems = consistency_problems(entry, suite)
    checks: Sequence[RunCheck | MeanCheck] = (identical_checks(entry, suite, rerun) if plan.mode == "identical"
                                              else fresh_checks(entry, suite, rerun))
    details = [f"inconsistent: {problem}" for problem in problems] + [check.describe() for check in checks]
    accepted = not problems and bool(checks) and all(check.passed for check in checks)
    return Verdict(claims=claims_digest(entry), method=entry.method.name, accepted=accepted, mode=plan.mode,
                   rule=RULES[plan.mode], software=plan.software, seeds=seeds, details=details, by=verifier(),
                   at=datetime.now(timezone.utc), sbbench_version=sbbench.__version__,
                   torch_version=torch.__version__)


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


# --- recording ---------------------------------------------------------------------------------------------------


def record_verdict(root: Path, suite: Suite, path: Path, verdict: Verdict) -> Path:
    """Store ``verdict`` in the suite's verdict store under ``root`` and regenerate the tables, under the lock.

    Refuses (:class:`VerifyError`) when the entry file at ``path`` no longer holds the claims that
    were verified. Returns the verdict file.
    """
    with suite_lock(root, suite):
        try:
            current = claims_digest(read_entry(path))
        except EntryError as error:
            raise VerifyError(f"{path} can no longer be read, so no verdict was recorded: {error}") from None
        if current != verdict.claims:
            raise VerifyError(f"{path} changed while it was being verified; verify it again")
        stored = write_verdict(root, suite, verdict)
        regenerate_tables(root, suite)
    return stored


def _same_summary(a: Summary, b: Summary) -> bool:
    return a.n == b.n and all(_close(getattr(a, name), getattr(b, name)) for name in ("mean", "std", "ci_low",
                                                                                      "ci_high"))


def _summary_text(summary: Summary) -> str:
    return (f"mean {summary.mean:.6f}, std {summary.std:.6f}, CI [{summary.ci_low:.6f}, {summary.ci_high:.6f}] "
            f"(n={summary.n})")


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=CONSISTENCY, abs_tol=CONSISTENCY)
