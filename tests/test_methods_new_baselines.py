"""DFR, JTT, LfF and GroupDRO: each formula on a case small enough to check by hand, then a run on the tiny task."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sbbench.data.dataset import LabeledSet
from sbbench.data.synthetic import lms
from sbbench.methods.base import Track, TrainContext
from sbbench.methods.dfr import (
    DFR,
    LastLayerRefit,
    fit_logistic_regression,
    fold_standardization,
    logistic_objective,
    standardization,
)
from sbbench.methods.group_dro import (
    GroupDRO,
    group_dro_loss,
    group_dro_update,
    group_ids,
    group_mean_losses,
    s_agreement,
)
from sbbench.methods.jtt import JTT, error_set, jtt_weights
from sbbench.methods.lff import LfF, PerExampleEMA, class_max_normalized, gce_loss, lff_weights
from sbbench.methods.registry import BUILTIN_METHODS, resolve_method
from sbbench.models.transfer import export_model, load_model
from sbbench.runner import build_data, run_job, train_context
from sbbench.tasks import Task, get_task
from sbbench.training import TrainConfig, TrainLog

CPU = torch.device("cpu")
NEW_METHODS = {"dfr": Track.T2, "jtt": Track.T0, "lff": Track.T0, "group-dro": Track.ORACLE}


@pytest.fixture(scope="module")
def ci_task() -> Task:
    return get_task("lms5-ci")


@pytest.fixture(scope="module")
def spurious_task(ci_task: Task) -> Task:
    """``lms5-ci`` with rho = 0.9: S points to the other class on exactly 200 of the 2,000 training points."""
    data = lms(5, d=10, n_train=2000, n_test=500, n_pool=300, n_val=100, rho=0.9)
    return ci_task.model_copy(update={"name": "lms5-ci-spurious", "data": data})


def context(task: Task, track: Track, seed: int = 0, messages: list[str] | None = None) -> TrainContext:
    """What a job of ``track`` sees on ``task`` at data seed ``seed``; torch's RNG seeded as a fit process does."""
    ctx = train_context(task, build_data(task, seed), track, seed, CPU,
                        (messages if messages is not None else []).append)
    torch.manual_seed(ctx.seed)
    return ctx


def accuracy(model: nn.Module, data: LabeledSet) -> float:
    with torch.no_grad():
        return float((model.eval()(data.x).argmax(dim=1) == data.y).double().mean())


def sigmoid(value: float) -> float:
    return 1 / (1 + math.exp(-value))


# --- DFR ---------------------------------------------------------------------------------------


def test_standardization_uses_the_population_std_and_leaves_constant_features_alone() -> None:
    features = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    mean, std = standardization(features)
    torch.testing.assert_close(mean, torch.tensor([2.0, 5.0]))
    torch.testing.assert_close(std, torch.tensor([1.0, 1.0]))  # population std of (1, 3) is 1; constant -> 1


def test_logistic_regression_l1_by_hand() -> None:
    # Two points z = +1 (y = 1) and z = -1 (y = 0): by symmetry b = 0, and the smooth part's
    # derivative in w is -2 sigmoid(-w). With ||w||_1 / C the optimum has 2 sigmoid(-w) = 1 / C:
    # C = 2 gives sigmoid(-w) = 1/4, w = ln 3; for C <= 1/2 the subgradient at 0 suffices, w = 0.
    z, y = torch.tensor([[1.0], [-1.0]]), torch.tensor([1, 0])
    w, b = fit_logistic_regression(z, y, c=2.0, penalty="l1")
    assert w.item() == pytest.approx(math.log(3), abs=1e-6) and b.item() == pytest.approx(0.0, abs=1e-6)
    w, b = fit_logistic_regression(z, y, c=0.4, penalty="l1")
    assert w.item() == 0.0 and b.item() == pytest.approx(0.0, abs=1e-6)


def test_logistic_regression_l2_by_hand() -> None:
    # Same points with ||w||^2 / (2C): the optimum solves w = 2 C sigmoid(-w); C = 2 ln 3 gives w = ln 3.
    z, y = torch.tensor([[1.0], [-1.0]]), torch.tensor([1, 0])
    w, b = fit_logistic_regression(z, y, c=2 * math.log(3), penalty="l2")
    assert w.item() == pytest.approx(math.log(3), abs=1e-6) and b.item() == pytest.approx(0.0, abs=1e-6)
    assert w.item() == pytest.approx(2 * 2 * math.log(3) * sigmoid(-w.item()), abs=1e-6)


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_logistic_regression_meets_the_optimality_conditions(penalty: str) -> None:
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(200, 6, generator=generator, dtype=torch.float64)
    y = (z[:, 0] - z[:, 1] + torch.randn(200, generator=generator, dtype=torch.float64) > 0).long()
    c = 0.05
    w, b = fit_logistic_regression(z, y, c=c, penalty=penalty)
    residual = torch.sigmoid(z @ w + b) - y.double()
    assert residual.sum().item() == pytest.approx(0.0, abs=1e-6)  # the unpenalised bias
    gradient = z.T @ residual
    if penalty == "l2":
        torch.testing.assert_close(gradient + w / c, torch.zeros(6, dtype=torch.float64), atol=1e-6, rtol=0)
    else:
        active = w != 0
        assert 0 < int(active.sum()) < 6  # C = 0.05 zeroes some but not all weights
        torch.testing.assert_close(gradient[active], -torch.sign(w[active]) / c, atol=1e-6, rtol=0)
        assert bool((gradient[~active].abs() <= 1 / c + 1e-6).all())
    # and nothing nearby is better
    best = logistic_objective(z, y, w, b, c, penalty)
    for _ in range(5):
        nudged = w + 1e-3 * torch.randn(6, generator=generator, dtype=torch.float64)
        assert logistic_objective(z, y, nudged, b, c, penalty) >= best


def test_folded_head_gives_the_logistic_regression_on_standardised_features() -> None:
    generator = torch.Generator().manual_seed(1)
    features = 3 * torch.rand(50, 4, generator=generator) + torch.tensor([0.0, 1.0, -2.0, 5.0])
    mean, std = standardization(features)
    w, b = torch.tensor([0.5, -1.25, 2.0, 0.0]), torch.tensor(0.3)
    head = fold_standardization(w, b, mean, std)
    logits = head(features)
    expected = (features - mean) / std @ w + b
    torch.testing.assert_close(logits[:, 0], torch.zeros(50), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[:, 1] - logits[:, 0], expected, atol=1e-5, rtol=1e-5)


def test_dfr_refuses_a_context_without_validation_set(ci_task: Task) -> None:
    with pytest.raises(ValueError, match="validation set"):
        DFR().fit(context(ci_task, Track.T1))


def test_dfr_on_the_tiny_task_refits_on_val_and_survives_export(ci_task: Task) -> None:
    messages: list[str] = []
    ctx = context(ci_task, Track.T2, messages=messages)
    model = DFR().fit(ctx)
    assert isinstance(model, LastLayerRefit)
    logits = model(ctx.val.x).detach()
    assert logits.shape == (len(ctx.val.y), 2) and bool(torch.isfinite(logits).all())
    assert bool((logits[:, 0] == 0).all())
    # the head is the logistic regression refit on the validation features
    with torch.no_grad():
        features = model.features(ctx.val.x).double()
    mean, std = standardization(features)
    w, b = fit_logistic_regression((features - mean) / std, ctx.val.y, 1.0, "l1")
    torch.testing.assert_close(logits[:, 1].double(), (features - mean) / std @ w + b, atol=1e-4, rtol=1e-4)
    assert any("refit the last layer on 100 validation points" in message for message in messages)
    # the model crosses the process boundary as a graph and gives the same logits
    x = ctx.train.x[:64]
    restored = load_model(export_model(model, x[:8]))
    torch.testing.assert_close(restored(x), model(x).detach())
    torch.testing.assert_close(restored.features(x), model.features(x).detach())


def test_dfr_with_an_in_distribution_validation_set_keeps_the_erm_accuracy(ci_task: Task) -> None:
    # On the decorrelated val set only S^c is predictive, which ERM's features barely hold after
    # 5 epochs; a val set from the training distribution checks the refit machinery itself.
    ctx = context(ci_task, Track.T2)
    ctx = dataclasses.replace(ctx, val=LabeledSet(x=ctx.train.x[:500], y=ctx.train.y[:500]))
    model = DFR().fit(ctx)
    assert accuracy(model, build_data(ci_task, 0).test) > 0.9


# --- JTT ---------------------------------------------------------------------------------------


def test_jtt_weights_from_an_error_mask() -> None:
    weights = jtt_weights(torch.tensor([True, False, False, True]), upweight=20.0)
    assert weights.dtype == torch.float32
    assert weights.tolist() == [20.0, 1.0, 1.0, 20.0]
    assert jtt_weights(torch.zeros(3, dtype=torch.bool), 5.0).tolist() == [1.0, 1.0, 1.0]


def test_jtt_error_set_of_a_fixed_linear_model() -> None:
    layer = nn.Linear(1, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0], [1.0]]))
        layer.bias.zero_()
    x = torch.tensor([[-2.0], [-1.0], [1.0], [3.0]])  # predicts class 1 exactly where x > 0
    y = torch.tensor([0, 1, 1, 0])
    assert error_set(layer, x, y).tolist() == [False, True, False, True]


@dataclasses.dataclass(frozen=True)
class RecordingContext(TrainContext):
    """Trains as usual and records each ``fit_model`` call's config, weights and returned model."""

    calls: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def fit_model(self, model: nn.Module | None = None, objective: Any = None, **kwargs: Any
                  ) -> tuple[nn.Module, TrainLog]:
        trained, log = (super().fit_model(model, **kwargs) if objective is None
                        else super().fit_model(model, objective, **kwargs))
        self.calls.append({"config": kwargs.get("config"), "weights": kwargs.get("weights"), "model": trained,
                           "log": log})
        return trained, log


def test_jtt_upweights_exactly_what_stage_one_gets_wrong(ci_task: Task) -> None:
    base = context(ci_task, Track.T0)
    messages: list[str] = []
    ctx = RecordingContext(**{f.name: getattr(base, f.name) for f in dataclasses.fields(TrainContext)})
    ctx = dataclasses.replace(ctx, log=messages.append)
    model = JTT.with_overrides({"identification_epochs": 2, "upweight": 7.0}).fit(ctx)
    first, second = ctx.calls
    assert first["config"] == ci_task.budget.model_copy(
        update={"max_epochs": 2, "stop_train_acc": None, "stop_train_loss": None})
    assert first["log"].epochs == 2
    errors = error_set(first["model"], ctx.train.x, ctx.train.y)
    assert 0 < int(errors.sum()) < len(errors)
    assert torch.equal(second["weights"], jtt_weights(errors, 7.0))
    assert second["config"] is None and second["model"] is model  # stage 2: the task's budget
    assert any(f"error set after 2 epoch(s): {int(errors.sum())} of 2000" in message for message in messages)
    assert ctx.diagnostics.values() == {"error_set_share": int(errors.sum()) / 2000}


def test_jtt_on_the_tiny_task(ci_task: Task) -> None:
    # One epoch of the tiny task is 16 steps, too few to fit S; five epochs leave an error set of about 1%.
    model = JTT.with_overrides({"identification_epochs": 5}).fit(context(ci_task, Track.T0))
    test = build_data(ci_task, 0).test
    logits = model(test.x).detach()
    assert logits.shape == (len(test.y), 2) and bool(torch.isfinite(logits).all())
    assert accuracy(model, test) > 0.75


# --- LfF ---------------------------------------------------------------------------------------


def test_gce_loss_by_hand() -> None:
    logits = torch.tensor([[0.0, math.log(3)], [0.0, math.log(3)]])  # p = (1/4, 3/4)
    y = torch.tensor([1, 0])
    # q = 1/2: (1 - sqrt(3/4)) / (1/2) and (1 - sqrt(1/4)) / (1/2) = 1
    expected = [2 * (1 - math.sqrt(0.75)), 1.0]
    assert gce_loss(logits, y, 0.5).tolist() == pytest.approx(expected, rel=1e-6)
    assert gce_loss(logits, y, 1.0).tolist() == pytest.approx([0.25, 0.75], rel=1e-6)  # q = 1: 1 - p_y
    assert gce_loss(logits, y, 1e-4).tolist() == pytest.approx([math.log(4 / 3), math.log(4)], rel=1e-3)


def test_gce_gradient_is_p_to_the_q_times_the_ce_gradient() -> None:
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.5]], requires_grad=True)
    y = torch.tensor([1, 0])
    (gce_grad,) = torch.autograd.grad(gce_loss(logits, y, 0.7).sum(), logits)
    ce = F.cross_entropy(logits, y, reduction="none")
    p_y = torch.exp(-ce).detach()
    (ce_grad,) = torch.autograd.grad(ce.sum(), logits)
    torch.testing.assert_close(gce_grad, p_y.pow(0.7).unsqueeze(1) * ce_grad)


def test_lff_weight_formula() -> None:
    weights = lff_weights(torch.tensor([0.3, 1.0, 0.0, 2.0]), torch.tensor([0.1, 1.0, 0.0, 0.0]))
    assert weights.tolist() == pytest.approx([0.75, 0.5, 0.0, 1.0], abs=1e-6)
    assert not lff_weights(torch.ones(2, requires_grad=True), torch.ones(2)).requires_grad


def test_per_example_ema_by_hand() -> None:
    ema = PerExampleEMA(3, decay=0.7)
    assert ema.update(torch.tensor([0, 2]), torch.tensor([1.0, 2.0])).tolist() == [1.0, 2.0]  # first visit: the value
    assert ema.update(torch.tensor([0]), torch.tensor([0.0])).tolist() == pytest.approx([0.7])
    assert ema.update(torch.tensor([2, 1]), torch.tensor([4.0, 3.0])).tolist() == pytest.approx([2.6, 3.0])
    assert ema.values.tolist() == pytest.approx([0.7, 3.0, 2.6])


def test_class_max_normalisation_by_hand() -> None:
    values = torch.tensor([1.0, 2.0, 4.0, 8.0, 0.0])
    labels = torch.tensor([0, 0, 1, 1, 0])
    normalized = class_max_normalized(values, labels, torch.tensor([0, 2, 3, 4]))
    assert normalized.tolist() == pytest.approx([0.5, 0.5, 1.0, 0.0])


@pytest.mark.parametrize("overrides", [{}, {"class_normalize": True}])
def test_lff_on_the_tiny_task(ci_task: Task, overrides: dict[str, Any]) -> None:
    messages: list[str] = []
    model = LfF.with_overrides(overrides).fit(context(ci_task, Track.T0, messages=messages))
    test = build_data(ci_task, 0).test
    logits = model(test.x).detach()
    assert logits.shape == (len(test.y), 2) and bool(torch.isfinite(logits).all())
    assert accuracy(model, test) > 0.8
    assert len(messages) <= ci_task.budget.max_epochs  # one line per epoch, never past the budget


# --- GroupDRO ----------------------------------------------------------------------------------


def test_group_dro_update_by_hand() -> None:
    q = group_dro_update(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 2.0]), eta=1.0)
    # (0.5 e, 0.5 e^2) / (0.5 e + 0.5 e^2) = (1 / (1 + e), e / (1 + e))
    assert q.tolist() == pytest.approx([1 / (1 + math.e), math.e / (1 + math.e)], rel=1e-6)
    # a group with weight 0 (absent from the training set) stays at 0
    q = group_dro_update(torch.tensor([0.0, 0.25, 0.75]), torch.tensor([5.0, 0.0, math.log(3)]), eta=1.0)
    assert q.tolist() == pytest.approx([0.0, 0.25 / (0.25 + 2.25), 2.25 / (0.25 + 2.25)], rel=1e-6)


def test_group_mean_losses_and_the_robust_loss_by_hand() -> None:
    losses = torch.tensor([1.0, 2.0, 3.0, 5.0])
    groups = torch.tensor([0, 0, 3, 3])
    means, counts = group_mean_losses(losses, groups, 4)
    assert means.tolist() == [1.5, 0.0, 0.0, 4.0] and counts.tolist() == [2.0, 0.0, 0.0, 2.0]
    q0 = torch.full((4,), 0.25)
    loss, q = group_dro_loss(losses, groups, q0, eta=0.5)
    raw = [0.25 * math.exp(0.5 * value) for value in (1.5, 0.0, 0.0, 4.0)]
    expected_q = [value / sum(raw) for value in raw]
    assert q.tolist() == pytest.approx(expected_q, rel=1e-6)
    assert loss.item() == pytest.approx(expected_q[0] * 1.5 + expected_q[3] * 4.0, rel=1e-6)


def test_group_ids() -> None:
    y = torch.tensor([0, 0, 1, 1])
    agree = torch.tensor([False, True, False, True])
    assert group_ids(y, agree).tolist() == [0, 1, 2, 3]


def test_s_probe_finds_exactly_the_training_points_whose_s_conflicts(spurious_task: Task) -> None:
    data = build_data(spurious_task, 0)
    before = torch.get_rng_state()
    agree = s_agreement(data.space, data.train.x, data.train.y, epochs=5, batch_size=128, seed=3)
    assert torch.equal(torch.get_rng_state(), before)  # the probe leaves torch's global RNG alone
    # S is one linear coordinate: the majority rule is its sign (up to the direction)
    s = data.space.to_canonical(data.train.x)[:, 0]
    rule = (s > 0).long()
    if float((rule == data.train.y).double().mean()) < 0.5:
        rule = 1 - rule
    assert torch.equal(agree, rule == data.train.y)
    assert int((~agree).sum()) == 200  # rho = 0.9 of 2,000


def test_group_dro_refuses_a_context_without_the_feature_space(ci_task: Task) -> None:
    with pytest.raises(ValueError, match="oracle"):
        GroupDRO().fit(context(ci_task, Track.T0))


def test_group_dro_on_the_tiny_task_has_two_groups(ci_task: Task) -> None:
    messages: list[str] = []
    model = GroupDRO().fit(context(ci_task, Track.ORACLE, messages=messages))
    test = build_data(ci_task, 0).test
    logits = model(test.x).detach()
    assert logits.shape == (len(test.y), 2) and bool(torch.isfinite(logits).all())
    assert accuracy(model, test) > 0.9
    (groups,) = [message for message in messages if message.startswith("group-dro groups")]
    assert "(y=0, S conflicts) 0," in groups and "(y=1, S conflicts) 0," in groups


def test_group_dro_finds_four_groups_on_a_spurious_task(spurious_task: Task) -> None:
    messages: list[str] = []
    ctx = context(spurious_task, Track.ORACLE, messages=messages)
    ctx = dataclasses.replace(ctx, budget=ctx.budget.model_copy(update={"max_epochs": 2}))
    GroupDRO().fit(ctx)
    (groups,) = [message for message in messages if message.startswith("group-dro groups")]
    counts = [int(part.rsplit(" ", 1)[1]) for part in groups.removeprefix("group-dro groups: ").split(", (")]
    assert sum(counts) == 2000 and counts[0] + counts[2] == 200 and min(counts) > 0
    reported = ctx.diagnostics.values()
    assert reported["conflicting_share"] == pytest.approx(200 / 2000) and reported["epochs"] == 2
    assert 0.25 <= reported["max_group_weight"] <= 1


# --- registry and end to end -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "track"), NEW_METHODS.items())
def test_registry_resolves_the_new_methods(name: str, track: Track) -> None:
    assert name in BUILTIN_METHODS
    info = resolve_method(name, submissions_dir=None)
    assert (info.name, info.track, info.version) == (name, track, "1")
    assert info.cls.name == name and info.cls.paper.startswith("https://arxiv.org/abs/")
    searched = {key: spec.get("search") for key, spec in info.description.hparams_schema["properties"].items()}
    assert any(searched.values())  # at least one hyperparameter has a search range
    assert info.configure({}) == info.defaults


def test_hyperparameter_ranges() -> None:
    assert DFR.HParams.model_json_schema()["properties"]["c"]["search"] == {"low": 0.01, "high": 100.0, "log": True}
    assert DFR.defaults().penalty == "l1"
    assert JTT.HParams.model_json_schema()["properties"]["identification_epochs"]["search"] == {"choices": [1, 2, 5]}
    assert GroupDRO.defaults().eta == 0.01


def test_run_job_scores_dfr_on_the_tiny_task(ci_task: Task) -> None:
    info = resolve_method("dfr", submissions_dir=None)
    result = run_job(info, info.defaults, ci_task, 0, device=CPU)
    assert result.status == "ok", result.error
    assert 0.0 <= result.metrics["s_rand_auc"] <= 1.0


def test_the_hand_written_loops_stop_at_the_epoch_cap(ci_task: Task) -> None:
    # Both hand-written loops stop at the epoch cap: a 1-epoch budget logs one epoch.
    for cls, track in ((LfF, Track.T0), (GroupDRO, Track.ORACLE)):
        messages: list[str] = []
        ctx = context(ci_task, track, messages=messages)
        ctx = dataclasses.replace(ctx, budget=TrainConfig(lr=0.1, batch_size=128, max_epochs=1))
        cls().fit(ctx)
        assert [m.split(":")[0] for m in messages if m.startswith("epoch")] == ["epoch 1"]
