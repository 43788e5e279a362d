"""Suites: ordered, immutable sets of tasks with a version, seeds and a content hash.

Every result row carries its suite's name, version and hash. Changing anything that changes
numbers (a task, the seeds, a metric setting) changes the hash, and must bump the version.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sbbench.tasks import (
    IMAGE_ATTACKS,
    IMAGE_V2_ATTACK,
    IMAGE_V2_VARIANTS,
    TASKS,
    V1_IMAGE_TASKS,
    V1_SYNTHETIC_TASKS,
    Task,
)

_NOT_HASHED = {"fit_seconds_limit", "fit_memory_limit_gb", "superseded_by", "references", "control_suite", "unadmitted"}


class TaskReference(BaseModel):
    """The two measured numbers a worst-group suite scores a task against (seed means of committed entries).

    ``oracle_wga``: the oracle's ``s_rand_wga``, the task's ceiling; ``erm_acc``: ERM's clean
    accuracy, the accuracy guard's reference. ``tests/test_suite_references.py`` checks both
    against the committed entries they come from.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    oracle_wga: float = Field(gt=0, le=1)
    erm_acc: float = Field(gt=0, le=1)


class Suite(BaseModel):
    """A fixed benchmark: tasks x seeds, scored by ``primary_metric`` averaged over tasks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int
    description: str
    tasks: tuple[Task, ...]
    seeds: tuple[int, ...] = Field(min_length=1)
    primary_metric: str = "s_rand_auc"
    score_rule: Literal["mean", "worst-group"] = "mean"
    """``mean``: the score is the mean over tasks of ``primary_metric``; ``worst-group``: the
    oracle-normalised worst-group accuracy with the accuracy guard (:mod:`sbbench.headline`)."""
    references: dict[str, TaskReference] = Field(default_factory=dict)
    """Per task, the references of the ``worst-group`` rule (not hashed: they never change a job's numbers)."""
    superseded_by: str | None = None
    """The label of the suite that replaces this one; superseded suites stay browsable and checkable."""
    unadmitted: dict[str, str] = Field(default_factory=dict)
    """Tasks the committed entries do not admit (:mod:`sbbench.leaderboard.admission`), each with the measured
    reason; ``tests/test_suite_references.py`` checks that the audit rejects exactly these. Not hashed."""
    control_suite: str | None = None
    """The label of the suite of S^c-only controls (task ``<name>-control`` for each task ``<name>``) whose ERM
    accuracy is the ceiling in this suite's admission rule (:mod:`sbbench.leaderboard.admission`); ``None``: the
    rule's absolute thresholds apply. Not hashed."""
    table_metrics: tuple[str, ...] = ("acc", "s_rand_auc", "sc_rand_auc", "s_rand_acc", "s_swap_acc",
                                      "adv_acc_l2_1.0")
    """Per-task columns of the leaderboard table, in order."""
    fit_seconds_limit: float = Field(default=4 * 3600.0, gt=0)
    """Wall-time limit of one job's ``fit`` under isolation (:mod:`sbbench.isolation`)."""
    fit_memory_limit_gb: float = Field(default=16.0, gt=0)
    """Address-space limit (GB) of the process running ``fit`` under isolation, on CPU."""

    @model_validator(mode="after")
    def _check_rule(self) -> Suite:
        if self.score_rule == "worst-group":
            missing = [t.name for t in self.tasks if t.name not in self.references]
            if self.primary_metric != "s_rand_wga" or missing:
                raise ValueError("a worst-group suite scores s_rand_wga and needs references for every task; "
                                 f"missing: {missing}")
        return self

    @property
    def label(self) -> str:
        """``<name>-v<version>``, the leaderboard folder name."""
        return f"{self.name}-v{self.version}"

    def content_hash(self) -> str:
        """sha256 of the suite's canonical JSON (tasks, seeds, metric settings).

        Left out: the resource limits (they decide whether a job may run, never its numbers), the
        references (scoring constants measured *on* the suite) and the superseded mark.
        A ``mean`` rule is left out too, so suites written before the rule existed keep their hashes.
        """
        exclude = _NOT_HASHED | ({"score_rule"} if self.score_rule == "mean" else set())
        return hashlib.sha256(self.model_dump_json(exclude=exclude).encode()).hexdigest()

    def task(self, name: str) -> Task:
        """The suite's task called ``name``."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"suite {self.label} has no task {name!r}; it has {', '.join(t.name for t in self.tasks)}")


REFERENCES_SYNTHETIC_V2: dict[str, TaskReference] = {
    "lms5": TaskReference(oracle_wga=0.9999, erm_acc=1.0),
    "lms7": TaskReference(oracle_wga=1.0, erm_acc=1.0),
    "ms57": TaskReference(oracle_wga=1.0, erm_acc=1.0),
    "noisy-lms7": TaskReference(oracle_wga=1.0, erm_acc=0.948),
    "adv-ms57": TaskReference(oracle_wga=1.0, erm_acc=1.0),
    "spurious-lms7": TaskReference(oracle_wga=1.0, erm_acc=0.9966),
}
"""Seed means (4 decimals) of the committed ``leaderboard/synthetic-v2`` entries of ``oracle-randomize-s``
(``s_rand_wga``) and ``erm`` (``acc``), sbbench 0.4.0; ``tests/test_suite_references.py`` checks them."""

_SUMMARY_TABLE = ("acc", "s_rand_wga", "s_rand_auc", "s_rand_acc", "s_swap_acc", "adv_acc_l2_0.1", "adv_acc_l2_0.25",
                  "feature_availability")

SYNTHETIC_V2 = Suite(
    name="synthetic",
    version=2,
    description="Shah et al.'s synthetic phenomena: LMS-5, LMS-7, MS-(5,7), noisy LMS-7, AdvMS-(5,7) and a "
                "rho=0.95 spurious LMS-7; (100,2)-FCN, SGD with momentum, 5 seeds; every task admitted",
    tasks=tuple(TASKS[name] for name in ("lms5", "lms7", "ms57", "noisy-lms7", "adv-ms57", "spurious-lms7")),
    seeds=(0, 1, 2, 3, 4),
    primary_metric="s_rand_wga",
    score_rule="worst-group",
    table_metrics=_SUMMARY_TABLE,
    fit_seconds_limit=1800.0,
    fit_memory_limit_gb=8.0,
    references=REFERENCES_SYNTHETIC_V2,
)

REFERENCES_IMAGES_V2: dict[str, TaskReference] = {
    "mnist-cifar": TaskReference(oracle_wga=0.8268, erm_acc=0.9994),
    "mnist-cifar-b": TaskReference(oracle_wga=0.8174, erm_acc=0.999),
    "mnist-cifar-c": TaskReference(oracle_wga=0.8236, erm_acc=0.9994),
}
"""Seed means (4 decimals) of the committed ``leaderboard/images-v2`` entries of ``oracle-randomize-s``
(``s_rand_wga``) and ``erm`` (``acc``), sbbench 0.4.0; ``tests/test_suite_references.py`` checks them."""

IMAGES_CONTROL_V2 = Suite(
    name="images-control",
    version=2,
    description="the CIFAR-only controls of images v2 (MNIST half blanked), scored by ERM: the ceiling of the images "
                "admission rule; not a benchmark",
    tasks=tuple(TASKS[f"{name}-control"] for name in IMAGE_V2_VARIANTS.values()),
    seeds=(0, 1, 2, 3, 4),
    primary_metric="acc",
    table_metrics=("acc", "auc", "sc_rand_auc", f"adv_acc_{IMAGE_V2_ATTACK.tag}"),
    fit_seconds_limit=1800.0,
    fit_memory_limit_gb=8.0,
)

IMAGES_V2 = Suite(
    name="images",
    version=2,
    description="MNIST-CIFAR dominoes A, B and C on real images (2,500 per class), compact CNN, 12 epochs of one-cycle "
                "SGD, 5 seeds; the oracle is measured against CIFAR-only controls (suite images-control)",
    tasks=tuple(TASKS[name] for name in IMAGE_V2_VARIANTS.values()),
    seeds=(0, 1, 2, 3, 4),
    primary_metric="s_rand_wga",
    score_rule="worst-group",
    table_metrics=("acc", "s_rand_wga", "s_rand_auc", "s_rand_acc", "s_swap_acc", f"adv_acc_{IMAGE_V2_ATTACK.tag}",
                   "feature_availability"),
    fit_seconds_limit=1800.0,
    fit_memory_limit_gb=8.0,
    references=REFERENCES_IMAGES_V2,
    control_suite=IMAGES_CONTROL_V2.label,
    unadmitted={"mnist-cifar-b": "ERM's s_rand_auc is 0.553 on seed 2, above the rule's 0.55 (0.535-0.553 on seeds "
                                 "0-4), although its S-randomized worst-group accuracy is 0.000-0.001 on every seed: "
                                 "ERM decides by the digit but, trained 12 whole epochs, ranks with a little CIFAR "
                                 "signal (docs/suites/images-v2.md)",
                "mnist-cifar-c": "the oracle's clean accuracy is 0.8291 on seed 0, 0.0003 under the floor c - 0.02 = "
                                 "0.8294 (control mean 0.8494; the oracle's other seeds 0.833-0.853, a one-run "
                                 "standard error of about 0.0085)"},
)

SYNTHETIC_V1 = Suite(
    name="synthetic",
    version=1,
    description="Shah et al.'s rotated synthetic tasks: LMS-5, MS-(5,7) and noisy LMS-7, (w,2)-FCNs, 5 seeds",
    tasks=V1_SYNTHETIC_TASKS,
    seeds=(0, 1, 2, 3, 4),
    table_metrics=(*Suite.model_fields["table_metrics"].default, "feature_availability"),
    superseded_by=SYNTHETIC_V2.label,
)

ALL_SUITES: tuple[Suite, ...] = (
    SYNTHETIC_V2,
    SYNTHETIC_V1,
    IMAGES_V2,
    IMAGES_CONTROL_V2,
    Suite(
        name="smoke",
        version=1,
        description="one tiny LMS-5 task, 2 seeds, cheap metrics: checks that a method runs (seconds)",
        tasks=(TASKS["lms5-smoke"],),
        seeds=(0, 1),
        fit_seconds_limit=300.0,
        fit_memory_limit_gb=4.0,
    ),
    Suite(
        name="ci",
        version=1,
        description="one 10-dimensional LMS-5 task, 4 seeds: checks scoring, caching and verification (seconds)",
        tasks=(TASKS["lms5-ci"],),
        seeds=(0, 1, 2, 3),
        fit_seconds_limit=300.0,
        fit_memory_limit_gb=4.0,
    ),
    Suite(
        name="images",
        version=1,
        description="MNIST-CIFAR dominoes (variant A) on real images, compact CNN, 5 seeds",
        tasks=V1_IMAGE_TASKS[:1],
        seeds=(0, 1, 2, 3, 4),
        table_metrics=("acc", "s_rand_auc", "sc_rand_auc", "fresh_s_rand_auc", "fresh_sc_rand_auc", "s_swap_acc",
                       *(f"adv_acc_{attack.tag}" for attack in IMAGE_ATTACKS)),
        superseded_by=IMAGES_V2.label,
    ),
)
"""Every suite, current and superseded."""

SUITES: dict[str, Suite] = {suite.name: suite for suite in ALL_SUITES if suite.superseded_by is None}
"""The current version of every suite, by name."""

SUITE_LABELS: dict[str, Suite] = {suite.label: suite for suite in ALL_SUITES}
"""Every suite, current or superseded, by label (``synthetic-v1``)."""


def get_suite(name: str) -> Suite:
    """The current suite called ``name``, or the suite labelled ``name`` (``synthetic-v1``); a KeyError lists both."""
    if name in SUITES:
        return SUITES[name]
    if name in SUITE_LABELS:
        return SUITE_LABELS[name]
    raise KeyError(f"unknown suite {name!r}; known suites: {', '.join(SUITES)} (superseded: "
                   f"{', '.join(s.label for s in ALL_SUITES if s.superseded_by) or 'none'})")


