"""Shared fixtures: a tiny suite that trains in about a second per job; the hypothesis profile."""

from __future__ import annotations

import dataclasses
import io
import shutil
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from sbbench.data.synthetic import lms
from sbbench.metrics.evaluate import AttackSpec, MetricSpec
from sbbench.models import BackboneSpec
from sbbench.suite import Suite
from sbbench.tasks import Task
from sbbench.training import TrainConfig

torch.set_num_threads(1)

# Property tests are reproducible: every run tries the same examples (a seed derived from each
# test's name) and no example database is read or written, so CI cannot fail at random and a
# failure found once is not replayed from a local ``.hypothesis/`` on that machine only. The
# profile is loaded here, before the test modules build their ``settings(...)``, which inherit
# from it. Known counter-examples are written into the tests as ``@example(...)``; to hunt for
# new ones, run ``python -m pytest --hypothesis-profile=explore tests/test_bad_input_properties.py``.
settings.register_profile("sbbench", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, max_examples=1000, print_blob=True)
settings.load_profile("sbbench")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run a property test whose own settings make it randomized or use an example database."""
    if config.getoption("--hypothesis-profile", None) not in (None, "sbbench"):
        return  # another profile, asked for explicitly (e.g. explore)
    randomized = [item.nodeid for item in items
                  if getattr(getattr(item, "obj", None), "is_hypothesis_test", False)
                  and not _reproducible(getattr(item.obj, "_hypothesis_internal_use_settings", None))]
    if randomized:
        raise pytest.UsageError("property tests must be derandomized and use no example database "
                                f"(see tests/conftest.py): {', '.join(randomized)}")


def _reproducible(used: settings | None) -> bool:
    return used is None or (used.derandomize and used.database is None)  # None: settings not found, not checked


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


def run_cli(*args: str, out: io.StringIO | None = None, err: io.StringIO | None = None) -> tuple[int, str, str]:
    """Run the console script's entry point in this process; return (exit code, stdout, stderr)."""
    from sbbench.cli import main

    out, err = out or io.StringIO(), err or io.StringIO()
    argv = sys.argv
    sys.argv = ["sbbench", *args]
    try:
        with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as exited:
            main()
    finally:
        sys.argv = argv
    return exited.value.code, out.getvalue(), err.getvalue()


class Poisoned:
    """Stands in for a dataset's test split: any use fails the test."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the test split was read (.{name})")

    def __len__(self) -> int:
        raise AssertionError("the test split was read (len)")


def poisoned(data):
    """``data`` (a :class:`sbbench.data.dataset.Dataset`) with its test split replaced by :class:`Poisoned`."""
    return dataclasses.replace(data, test=Poisoned())


def committed_entries(root: Path, suite_label: str, names: tuple[str, ...] = ("erm", "oracle-randomize-s")) -> Path:
    """Copy the named committed entries of ``leaderboard/<suite_label>`` into a fresh leaderboard folder ``root``.

    For tests that read real entries but must not move when another entry is committed. Returns ``root``.
    """
    entries = root / suite_label / "entries"
    entries.mkdir(parents=True)
    for name in names:
        shutil.copy(Path(__file__).resolve().parents[1] / "leaderboard" / suite_label / "entries" / f"{name}.json",
                    entries)
    return root
