"""The random search: reproducible draws, selection data without the test split, a tiny sweep end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import poisoned
from pydantic import field_validator
from torch import nn
from typer.testing import CliRunner

from sbbench import selection as selection_module
from sbbench import suite as suite_module
from sbbench import sweep as sweep_module
from sbbench.cli import app
from sbbench.leaderboard.store import load_entries
from sbbench.methods.base import HParams, Method, Track, TrainContext, hparam
from sbbench.methods.registry import MethodInfo, resolve_method
from sbbench.metrics.classification import accuracy, predict_logits
from sbbench.metrics.randomization import donor_block_worst_group
from sbbench.results import RunResult
from sbbench.runner import build_data, fit_in_process, method_seed
from sbbench.seeding import derive_seed
from sbbench.selection import SELECTION_METRIC, SELECTION_WGA, run_trial, selection_split
from sbbench.suite import Suite
from sbbench.sweep import Trial, draw_hparams, search_space, select_trial, trial_seed
from sbbench.tasks import Task


class ToyHParams(HParams):
    rate: float = hparam(0.1, low=1e-3, high=1.0, log=True)
    width: int = hparam(8, low=2, high=32)
    mode: str = hparam("a", choices=["a", "b", "c"])
    fixed: int = hparam(3)


class Toy(Method):
    """Returns a fixed linear model (no training): a cheap stand-in for trial plumbing."""

    name = "toy"
    track = Track.T1
    HParams = ToyHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        torch.manual_seed(ctx.seed)
        return nn.Linear(ctx.input_shape[0], 2)


class ToyT2(Toy):
    name = "toy-t2"
    track = Track.T2


def toy_info(cls: type[Method] = Toy) -> MethodInfo:
    return MethodInfo.of_class(cls, source="tests")




def test_search_space_comes_from_the_declared_ranges() -> None:
    space = search_space(toy_info())
    assert list(space) == ["rate", "width", "mode"]
    assert space["rate"] == {"low": 1e-3, "high": 1.0, "log": True, "type": "number"}
    assert space["mode"]["choices"] == ["a", "b", "c"]


def test_draws_are_reproducible_within_ranges_and_trial_0_is_the_defaults() -> None:
    info = toy_info()
    draws = draw_hparams(info, 40, seed=0)
    assert draws == draw_hparams(info, 40, seed=0)
    assert draws != draw_hparams(info, 40, seed=1)
    assert draws[0] == Toy.defaults().model_dump(mode="json")
    assert draws[:5] == draw_hparams(info, 5, seed=0)  # more trials extend, never reshuffle
    rates = np.array([d["rate"] for d in draws[1:]])
    assert ((rates >= 1e-3) & (rates <= 1.0)).all()
    assert (np.log10(rates) < -1.5).sum() > 5  # log-uniform: a good share below 0.03
    assert all(isinstance(d["width"], int) and 2 <= d["width"] <= 32 for d in draws)
    assert {d["mode"] for d in draws[1:]} == {"a", "b", "c"}
    assert {d["fixed"] for d in draws} == {3}


def test_draws_do_not_depend_on_or_disturb_the_training_rngs() -> None:
    info = toy_info()
    reference = draw_hparams(info, 6, seed=7)
    for training_seed in (0, 123):
        torch.manual_seed(training_seed)
        np.random.seed(training_seed)
        torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
        assert draw_hparams(info, 6, seed=7) == reference
        assert torch.equal(torch.get_rng_state(), torch_state)
        assert (np.random.get_state()[1] == numpy_state).all()


def test_trials_train_outside_the_scoring_seeds() -> None:
    for suite in suite_module.SUITES.values():
        assert trial_seed(0) not in suite.seeds and trial_seed(4) not in suite.seeds


def test_t1_selection_split_carves_the_training_split_only(tiny_task: Task) -> None:
    data = poisoned(build_data(tiny_task, 0))
    fit, selection = selection_split(data, Track.T1, seed=3, holdout=0.25)
    n = len(data.train)
    assert len(selection) == n // 4 and len(fit.train) == n - n // 4
    rows = torch.cat([fit.train.x, selection.x])
    assert torch.equal(rows[torch.argsort(rows[:, 0])], data.train.x[torch.argsort(data.train.x[:, 0])])
    assert fit.pool is data.pool and fit.val is data.val
    again, _ = selection_split(data, Track.T1, seed=3, holdout=0.25)
    assert torch.equal(again.train.x, fit.train.x)


@pytest.mark.parametrize("track", [Track.T2, Track.ORACLE])
def test_t2_and_oracle_selection_set_is_the_validation_set(track: Track, tiny_task: Task) -> None:
    data = poisoned(build_data(tiny_task, 0))
    fit, selection = selection_split(data, track, seed=3, holdout=0.25)
    assert fit.train is data.train and selection is data.val


@pytest.mark.parametrize("cls", [Toy, ToyT2])
def test_a_trial_never_reads_the_test_split_and_scores_the_selection_set(
        cls: type[Method], tiny_task: Task, monkeypatch: pytest.MonkeyPatch) -> None:
    clean = build_data(tiny_task, trial_seed(0))
    monkeypatch.setattr(selection_module, "build_data", lambda task, seed: poisoned(build_data(task, seed)))
    info = toy_info(cls)
    result = run_trial(info, cls.defaults().model_dump(), tiny_task, trial_seed(0), 0.2, fit=fit_in_process,
                       device=torch.device("cpu"))
    assert result.status == "ok", result.error
    torch.manual_seed(method_seed(trial_seed(0)))  # what the method sees as ctx.seed
    model = nn.Linear(clean.space.input_shape[0], 2)
    _, expected_set = selection_split(clean, cls.track, trial_seed(0), 0.2)
    if cls.track == Track.T2:  # worst-group accuracy on the validation set, S permuted
        assert expected_set is clean.val
        expected = {SELECTION_WGA: donor_block_worst_group(
            model, expected_set.x, expected_set.y, clean.train.x, clean.train.y, clean.space, "S", repeats=5,
            seed=derive_seed(trial_seed(0), "sweep selection wga"))}
    else:
        expected = {SELECTION_METRIC: accuracy(predict_logits(model, expected_set.x), expected_set.y)}
    assert result.metrics == expected


def _trial(index: int, accs: list[float | None]) -> Trial:
    results = [RunResult(method="toy", method_version="1", track="T1", code_hash="0", hparams={}, task=f"t{i}",
                         task_hash="0", seed=0, status="ok" if acc is not None else "failed",
                         metrics={SELECTION_METRIC: acc} if acc is not None else {},
                         error=None if acc is not None else "boom")
               for i, acc in enumerate(accs)]
    return Trial(index=index, hparams={"i": index}, results=results)


def test_select_trial_takes_the_best_mean_ties_to_the_lowest_index_failures_never() -> None:
    trials = [_trial(0, [0.9, 0.8]), _trial(1, [1.0, 0.7]), _trial(2, [1.0, None]), _trial(3, [0.7, 1.0])]
    assert trials[2].score == -math.inf
    assert select_trial(trials).index == 0  # 0.85 (trial 0) ties 0.85 (trials 1, 3): the lowest index wins
    assert select_trial([*trials, _trial(4, [0.9, 0.9])]).index == 4
    with pytest.raises(ValueError, match="every trial failed"):
        select_trial([_trial(0, [None])])


def test_selection_inputs_are_selection_metrics_only(tiny_task: Task, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``select_trial`` receives holds the selection accuracy and nothing computed on a test split."""
    seen: list[list[Trial]] = []
    real = sweep_module.select_trial

    def spy(trials: list[Trial]) -> Trial:
        seen.append(trials)
        return real(trials)

    monkeypatch.setattr(sweep_module, "select_trial", spy)
    monkeypatch.setattr(selection_module, "build_data", lambda task, seed: poisoned(build_data(task, seed)))
    suite = Suite(name="one", version=1, description="tests", tasks=(tiny_task,), seeds=(0,))
    outcome = sweep_module.run_sweep(toy_info(), suite, 3, 0, cache=sweep_module.ResultCache(tmp_path),
                                     executor="inline")
    assert [t.index for t in seen[0]] == [0, 1, 2]
    assert all(set(r.metrics) == {SELECTION_METRIC} for t in seen[0] for r in t.results)
    assert all(r.seed == trial_seed(0) for t in seen[0] for r in t.results)
    assert "random search, 3 trials" in outcome.source and "held-out 20% of the training split" in outcome.source


def test_tiny_sweep_end_to_end_through_the_cli(tiny_suite: Suite, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(suite_module.SUITES, tiny_suite.name, tiny_suite)
    monkeypatch.setenv("SBBENCH_RESULTS", str(tmp_path / "results"))
    root, cache = tmp_path / "board", tmp_path / "cache"
    result = CliRunner().invoke(app, ["sweep", "d-bat", "--trials", "2", "--suite", tiny_suite.name, "--seed", "0",
                                      "--root", str(root), "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    [loaded] = load_entries(root, tiny_suite)
    card = loaded.entry.method
    assert card.name == "d-bat" and card.track == "T1"
    assert card.hparams_source.startswith("random search, 2 trials")
    assert card.hparams in draw_hparams(resolve_method("d-bat", submissions_dir=None), 2, seed=0)
    tuning = loaded.entry.tuning  # two trials: below the protocol's K = 8, so exploratory
    assert (tuning.label, tuning.metric, tuning.holdout, tuning.trial_seed) == ("exploratory (K=2)", SELECTION_METRIC,
                                                                                0.2, trial_seed(0))
    assert [t.hparams for t in tuning.trials] == draw_hparams(resolve_method("d-bat", submissions_dir=None), 2, 0)
    assert tuning.trials[tuning.chosen].hparams == card.hparams and all(t.value is not None for t in tuning.trials)
    assert sorted(r.seed for r in loaded.entry.runs) == list(tiny_suite.seeds)
    assert all(r.status == "ok" and "s_rand_auc" in r.metrics for r in loaded.entry.runs)


def test_a_trial_of_a_broken_method_is_recorded_not_raised(tiny_task: Task) -> None:
    class Broken(Toy):
        def fit(self, ctx: TrainContext) -> nn.Module:
            raise RuntimeError("no")

    result = run_trial(toy_info(Broken), Toy.defaults().model_dump(), tiny_task, 0, 0.2, fit=fit_in_process,
                       device=torch.device("cpu"))
    assert result.status == "failed" and "no" in (result.error or "")



def test_all_draws_are_validated_in_one_call_and_a_refused_draw_names_its_trial(
        monkeypatch: pytest.MonkeyPatch) -> None:
    info = toy_info()
    calls: list[int] = []
    real = MethodInfo.validate

    def spy(self: MethodInfo, overrides: list[dict]) -> list:
        calls.append(len(overrides))
        return real(self, overrides)

    monkeypatch.setattr(MethodInfo, "validate", spy)
    assert len(draw_hparams(info, 6, seed=0)) == 6
    assert calls == [5]  # trial 0 is the (already validated) defaults
    assert draw_hparams(info, 1, seed=0) == [Toy.defaults().model_dump(mode="json")] and calls == [5]

    class Narrow(ToyHParams):
        @field_validator("width")
        @classmethod
        def at_most_four(cls, value: int) -> int:
            if value > 4:
                raise ValueError("at most 4 here")
            return value

    class ToyNarrow(Toy):
        HParams = Narrow

    with pytest.raises(ValueError, match=r"trial \d drew a setting that method toy refuses: hyperparameter width"):
        draw_hparams(toy_info(ToyNarrow), 6, seed=0)
