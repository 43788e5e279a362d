"""Training diagnostics: the channel from ``ctx.report`` to ``RunResult.training``, and each regulariser's proof
that it acted.

The fast tests drive the channel with a tiny submission on ``lms5-ci`` (about a second per job)
through the isolated and inline executors (Dask too, marked slow: starting a cluster costs about
30 s), and check how bad names and values fail.

The slow test trains every built-in method with a regulariser on the real task ``lms5`` of suite
``synthetic`` v2 (100,000 training points, so 391 steps per epoch; SGD with momentum; the stopping
rule of train accuracy 1.0 or loss < 0.01), data seed 0, and requires that the regulariser was
active on some optimiser steps (``penalty_steps > 0``) and made up at least
:data:`MIN_PENALTY_SHARE` of the objective on them (``penalty_share``). A penalty that a warm-up or
an early stop keeps switched off reports ``penalty_steps == 0`` and fails it; the slow test's
control (spectral decoupling with a warm-up longer than the run) shows that it does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import textwrap
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from sbbench.cache import ResultCache
from sbbench.isolation import IsolatedFit, Limits, _Message
from sbbench.methods.base import PenaltyMeter, Track, TrainContext, TrainDiagnostics
from sbbench.methods.registry import BUILTIN_METHODS, MethodInfo, load_folder, resolve_method
from sbbench.models.transfer import export_model
from sbbench.results import DiagnosticError, RunResult
from sbbench.runner import FitFailure, build_data, fit_in_process, fit_job, run_job, train_context
from sbbench.scoring import score
from sbbench.suite import Suite
from sbbench.tasks import TASKS, get_task

CPU = torch.device("cpu")

REGULARISERS: dict[str, dict[str, object]] = {
    "spectral-decoupling": {},
    "sam": {},
    "input-grad-diversity": {},
    "cmid": {},
    "sifer": {},
    "orthop": {},
    # Their regularised stages run a fixed number of epochs, without the stopping rule, from the
    # first step on: one epoch shows that the term acts and costs a twentieth (a tenth) of the default.
    "d-bat": {"epochs": 1},
    "divdis": {"epochs": 1},
    "divdis-t2": {"epochs": 1},
    "adv-train-linf": {"max_epochs": 1},
    "adv-train-l2": {"max_epochs": 1},
}
"""Every built-in method with a regulariser, with the overrides the slow test trains it with (else defaults)."""

WITHOUT_REGULARISER = {"erm", "erm-adam", "ensemble", "oracle-randomize-s", "dfr", "jtt", "lff", "group-dro"}
"""Built-in methods that add no term to the loss: plain training, independent members, an oracle, and the
reweighting and last-layer methods (which report what they reweighted: ``error_set_share``, ``mean_weight``,
``conflicting_share``, ``val_accuracy``; ``tests/test_methods_new_baselines.py``)."""

MIN_PENALTY_SHARE = 0.01
"""The least mean share of the objective the regulariser must make up on the steps it acted (1%). Measured on
lms5 v2 seed 0 the smallest is orthop's 0.036 (the projection removes 3.6% of the inputs' energy)."""

REPORTER = '''\
import math

import torch

from sbbench.methods import HParams, Method, Track, hparam


class Params(HParams):
    mode: str = hparam("ok")


class Reporter(Method):
    """Trains ERM and reports a few values; ``mode`` makes one of them invalid."""

    name = "reporter"
    track = Track.T0
    HParams = Params

    def fit(self, ctx):
        model, log = ctx.fit_model()
        ctx.report("epochs", log.epochs)
        ctx.report("final_loss", torch.tensor(log.train_loss[-1]))
        ctx.report("answer", 41)
        ctx.report("answer", 42.5)  # a second report replaces the first
        if self.hparams.mode == "nan":
            ctx.report("penalty_share", math.nan)
        elif self.hparams.mode == "name":
            ctx.report("Penalty Share", 0.5)
        elif self.hparams.mode == "forged":
            ctx.diagnostics._values["penalty_share"] = math.inf  # past report's checks
        return model
'''


@pytest.fixture(scope="module")
def reporter(tmp_path_factory: pytest.TempPathFactory) -> MethodInfo:
    folder = tmp_path_factory.mktemp("reporter")
    (folder / "submission.toml").write_text('name = "reporter"\ntrack = "T0"\n')
    (folder / "method.py").write_text(textwrap.dedent(REPORTER))
    return load_folder(folder)


ONE_SEED_CI = Suite(name="ci-one-seed", version=1, description="lms5-ci, seed 0 (tests only)",
                    tasks=(get_task("lms5-ci"),), seeds=(0,))


def check_reporter_values(result: RunResult) -> None:
    assert result.status == "ok", result.error
    assert set(result.training) == {"epochs", "final_loss", "answer"}
    assert result.training["answer"] == 42.5
    assert 1 <= result.training["epochs"] <= get_task("lms5-ci").budget.max_epochs
    assert 0 < result.training["final_loss"] < 1


# --- the channel ---------------------------------------------------------------------------------


def test_reported_values_reach_the_run_result_and_the_cache_on_the_isolated_and_inline_executors(
        reporter: MethodInfo, tmp_path: Path) -> None:
    training = {}
    for executor in ("isolated", "inline"):
        cache = ResultCache(tmp_path / executor)
        outcome = score(reporter, reporter.defaults, ONE_SEED_CI, cache=cache, executor=executor)
        (result,) = outcome.results
        check_reporter_values(result)
        (cached,) = [cache.load(path.stem) for path in (tmp_path / executor).rglob("*.json")]
        assert cached == result
        training[executor] = result.training
    assert training["isolated"] == training["inline"]


@pytest.mark.slow
def test_reported_values_cross_a_dask_cluster(reporter: MethodInfo, tmp_path: Path) -> None:
    """About 30 s on a shared 2-core CPU (starting the cluster and its worker's fit process)."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        outcome = score(reporter, reporter.defaults, ONE_SEED_CI, cache=ResultCache(tmp_path / "cache"),
                        executor="dask", scheduler=cluster.scheduler_address)
    (result,) = outcome.results
    check_reporter_values(result)


@pytest.mark.parametrize(("mode", "reason"), [
    ("nan", "DiagnosticError: training diagnostic 'penalty_share' must be finite, got nan"),
    ("name", "DiagnosticError: a training diagnostic's name must be snake_case"),
    ("forged", "DiagnosticError: training diagnostic 'penalty_share' must be finite, got inf"),
])
def test_an_invalid_report_fails_the_job_with_a_clear_reason(mode: str, reason: str, reporter: MethodInfo) -> None:
    task = get_task("lms5-ci")
    for fit in (IsolatedFit(Limits.of(ONE_SEED_CI)), fit_in_process):
        result = run_job(reporter, {"mode": mode}, task, 0, device=CPU, fit=fit)
        assert result.status == "failed" and result.error is not None and result.error.startswith(reason), \
            result.error
        assert result.training == {}


def test_the_parent_checks_the_diagnostics_a_fit_process_sends(reporter: MethodInfo,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A child runs the method's code, so what it sends is checked again before it reaches the context."""
    task = get_task("lms5-ci")
    data = build_data(task, 0)
    ctx = train_context(task, data, Track.T0, 0, CPU, lambda message: None)
    archive = export_model(ctx.make_backbone().eval(), data.train.x[:8])
    fitter = IsolatedFit(Limits.of(ONE_SEED_CI))
    for sent, reason in [({"Bad Name": 1.0}, "snake_case"), ({"share": float("inf")}, "must be finite"),
                         ({f"v{i}": 0.0 for i in range(65)}, "at most 64")]:
        monkeypatch.setattr(IsolatedFit, "_fit", lambda *args, sent=sent, **kwargs: (archive, sent))
        with pytest.raises(FitFailure, match=f"the fit process sent invalid training diagnostics: .*{reason}"):
            fitter(reporter, reporter.defaults, ctx)
    assert ctx.diagnostics.values() == {}
    with pytest.raises(ValidationError):
        _Message.model_validate_json('{"kind": "model", "diagnostics": {"share": NaN}}')


@pytest.mark.parametrize(("name", "value", "message"), [
    ("penalty_share", float("nan"), "must be finite"),
    ("penalty_share", float("inf"), "must be finite"),
    ("penalty_share", torch.tensor([0.1, 0.2]), "must be a number"),
    ("penalty_share", "0.5", "must be a number"),
    ("penalty_share", True, "must be a number"),
    ("penalty_share", None, "must be a number"),
    ("PenaltyShare", 0.5, "snake_case"),
    ("penalty share", 0.5, "snake_case"),
    ("_share", 0.5, "snake_case"),
    ("", 0.5, "snake_case"),
    ("s" * 41, 0.5, "at most 40 characters"),
    (3, 0.5, "snake_case"),
])
def test_report_refuses_bad_names_and_values(name: object, value: object, message: str) -> None:
    diagnostics = TrainDiagnostics()
    with pytest.raises(DiagnosticError, match=message):
        diagnostics.report(name, value)  # type: ignore[arg-type]
    assert diagnostics.values() == {}


def test_report_accepts_numbers_and_one_element_tensors_and_caps_the_count() -> None:
    diagnostics = TrainDiagnostics()
    diagnostics.report("steps", 3)
    diagnostics.report("share", torch.tensor(0.25))
    diagnostics.report("x2", torch.tensor([1.5], dtype=torch.float64))
    assert diagnostics.values() == {"steps": 3.0, "share": 0.25, "x2": 1.5}
    assert all(type(value) is float for value in diagnostics.values().values())
    for index in range(61):
        diagnostics.report(f"value_{index}", index)
    with pytest.raises(DiagnosticError, match="at most 64"):
        diagnostics.report("one_too_many", 0.0)


def test_a_result_without_training_diagnostics_keeps_its_old_json_and_checksum(tmp_path: Path) -> None:
    old = ('{"schema_version":1,"method":"erm","method_version":"1","track":"T0","code_hash":"c","hparams":{},'
           '"task":"lms5-ci","task_hash":"h","seed":0,"status":"ok","error":null,"metrics":{"acc":0.5},'
           '"profiles":{},"train_seconds":1.0,"eval_seconds":2.0}')
    result = RunResult.model_validate_json(old)
    assert result.training == {}
    assert result.model_dump_json() == old  # so entry digests and cache checksums of old results are unchanged
    cache = ResultCache(tmp_path)
    checksum = hashlib.sha256(old.encode()).hexdigest()
    cache.path("ab" * 32).parent.mkdir(parents=True)
    cache.path("ab" * 32).write_text(f'{{"checksum":"{checksum}","result":{old}}}')
    assert cache.load("ab" * 32) == result, "an old cache file is still valid"
    with_training = result.model_copy(update={"training": {"penalty_steps": 3.0}})
    assert json.loads(with_training.model_dump_json())["training"] == {"penalty_steps": 3.0}
    with pytest.raises(ValueError, match="must be finite"):
        RunResult.model_validate_json(with_training.model_dump_json().replace("3.0", "NaN"))


def test_penalty_meter_by_hand() -> None:
    meter = PenaltyMeter()
    meter.idle(3)
    meter.acted(torch.tensor(1.0), torch.tensor(3.0))  # share 1 / 4
    meter.acted(torch.tensor(-2.0), torch.tensor(2.0))  # |penalty| / (|loss| + |penalty|) = 1 / 2
    meter.record(0.0, steps=2)
    assert (meter.steps, meter.penalty_steps) == (7, 4)
    assert meter.penalty_share == pytest.approx((0.25 + 0.5) / 4)
    messages: list[str] = []
    never = PenaltyMeter()
    never.idle(5)
    ctx = TrainContext(train=None, input_shape=(1,), budget=None, seed=0, device=CPU,  # type: ignore[arg-type]
                       make_backbone=lambda: None, log=messages.append)  # type: ignore[arg-type,return-value]
    never.report(ctx)
    assert ctx.diagnostics.values() == {"steps": 5.0, "penalty_steps": 0.0, "penalty_share": 0.0}
    assert messages == ["warning: the regulariser never acted in 5 optimiser steps"]


def test_every_built_in_method_is_classified() -> None:
    classified = set(REGULARISERS) | WITHOUT_REGULARISER
    assert set(REGULARISERS) | WITHOUT_REGULARISER <= set(BUILTIN_METHODS)
    assert not set(BUILTIN_METHODS) - classified, (
        f"classify {sorted(set(BUILTIN_METHODS) - classified)} in tests/test_regularisers_act.py: a method with a "
        "regulariser goes into REGULARISERS and must report penalty_steps and penalty_share (PenaltyMeter)")


# --- every regulariser acts under the synthetic v2 budget ------------------------------------------


def fit_and_report(name: str, overrides: dict[str, object]) -> dict[str, float]:
    """Train ``name`` on lms5 v2, data seed 0, as a scored job's fit does (in this process); its diagnostics."""
    task = TASKS["lms5"]
    info = resolve_method(name, submissions_dir=None)
    diagnostics = TrainDiagnostics()
    fit_job(info, info.configure(overrides), task, build_data(task, 0), 0, device=CPU, diagnostics=diagnostics)
    return diagnostics.values()


@pytest.mark.slow
def test_every_regulariser_acts_under_the_synthetic_v2_budget() -> None:
    """108 s on a shared 2-core CPU (one torch thread), the control included.

    Measured on lms5 v2 seed 0 (steps, penalty steps, penalty share): spectral-decoupling 782 / 332 / 0.82,
    sam 782 / 782 / 0.65, input-grad-diversity 391 / 391 / 0.94, cmid 2737 / 782 / 0.069, sifer 782 / 156 / 0.55,
    orthop 1955 / 1173 / 0.036, d-bat 1173 / 391 / 0.50, divdis and divdis-t2 391 / 391 / 0.22, adv-train-linf
    391 / 391 / 0.34, adv-train-l2 391 / 391 / 0.28.
    """
    task = TASKS["lms5"]
    assert task.version == 2 and len(build_data(task, 0).train.y) == 100_000
    failures = []
    for name, overrides in REGULARISERS.items():
        values = fit_and_report(name, overrides)
        assert {"steps", "penalty_steps", "penalty_share"} <= set(values), f"{name} reports {values}"
        assert 0 <= values["penalty_share"] <= 1 and values["penalty_steps"] <= values["steps"], (name, values)
        if not (values["penalty_steps"] > 0 and values["penalty_share"] >= MIN_PENALTY_SHARE):
            failures.append(f"{name}: {values}")
    assert not failures, "regularisers that did not act on lms5 v2 seed 0: " + "; ".join(failures)

    # The control: a warm-up longer than the run (ERM-like training stops after 2 epochs, 782 steps) leaves the
    # penalty off on every step, which the check above would report.
    control = fit_and_report("spectral-decoupling", {"warmup_steps": 1000})
    assert control["penalty_steps"] == 0 and control["penalty_share"] == 0, control
    assert math.isclose(control["steps"], 782)
