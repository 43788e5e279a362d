"""The admission rule for a benchmark task, checked from committed entries.

A task measures simplicity bias only if, within its fixed budget and on **every** seed of its
suite:

(a) ERM shows the bias the task is about:

    * a task whose test set has a fully predictive S (noise-free, or S corrupted only in
      training: ``rho < 1``): ERM's S-randomized AUC ``s_rand_auc <= 0.55``;
    * a noisy-S task (S only partly predictive at test time too): ERM's clean accuracy is at
      least 0.03 below the S^c-only ceiling, measured as the oracle's clean accuracy on the
      same seed;

(b) the oracle (S randomized in training) learns S^c: clean accuracy ``>= 0.97`` and
    S-randomized accuracy ``>= 0.95``. A suite with S^c-only controls
    (:attr:`Suite.control_suite <sbbench.suite.Suite.control_suite>`, the images) replaces both
    thresholds by the control's ceiling ``c`` minus :data:`CONTROL_MARGIN`, where ``c`` is ERM's
    clean accuracy on the task's control (MNIST half blanked), averaged over the control suite's
    seeds: CIFAR pairs are not separable by the compact CNN (``c`` is about 0.83), so an absolute
    0.95 cannot hold, and the seed mean keeps the control's own seed noise out of the comparison.

The entries are ERM's (:data:`ERM`) and the oracle's (:data:`ORACLE`) in the suite's folder, and
ERM's in the control suite's; each check uses the run of the same data seed. :func:`audit`
returns one :class:`TaskAdmission` per task; a task with a missing run is not admitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sbbench.data.synthetic import SyntheticSpec
from sbbench.leaderboard.store import EntryError, entry_path, read_entry
from sbbench.results import RunResult
from sbbench.suite import Suite, get_suite
from sbbench.tasks import Task

ERM = "erm"
ORACLE = "oracle-randomize-s"
MAX_ERM_S_RAND_AUC = 0.55
MIN_NOISY_ACCURACY_GAP = 0.03
MIN_ORACLE_ACC = 0.97
MIN_ORACLE_S_RAND_ACC = 0.95
CONTROL_MARGIN = 0.02
"""How far below the S^c-only control's accuracy the oracle may be (suites with controls)."""


def rule(suite: Suite) -> str:
    """The rule for ``suite`` in one sentence, as ``sbbench suite audit`` prints it."""
    bias = (f"admitted when, on every seed: ERM s_rand_auc <= {MAX_ERM_S_RAND_AUC} (noise-free) or ERM clean "
            f"accuracy >= {MIN_NOISY_ACCURACY_GAP} below the oracle's (noisy S)")
    if suite.control_suite:
        return (f"{bias}; and the oracle's clean and S-randomized accuracies >= c - {CONTROL_MARGIN}, c = ERM's "
                f"accuracy on the task's CIFAR-only control in {suite.control_suite} (seed mean)")
    return (f"{bias}; and the oracle's clean accuracy >= {MIN_ORACLE_ACC} and S-randomized accuracy >= "
            f"{MIN_ORACLE_S_RAND_ACC}")


@dataclass(frozen=True)
class SeedCheck:
    """The rule on one seed: the values it compared and whether each part held."""

    seed: int
    bias_value: float
    """ERM's ``s_rand_auc`` (noise-free tasks) or the oracle's minus ERM's clean accuracy (noisy S)."""
    bias_ok: bool
    oracle_acc: float
    oracle_s_rand_acc: float
    oracle_ok: bool
    control_acc: float | None = None
    """The control's ceiling ``c`` (suites with controls), else ``None``."""


@dataclass(frozen=True)
class TaskAdmission:
    """Whether a task is admitted, seed by seed, or why it cannot be checked."""

    task: str
    kind: str
    """``noise-free`` or ``noisy S``: which form of part (a) applies."""
    seeds: tuple[SeedCheck, ...]
    missing: str = ""
    """Why the check could not run (an entry or a run is missing); empty when it ran."""

    @property
    def admitted(self) -> bool:
        """True when the check ran and both parts held on every seed."""
        return not self.missing and all(s.bias_ok and s.oracle_ok for s in self.seeds)


def noisy_s(task: Task) -> bool:
    """True for a task whose S is only partly predictive on its test set (a noisy simple block)."""
    return isinstance(task.data, SyntheticSpec) and task.data.simple.noise > 0


def audit(root: Path, suite: Suite) -> list[TaskAdmission]:
    """Check every task of ``suite`` against the rule, from the ERM and oracle entries under ``root``."""
    runs, problems = {}, []
    for name in (ERM, ORACLE):
        entry_runs = _ok_runs(root, suite, name, problems)
        if entry_runs is not None:
            runs[name] = entry_runs
    ceilings = _control_ceilings(root, suite, problems) if suite.control_suite else {}
    return [_admit(task, suite.seeds, runs, ceilings, "; ".join(problems)) for task in suite.tasks]


def _ok_runs(root: Path, suite: Suite, name: str, problems: list[str]) -> dict[tuple[str, int], RunResult] | None:
    """The ok runs of ``name``'s current entry on ``suite``, by (task, seed); ``None`` (and a problem) if unusable."""
    try:
        entry = read_entry(entry_path(root, suite, name))
    except EntryError as error:
        problems.append(f"no readable {name} entry in {suite.label} ({error})")
        return None
    if entry.suite.hash != suite.content_hash():
        problems.append(f"the {name} entry of {suite.label} is stale (scored on another suite hash)")
        return None
    return {(r.task, r.seed): r for r in entry.runs if r.status == "ok"}


def _control_ceilings(root: Path, suite: Suite, problems: list[str]) -> dict[str, float]:
    """Per task of ``suite``: ERM's clean accuracy on ``<task>-control``, mean over the control suite's seeds."""
    controls = get_suite(suite.control_suite)
    runs = _ok_runs(root, controls, ERM, problems)
    if runs is None:
        return {}
    ceilings = {}
    for task in suite.tasks:
        accs = [runs[(f"{task.name}-control", seed)].metrics["acc"] for seed in controls.seeds
                if (f"{task.name}-control", seed) in runs]
        if len(accs) < len(controls.seeds):
            problems.append(f"the control of {task.name} lacks ok runs")
            return {}
        ceilings[task.name] = sum(accs) / len(accs)
    return ceilings


def _admit(task: Task, seeds: tuple[int, ...], runs: dict[str, dict[tuple[str, int], RunResult]],
           ceilings: dict[str, float], problem: str) -> TaskAdmission:
    kind = "noisy S" if noisy_s(task) else "noise-free"
    if problem:
        return TaskAdmission(task=task.name, kind=kind, seeds=(), missing=problem)
    checks = []
    for seed in seeds:
        erm, oracle = runs[ERM].get((task.name, seed)), runs[ORACLE].get((task.name, seed))
        if erm is None or oracle is None:
            return TaskAdmission(task=task.name, kind=kind, seeds=(), missing=f"no ok run of seed {seed}")
        checks.append(_check_seed(kind, seed, erm.metrics, oracle.metrics, ceilings.get(task.name)))
    return TaskAdmission(task=task.name, kind=kind, seeds=tuple(checks))


def _check_seed(kind: str, seed: int, erm: dict[str, float], oracle: dict[str, float],
                control_acc: float | None) -> SeedCheck:
    if kind == "noisy S":
        gap = oracle["acc"] - erm["acc"]
        bias_value, bias_ok = gap, gap >= MIN_NOISY_ACCURACY_GAP
    else:
        bias_value, bias_ok = erm["s_rand_auc"], erm["s_rand_auc"] <= MAX_ERM_S_RAND_AUC
    if control_acc is None:
        min_acc, min_s_rand_acc = MIN_ORACLE_ACC, MIN_ORACLE_S_RAND_ACC
    else:
        min_acc = min_s_rand_acc = control_acc - CONTROL_MARGIN
    return SeedCheck(seed=seed, bias_value=bias_value, bias_ok=bias_ok, oracle_acc=oracle["acc"],
                     oracle_s_rand_acc=oracle["s_rand_acc"], control_acc=control_acc,
                     oracle_ok=oracle["acc"] >= min_acc and oracle["s_rand_acc"] >= min_s_rand_acc)


def admission_rows(admissions: list[TaskAdmission]) -> list[dict[str, str]]:
    """One printable row per task: the worst seed's value of each check and the verdict."""
    rows = []
    for admission in admissions:
        if admission.missing:
            rows.append({"task": admission.task, "kind": admission.kind, "ERM bias (worst)": "–",
                         "oracle acc (min)": "–", "oracle S-rand (min)": "–",
                         "admitted": f"no: {admission.missing}"})
            continue
        seeds = admission.seeds
        noisy = admission.kind == "noisy S"
        worst = min(s.bias_value for s in seeds) if noisy else max(s.bias_value for s in seeds)
        passed = sum(s.bias_ok and s.oracle_ok for s in seeds)
        rows.append({
            "task": admission.task, "kind": admission.kind,
            "ERM bias (worst)": f"{'acc gap' if noisy else 'auc'} {worst:.3f}",
            "oracle acc (min)": f"{min(s.oracle_acc for s in seeds):.4f}",
            "oracle S-rand (min)": f"{min(s.oracle_s_rand_acc for s in seeds):.4f}",
            **({} if seeds[0].control_acc is None else {"control (mean)": f"{seeds[0].control_acc:.4f}"}),
            "admitted": f"{'yes' if admission.admitted else 'no'} {passed}/{len(seeds)}",
        })
    return rows
