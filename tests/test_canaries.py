"""Canaries every release must pass: ERM shows extreme simplicity bias, a do-nothing wrapper
reproduces ERM exactly, and the oracle that randomizes S during training removes the bias."""

from __future__ import annotations

import pytest
from torch import nn

from sbbench.methods.base import TrainContext
from sbbench.methods.erm import ERM
from sbbench.methods.registry import MethodInfo, resolve_method
from sbbench.runner import run_job
from sbbench.tasks import get_task


class DoNothingERM(ERM):
    """ERM behind one more layer of indirection: must give bit-identical results."""

    name = "do-nothing-erm"

    def fit(self, ctx: TrainContext) -> nn.Module:
        return super().fit(ctx)


def _run(method_cls: type, task, seed: int):
    info = MethodInfo.of_class(method_cls, source="test")
    result = run_job(info, info.defaults, task, seed)
    assert result.status == "ok", result.error
    return result


@pytest.mark.parametrize("seed", [0, 1])
def test_do_nothing_wrapper_reproduces_erm_exactly(tiny_task, seed: int) -> None:
    erm, wrapped = _run(ERM, tiny_task, seed), _run(DoNothingERM, tiny_task, seed)
    assert wrapped.metrics == erm.metrics
    assert wrapped.profiles == erm.profiles


def test_erm_shows_extreme_simplicity_bias_on_a_tiny_task(tiny_task) -> None:
    metrics = _run(ERM, tiny_task, 0).metrics
    assert metrics["acc"] >= 0.97
    assert 0.4 <= metrics["s_rand_auc"] <= 0.6
    assert metrics["sc_rand_auc"] >= 0.95


@pytest.mark.slow
def test_erm_shows_extreme_simplicity_bias_on_lms5() -> None:
    metrics = _run(resolve_method("erm").cls, get_task("lms5"), 0).metrics
    assert metrics["acc"] >= 0.99
    assert 0.45 <= metrics["s_rand_auc"] <= 0.55
    assert metrics["sc_rand_auc"] >= 0.99
    assert metrics["s_swap_acc"] <= 0.05
    assert metrics["sc_swap_acc"] >= 0.97


@pytest.mark.slow
def test_oracle_randomizing_s_removes_the_bias_on_lms5() -> None:
    metrics = _run(resolve_method("oracle-randomize-s").cls, get_task("lms5"), 0).metrics
    assert metrics["s_rand_auc"] >= 0.95
    assert metrics["acc"] >= 0.95
