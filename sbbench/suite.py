"""Suites: ordered, immutable sets of tasks with a version, seeds and a content hash.

Every result row carries its suite's name, version and hash. Changing anything that changes
numbers (a task, the seeds, a metric setting) changes the hash, and must bump the version.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from sbbench.tasks import TASKS, Task


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

    @property
    def label(self) -> str:
        """``<name>-v<version>``, the leaderboard folder name."""
        return f"{self.name}-v{self.version}"

    def content_hash(self) -> str:
        """sha256 of the suite's canonical JSON (tasks, seeds, metric settings)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

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
    ),
    "smoke": Suite(
        name="smoke",
        version=1,
        description="one tiny LMS-5 task, 2 seeds, cheap metrics: checks that a method runs (seconds)",
        tasks=(TASKS["lms5-smoke"],),
        seeds=(0, 1),
    ),
}
"""Every suite, by name."""


def get_suite(name: str) -> Suite:
    """The suite called ``name``; a KeyError lists the known names."""
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; known suites: {', '.join(SUITES)}")
    return SUITES[name]


