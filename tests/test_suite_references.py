"""The worst-group suites' references are the committed entries' measurements, and those entries admit every task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sbbench.leaderboard.admission import ERM, ORACLE, audit
from sbbench.leaderboard.store import entry_path, read_entry
from sbbench.suite import ALL_SUITES, Suite

LEADERBOARD = Path(__file__).resolve().parent.parent / "leaderboard"
WORST_GROUP = [suite for suite in ALL_SUITES if suite.score_rule == "worst-group"]


def seed_mean(suite: Suite, name: str, task: str, metric: str) -> float:
    entry = read_entry(entry_path(LEADERBOARD, suite, name))
    assert entry.suite.hash == suite.content_hash(), f"the committed {name} entry of {suite.label} is stale"
    return float(np.mean([run.metrics[metric] for run in entry.runs if run.task == task]))


@pytest.mark.parametrize("suite", WORST_GROUP, ids=lambda suite: suite.label)
def test_references_are_the_committed_oracle_and_erm_seed_means(suite: Suite) -> None:
    for task in suite.tasks:
        reference = suite.references[task.name]
        assert reference.oracle_wga == pytest.approx(seed_mean(suite, ORACLE, task.name, "s_rand_wga"), abs=5e-4)
        assert reference.erm_acc == pytest.approx(seed_mean(suite, ERM, task.name, "acc"), abs=5e-4)


@pytest.mark.parametrize("suite", WORST_GROUP, ids=lambda suite: suite.label)
def test_the_committed_entries_admit_every_task_but_the_declared_ones(suite: Suite) -> None:
    rejected = {a.task: a.missing or [s for s in a.seeds if not (s.bias_ok and s.oracle_ok)]
                for a in audit(LEADERBOARD, suite) if not a.admitted}
    assert set(rejected) == set(suite.unadmitted), rejected
    assert not any(a.missing for a in audit(LEADERBOARD, suite)), "every entry the audit needs is committed"
