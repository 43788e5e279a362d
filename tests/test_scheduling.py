"""Jobs start costliest first; results still come back in suite order."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY_TASK

from sbbench.cache import ResultCache
from sbbench.methods.registry import resolve_method
from sbbench.results import RunResult
from sbbench.scoring import score
from sbbench.suite import Suite


def test_the_costliest_jobs_run_first_and_results_keep_suite_order(tmp_path: Path) -> None:
    wide = TINY_TASK.model_copy(update={"name": "tiny-wide",
                                        "backbone": TINY_TASK.backbone.model_copy(update={"width": 64})})
    suite = Suite(name="order", version=1, description="tests only", tasks=(TINY_TASK, wide), seeds=(0,))
    info = resolve_method("erm")
    started: list[str] = []

    def record(result: RunResult, reused: bool) -> None:
        started.append(result.task)

    outcome = score(info, info.defaults, suite, cache=ResultCache(tmp_path),
                    executor="inline", on_result=record)
    assert started == ["tiny-wide", TINY_TASK.name]
    assert [r.task for r in outcome.results] == [TINY_TASK.name, "tiny-wide"]
