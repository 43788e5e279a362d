"""sbbench.api: train and evaluate one model as a scored job does, its errors, and the example of docs/python-api.md.

Every job is ERM (or a tiny probe) on ``lms5-ci``, about a second each; the isolated fit
process is started once for the module and reused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from torch import nn

import sbbench.cli.plot
from sbbench import api
from sbbench.methods.base import Method, TrainContext
from sbbench.methods.registry import HParamsError, MethodInfo, resolve_method
from sbbench.runner import FitFailure, InvalidModel, build_data, fit_in_process, run_job
from sbbench.tasks import get_task

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"
TASK = "lms5-ci"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def isolated() -> api.TrainedModel:
    """ERM on lms5-ci, seed 1, trained in a fit process (the default)."""
    return api.train("erm", TASK, 1, device=CPU)


class Crashes(Method):
    """A method whose ``fit`` raises."""

    name = "crashes"

    def fit(self, ctx: TrainContext) -> nn.Module:
        raise ValueError("no model today")


class OneLogit(Method):
    """A method whose model has one output instead of two logits."""

    name = "one-logit"

    def fit(self, ctx: TrainContext) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(ctx.input_shape[0], 1))


def test_train_then_evaluate_is_bit_identical_to_a_scored_job(isolated: api.TrainedModel) -> None:
    info = resolve_method("erm")
    recorded = run_job(info, info.defaults, get_task(TASK), 1, device=CPU, fit=fit_in_process)
    assert recorded.status == "ok", recorded.error
    assert api.evaluate(isolated) == recorded.metrics, "the isolated fit transfers the model exactly"
    in_process = api.train(info, get_task(TASK), 1, isolated=False, device=CPU)
    assert in_process.evaluate() == recorded.metrics
    x = isolated.data.test.x
    assert torch.equal(isolated.model(x), in_process.model(x))
    assert torch.equal(isolated.model.features(x), in_process.model.features(x))


def test_the_trained_model_carries_its_job(isolated: api.TrainedModel) -> None:
    assert (isolated.method.name, isolated.hparams, isolated.task.name, isolated.seed) == ("erm", {}, TASK, 1)
    assert isolated.data is build_data(get_task(TASK), 1) and isolated.device == CPU
    assert not isolated.model.training
    assert isolated.model(isolated.data.test.x).shape == (len(isolated.data.test), 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        isolated.seed = 2  # type: ignore[misc]


def test_evaluate_model_also_gives_the_profiles_a_job_records() -> None:
    task = get_task(TASK).model_copy(update={"metrics": get_task(TASK).metrics.model_copy(
        update={"coordinate_profile": True})})
    trained = api.train("erm", task, 0, isolated=False, device=CPU)
    evaluation = api.evaluate_model(trained.model, task, trained.data, 0, device=CPU)
    recorded = run_job(trained.method, {}, task, 0, device=CPU)
    assert evaluation.metrics == recorded.metrics and evaluation.profiles == recorded.profiles
    assert len(evaluation.profiles["coord_random_auc"]) == trained.data.space.n_features


def test_hyperparameters_override_the_defaults_and_are_validated() -> None:
    trained = api.train("sam", TASK, 0, hparams={"rho": 0.1}, isolated=False, device=CPU)
    assert trained.hparams == {"rho": 0.1}
    with pytest.raises(HParamsError, match="rho"):
        api.train("sam", TASK, 0, hparams={"rho": "wide"}, isolated=False)
    with pytest.raises(HParamsError, match="nope"):
        api.train("erm", TASK, 0, hparams={"nope": 1})


def test_unknown_names_and_a_negative_seed_are_clear_errors() -> None:
    with pytest.raises(KeyError, match=r"unknown task 'lms55'; known tasks: .*lms5-ci"):
        api.train("erm", "lms55")
    with pytest.raises(KeyError, match=r"unknown method 'ermm'; known methods: .*\berm\b"):
        api.train("ermm", TASK)
    with pytest.raises(ValueError, match="seed must be non-negative, got -1"):
        api.train("erm", TASK, -1)
    info = resolve_method("erm")
    assert api.get_method(info) is info


@pytest.mark.parametrize(("method", "cause", "reason"), [
    (Crashes, ValueError, r"^ValueError: no model today \(at .*test_api.py:\d+\)$"),
    (OneLogit, InvalidModel, r"^InvalidModel: the model must map a batch of 8 inputs to \(8, 2\) logits, got \(8, 1\) "
                             r"\(at .*runner.py:\d+\)$"),
])
def test_a_method_that_fails_in_process_raises_training_failed(method: type[Method], cause: type[Exception],
                                                                reason: str) -> None:
    with pytest.raises(api.TrainingFailed) as caught:
        api.train(MethodInfo.of_class(method), TASK, 0, isolated=False, device=CPU)
    assert caught.value.job == f"{method.name} on {TASK}, seed 0"
    assert re.match(reason, caught.value.reason), caught.value.reason
    assert str(caught.value) == f"{caught.value.job}: {caught.value.reason}"
    assert isinstance(caught.value.__cause__, cause)


def test_a_method_that_fails_in_its_fit_process_raises_training_failed(isolated: api.TrainedModel) -> None:
    with pytest.raises(api.TrainingFailed) as caught:
        api.train(MethodInfo.of_class(Crashes), TASK, 0, device=CPU)
    assert isinstance(caught.value.__cause__, FitFailure)
    assert "ValueError: no model today" in caught.value.reason


def test_sbbench_plot_reports_a_training_failure_as_one_error_line(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(info: MethodInfo, task: object, seed: int, **options: object) -> api.TrainedModel:
        options["log"]("epoch 1")  # the progress callback is wired to the status line
        raise api.TrainingFailed(f"{info.name} on {TASK}, seed {seed}", "time limit exceeded after 1 s")

    monkeypatch.setattr(sbbench.cli.plot, "train", fail)
    code, out, err = run_cli("plot", "erm", "--task", TASK, "--out", str(tmp_path / "figures"))
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == "error: erm: time limit exceeded after 1 s"
    assert not (tmp_path / "figures").exists()


def python_blocks(markdown: str) -> list[str]:
    """The bodies of the markdown's fenced ``python`` code blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.DOTALL | re.MULTILINE)


def test_the_documented_example_runs_and_prints_what_the_page_says(isolated: api.TrainedModel) -> None:
    [example] = python_blocks(DOC.read_text())
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, str(DOC), "exec"), {"__name__": "docs_python_api"})
    lines = printed.getvalue().splitlines()
    assert re.fullmatch(r"accuracy 0\.9\d\d, S-randomized AUC 0\.[45]\d\d", lines[0]), lines
    assert lines[1] == "(500, 32)"
    assert re.fullmatch(r"S-randomized accuracy 0\.[45]\d\d \(the job records 0\.[45]\d\d, a mean over "
                        r"permutations\)", lines[2]), lines
