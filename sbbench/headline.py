"""A suite's headline score, and the accuracy guard that keeps it from being gamed.

Two rules (:attr:`Suite.score_rule <sbbench.suite.Suite.score_rule>`):

* ``mean`` (the v1 suites): the mean over tasks of the seed mean of ``primary_metric``.
* ``worst-group`` (v2), after the field's convention (WILDS, SubpopBench and SpuCo report
  worst-group accuracy). For run ``r`` of task ``t``, with ``c_t`` the oracle's ``s_rand_wga``
  (:class:`~sbbench.suite.TaskReference`)::

      score(r) = 0                              if acc(r) < CHANCE_ACCURACY (a failed run)
               = s_rand_wga(r) / c_t            otherwise
      score(t) = mean over seeds of score(r);   suite score = mean over tasks of score(t)

  ``s_rand_wga`` is the worst accuracy over the four groups (label x "S agrees with it") of
  the S-randomized test set. A model that relies only on S scores 0; one as good as the oracle
  scores 1.

The guard: a task is *flagged* for an entry whose clean accuracy there (seed mean) is more
than :data:`ACCURACY_GUARD` below ERM's; leaderboards rank every entry with a flag or a failed
run after every entry with neither. So trading accuracy for the headline (a constant
predictor, random logits, a huge logit offset) cannot outrank ERM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sbbench.results import RunResult
from sbbench.suite import Suite

CHANCE_ACCURACY = 0.55
"""A run whose clean accuracy is below this is at chance: a failed run (balanced binary tasks)."""

ACCURACY_GUARD = 0.02
"""How far below ERM's clean accuracy (seed mean) a task's accuracy may fall before it is flagged."""

WORST_GROUP_SCORE = ("oracle-normalised worst-group accuracy on the S-randomized test set (`s_rand_wga` divided by "
                     "the oracle's), mean over tasks: 0 = the model relies on S alone, 1 = as good as the oracle; "
                     f"a run below {CHANCE_ACCURACY} accuracy counts 0")
"""What a worst-group suite's score is, in one sentence (every view and command says it in these words)."""


@dataclass(frozen=True)
class TaskAssessment:
    """One task of an entry under the ``worst-group`` rule."""

    task: str
    score: float
    """Mean over seeds of the run scores (failed runs count 0)."""
    acc: float
    """Seed mean of clean accuracy."""
    runs_at_chance: int
    flagged: bool
    """Clean accuracy more than :data:`ACCURACY_GUARD` below ERM's."""

    @property
    def status(self) -> str:
        """``failed`` (a run at chance), ``flagged`` (accuracy guard) or ``ok``."""
        return "failed" if self.runs_at_chance else "flagged" if self.flagged else "ok"


@dataclass(frozen=True)
class Assessment:
    """An entry's headline score and the guard's verdict on each task."""

    score: float
    tasks: tuple[TaskAssessment, ...]

    @property
    def guarded(self) -> bool:
        """True when some task failed or was flagged: the entry ranks after every unguarded one."""
        return any(task.status != "ok" for task in self.tasks)

    @property
    def remarks(self) -> str:
        """``failed: a, b; flagged: c`` naming the tasks the guard caught, or the empty string."""
        parts = []
        for status in ("failed", "flagged"):
            names = [task.task for task in self.tasks if task.status == status]
            if names:
                parts.append(f"{status}: {', '.join(names)}")
        return "; ".join(parts)


def run_score(metrics: dict[str, float], oracle_wga: float) -> float:
    """One run's worst-group score: 0 at chance accuracy, else ``s_rand_wga / oracle_wga``."""
    if metrics["acc"] < CHANCE_ACCURACY:
        return 0.0
    return metrics["s_rand_wga"] / oracle_wga


def assess(suite: Suite, runs: Sequence[RunResult]) -> Assessment | None:
    """The ``worst-group`` assessment of ``runs`` (the ok runs of one entry), or ``None`` for a ``mean`` suite.

    Raises ``ValueError`` when a task of the suite has no run.
    """
    if suite.score_rule != "worst-group":
        return None
    tasks = []
    for task in suite.tasks:
        reference = suite.references[task.name]
        metrics = [run.metrics for run in runs if run.task == task.name and run.status == "ok"]
        if not metrics:
            raise ValueError(f"no run of task {task.name}")
        acc = sum(m["acc"] for m in metrics) / len(metrics)
        tasks.append(TaskAssessment(
            task=task.name,
            score=sum(run_score(m, reference.oracle_wga) for m in metrics) / len(metrics),
            acc=acc,
            runs_at_chance=sum(m["acc"] < CHANCE_ACCURACY for m in metrics),
            flagged=acc < reference.erm_acc - ACCURACY_GUARD,
        ))
    return Assessment(score=sum(t.score for t in tasks) / len(tasks), tasks=tuple(tasks))


def suite_score(suite: Suite, runs: Sequence[RunResult]) -> float:
    """The headline score of ``runs`` (one entry's ok runs) under the suite's rule."""
    assessment = assess(suite, runs)
    if assessment is not None:
        return assessment.score
    means = []
    for task in suite.tasks:
        values = [run.metrics[suite.primary_metric] for run in runs if run.task == task.name and run.status == "ok"]
        if not values:
            raise ValueError(f"no run of task {task.name}")
        means.append(float(np.asarray(values, dtype=float).mean()))  # as the entry's aggregates compute it
    return sum(means) / len(means)


def score_meaning(suite: Suite) -> str:
    """What the suite's score means, in one sentence for people."""
    if suite.score_rule == "worst-group":
        return WORST_GROUP_SCORE
    if suite.primary_metric == "s_rand_auc":
        return ("mean over tasks of s_rand_auc: 0.5 = the model ignores everything but S, "
                "1.0 = it also uses S^c fully")
    return f"mean over tasks of {suite.primary_metric}"
