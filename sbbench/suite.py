"""Suites: ordered, immutable sets of tasks with a version, seeds and a content hash.

Every result row carries its suite's name, version and hash. Changing anything that changes
numbers (a task, the seeds, a metric setting) changes the hash, and must bump the version.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from sbbench.tasks import IMAGE_ATTACKS, TASKS, Task

_RESOURCE_LIMITS = {"fit_seconds_limit", "fit_memory_limit_gb"}


class Suite(BaseModel):
    """A fixed benchmark: tasks x seeds, scored by ``primary_metric`` averaged over tasks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int
    description: str
    tasks: tuple[Task, ...]
    seeds: tuple[int, ...] = Field(min_length=1)
    primary_metric: str = "s_rand_auc"
    table_metrics: tuple[str, ...] = ("acc", "s_rand_auc", "sc_rand_auc", "s_rand_acc", "s_swap_acc",
                                      "adv_acc_l2_1.0")
    """Per-task columns of the leaderboard table, in order."""
    fit_seconds_limit: float = Field(default=4 * 3600.0, gt=0)
    """Wall-time limit of one job's ``fit`` under isolation (:mod:`sbbench.isolation`)."""
    fit_memory_limit_gb: float = Field(default=16.0, gt=0)
    """Address-space limit (GB) of the process running ``fit`` under isolation, on CPU."""

    @property
    def label(self) -> str:
        """``<name>-v<version>``, the leaderboard folder name."""
        return f"{self.name}-v{self.version}"

    def content_hash(self) -> str:
        """sha256 of the suite's canonical JSON (tasks, seeds, metric settings).

        The resource limits are left out: they decide whether a job may run, never its numbers.
        """
        return hashlib.sha256(self.model_dump_json(exclude=_RESOURCE_LIMITS).encode()).hexdigest()

    def task(self, name: str) -> Task:
        """The suite's task called ``name``."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"suite {self.label} has no task {name!r}; it has {', '.join(t.name for t in self.tasks)}")


SUITES: dict[str, Suite] = {
    "synthetic": Suite(
        name="synthetic",
        version=1,
        description="Shah et al.'s rotated synthetic tasks: LMS-5, MS-(5,7) and noisy LMS-7, (w,2)-FCNs, 5 seeds",
        tasks=(TASKS["lms5"], TASKS["ms57"], TASKS["noisy-lms7"]),
        seeds=(0, 1, 2, 3, 4),
        table_metrics=(*Suite.model_fields["table_metrics"].default, "feature_availability"),
    ),
    "smoke": Suite(
        name="smoke",
        version=1,
        description="one tiny LMS-5 task, 2 seeds, cheap metrics: checks that a method runs (seconds)",
        tasks=(TASKS["lms5-smoke"],),
        seeds=(0, 1),
        fit_seconds_limit=300.0,
        fit_memory_limit_gb=4.0,
    ),
    "ci": Suite(
        name="ci",
        version=1,
        description="one 10-dimensional LMS-5 task, 4 seeds: checks scoring, caching and verification (seconds)",
        tasks=(TASKS["lms5-ci"],),
        seeds=(0, 1, 2, 3),
        fit_seconds_limit=300.0,
        fit_memory_limit_gb=4.0,
    ),
    "images": Suite(
        name="images",
        version=1,
        description="MNIST-CIFAR dominoes (variant A) on real images, compact CNN, 5 seeds",
        tasks=(TASKS["mnist-cifar"],),
        seeds=(0, 1, 2, 3, 4),
        table_metrics=("acc", "s_rand_auc", "sc_rand_auc", "fresh_s_rand_auc", "fresh_sc_rand_auc", "s_swap_acc",
                       *(f"adv_acc_{attack.tag}" for attack in IMAGE_ATTACKS)),
    ),
}
"""Every suite, by name."""


def get_suite(name: str) -> Suite:
    """The suite called ``name``; a KeyError lists the known names."""
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; known suites: {', '.join(SUITES)}")
    return SUITES[name]


