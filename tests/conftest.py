"""Shared fixtures: a tiny suite that trains in about a second per job."""

from __future__ import annotations

import pytest
import torch

from sbbench.data.synthetic import lms
from sbbench.metrics.evaluate import AttackSpec, MetricSpec
from sbbench.models import BackboneSpec
from sbbench.suite import Suite
from sbbench.tasks import Task
from sbbench.training import TrainConfig

torch.set_num_threads(1)

TINY_TASK = Task(
    name="tiny-lms5",
    description="LMS-5 with 2000 train points, for tests",
    data=lms(5, d=10, n_train=2000, n_test=500, n_pool=300, n_val=100),
    backbone=BackboneSpec(width=32, depth=2),
    budget=TrainConfig(lr=0.1, batch_size=128, max_epochs=5),
    metrics=MetricSpec(randomization_repeats=2, attacks=[AttackSpec(norm="l2", eps=1.0, steps=5)],
                       universal=False, coordinate_profile=False),
)

TINY_SUITE = Suite(name="tiny", version=1, description="tests only", tasks=(TINY_TASK,), seeds=(0, 1))


@pytest.fixture
def tiny_task() -> Task:
    return TINY_TASK


@pytest.fixture
def tiny_suite() -> Suite:
    return TINY_SUITE
