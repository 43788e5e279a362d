"""``TrainContext.fit_model``: configs, fixed epochs, per-example weights, ``x=``/``y=``, and the
two-stage example submission (Just Train Twice) that uses them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import Tensor, nn

from sbbench.cache import ResultCache
from sbbench.data.dataset import LabeledSet
from sbbench.methods.base import TrainContext
from sbbench.methods.registry import resolve_method
from sbbench.models import FCN
from sbbench.scoring import score
from sbbench.suite import SUITES
from sbbench.training import TrainConfig, weighted_cross_entropy_objective, weighted_mean
from sbbench.training.fcn_sgd import FusedFCNSGDStep

REPO = Path(__file__).resolve().parent.parent
JTT = REPO / "submissions" / "example-jtt"
D = 5


def separable_problem(n: int = 200, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Gaussian inputs labelled by the sign of their first coordinate, kept away from 0."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=generator)
    x[:, 0] = torch.where(x[:, 0] >= 0, x[:, 0] + 0.5, x[:, 0] - 0.5)
    return x, (x[:, 0] > 0).long()


def context(x: Tensor, y: Tensor, budget: TrainConfig, *, width: int = 16, depth: int = 1) -> TrainContext:
    """A context whose backbone is an FCN drawn from torch's global RNG, like the runner's."""
    return TrainContext(train=LabeledSet(x=x, y=y), input_shape=(D,), budget=budget, seed=3,
                        device=torch.device("cpu"), make_backbone=lambda: FCN(D, width, depth))


def fixed(epochs: int, **fields: object) -> TrainConfig:
    return TrainConfig(max_epochs=epochs, stop_train_acc=None, stop_train_loss=None, **fields)


def fit(ctx: TrainContext, init_seed: int = 7, **kwargs: object) -> tuple[nn.Module, object]:
    torch.manual_seed(init_seed)
    return ctx.fit_model(**kwargs)


def parameters(model: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def assert_identical(first: nn.Module, second: nn.Module) -> None:
    for a, b in zip(parameters(first), parameters(second), strict=True):
        assert torch.equal(a, b)


CONFIGS = {
    "sgd-fused": fixed(3, batch_size=32, momentum=0.9),
    "adam": fixed(3, batch_size=32, optimizer="adam", lr=1e-2),
    "onecycle": fixed(3, batch_size=32, lr_schedule="onecycle"),
}


# --- (a) uniform weights are the unweighted run, bit for bit --------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("value", [1.0, 3.5])
def test_uniform_weights_give_bit_identical_parameters_and_log(name: str, value: float) -> None:
    x, y = separable_problem()
    ctx = context(x, y, CONFIGS[name])
    plain, plain_log = fit(ctx)
    weighted, weighted_log = fit(ctx, weights=torch.full((len(y),), value))
    assert_identical(plain, weighted)
    assert weighted_log.train_loss == plain_log.train_loss and weighted_log.train_acc == plain_log.train_acc


def test_the_fused_step_stays_in_use_without_weights_and_with_uniform_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = FusedFCNSGDStep.__call__

    def counting(self: FusedFCNSGDStep, *args: object) -> tuple[Tensor, Tensor]:
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(FusedFCNSGDStep, "__call__", counting)
    x, y = separable_problem()
    ctx = context(x, y, fixed(2, batch_size=50))
    fit(ctx)
    assert len(calls) == 2 * 4
    fit(ctx, weights=torch.ones(len(y)))
    assert len(calls) == 2 * 2 * 4
    fit(ctx, weights=torch.linspace(0.5, 2.0, len(y)))  # non-uniform weights take the autograd step
    assert len(calls) == 2 * 2 * 4


def test_the_weighted_step_with_unit_weights_matches_the_unweighted_autograd_step() -> None:
    """A custom weighted objective always gets the weights, so this runs the weighted machinery."""
    x, y = separable_problem()
    ctx = context(x, y, CONFIGS["adam"])
    plain, plain_log = fit(ctx)
    weighted, weighted_log = fit(ctx, objective=lambda m, xb, yb, wb: weighted_cross_entropy_objective(m, xb, yb, wb),
                                 weights=torch.ones(len(y)))
    for a, b in zip(parameters(plain), parameters(weighted), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert weighted_log.train_loss == pytest.approx(plain_log.train_loss, rel=1e-5)
    assert weighted_log.train_acc == pytest.approx(plain_log.train_acc, rel=1e-12)


# --- (b) hand-checkable weighted runs ------------------------------------------------------------------------------


def test_one_full_batch_step_matches_the_hand_computed_weighted_loss_and_gradient() -> None:
    """A linear model (depth 0), one SGD step on the whole set: everything in closed form."""
    x, y = separable_problem(n=6)
    w = torch.tensor([1.0, 0.0, 2.0, 0.5, 3.0, 0.0])
    lr = 0.3
    ctx = context(x, y, fixed(1, batch_size=6, lr=lr, weight_decay=0.0), depth=0)
    torch.manual_seed(7)
    model = ctx.make_backbone()
    weight0, bias0 = model.head.weight.detach().clone(), model.head.bias.detach().clone()
    _, log = ctx.fit_model(model, weights=w)

    logits = x @ weight0.T + bias0
    probs = logits.softmax(dim=1)
    ce = -probs.log()[torch.arange(6), y]
    expected_loss = sum(w[i] * ce[i] for i in range(6)) / w.sum()
    assert log.train_loss == [pytest.approx(expected_loss.item(), rel=1e-6)]
    correct = (logits.argmax(dim=1) == y).float()
    assert log.train_acc == [pytest.approx((correct @ w / w.sum()).item(), rel=1e-6)]

    residual = (probs - F.one_hot(y, 2).float()) * (w / w.sum()).unsqueeze(1)  # d loss / d logits
    torch.testing.assert_close(model.head.weight.detach(), weight0 - lr * residual.T @ x)
    torch.testing.assert_close(model.head.bias.detach(), bias0 - lr * residual.sum(dim=0))


def test_zero_weights_in_full_batch_training_equal_training_on_the_subset_only() -> None:
    x, y = separable_problem(n=120)
    keep = torch.arange(120) % 3 != 0
    config = fixed(5, batch_size=120, momentum=0.9)
    subset, subset_log = fit(context(x[keep], y[keep], config))
    weighted, weighted_log = fit(context(x, y, config), weights=keep.float())
    for a, b in zip(parameters(subset), parameters(weighted), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert weighted_log.train_loss == pytest.approx(subset_log.train_loss, rel=1e-5)
    assert weighted_log.train_acc == pytest.approx(subset_log.train_acc)


def test_weights_follow_their_examples_through_the_shuffle() -> None:
    """Examples of weight 0 do not matter: flipping their labels changes nothing, bit for bit."""
    x, y = separable_problem()
    ignored = torch.arange(len(y)) % 4 == 1
    weights = torch.where(ignored, 0.0, torch.linspace(0.5, 2.0, len(y)))
    ctx = context(x, y, fixed(3, batch_size=32, momentum=0.9))
    original, original_log = fit(ctx, weights=weights)
    flipped, flipped_log = fit(ctx, y=torch.where(ignored, 1 - y, y), weights=weights)
    assert_identical(original, flipped)
    assert flipped_log.train_loss == original_log.train_loss and flipped_log.train_acc == original_log.train_acc
    # ... while flipping labels of weighted examples does change the run.
    changed, _ = fit(ctx, y=torch.where(~ignored & (torch.arange(len(y)) % 4 == 0), 1 - y, y), weights=weights)
    assert not all(torch.equal(a, b) for a, b in zip(parameters(original), parameters(changed), strict=True))


def test_a_custom_objective_receives_the_minibatch_weights() -> None:
    x, y = separable_problem(n=100)
    weights = torch.arange(100, dtype=torch.float32)
    seen: list[Tensor] = []

    def objective(model: nn.Module, xb: Tensor, yb: Tensor, wb: Tensor) -> tuple[Tensor, Tensor]:
        seen.append(wb.clone())
        logits = model(xb)
        return weighted_mean(F.cross_entropy(logits, yb, reduction="none"), wb), logits

    fit(context(x, y, fixed(2, batch_size=30, lr_schedule="onecycle")), objective=objective, weights=weights)
    assert [len(wb) for wb in seen] == [30, 30, 30, 10] * 2
    for epoch in (seen[:4], seen[4:]):  # each epoch is a permutation of the weights
        assert torch.equal(torch.cat(epoch).sort().values, weights)
    assert not torch.equal(torch.cat(seen[:4]), weights)


def test_weighted_mean_of_all_zero_weights_is_zero_with_a_zero_gradient() -> None:
    values = torch.tensor([0.3, 1.2], requires_grad=True)
    loss = weighted_mean(values, torch.zeros(2))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(values.grad, torch.zeros(2))


@pytest.mark.parametrize(("weights", "kwargs", "message"), [
    (torch.ones(5), {}, r"weights must have shape \(200,\)"),
    (-torch.ones(200), {}, "finite and non-negative"),
    (torch.full((200,), float("nan")), {}, "finite and non-negative"),
    (torch.zeros(200), {}, "must not all be zero"),
    (torch.ones(200), {"update": lambda model, optimizer, x, y: None}, "cannot be combined with a custom update"),
])
def test_invalid_weights_are_refused(weights: Tensor, kwargs: dict[str, object], message: str) -> None:
    x, y = separable_problem()
    with pytest.raises(ValueError, match=message):
        fit(context(x, y, fixed(1)), weights=weights, **kwargs)


# --- (c) fixed epochs, configs -------------------------------------------------------------------------------------


def test_the_stopping_rule_off_runs_exactly_max_epochs() -> None:
    x, y = separable_problem()
    ctx = context(x, y, TrainConfig(batch_size=32, max_epochs=30))
    _, stopped = fit(ctx)
    assert stopped.epochs < 30 and stopped.train_acc[-1] == 1.0  # the task's rule ends this run early
    config = ctx.budget.model_copy(update={"max_epochs": 30, "stop_train_acc": None, "stop_train_loss": None})
    _, full = fit(ctx, config=config)
    assert full.epochs == len(full.train_loss) == len(full.train_acc) == 30
    assert full.train_loss[:stopped.epochs] == stopped.train_loss  # the same run, continued
    weights = torch.linspace(0.5, 2.0, len(y))
    _, weighted = fit(ctx, config=config, weights=weights)
    assert weighted.epochs == 30
    _, weighted_stopped = fit(ctx, weights=weights)  # the weighted accuracy reaches exactly 1
    assert weighted_stopped.epochs < 30 and weighted_stopped.train_acc[-1] == 1.0


def test_one_field_of_the_budget_changes_with_model_copy_and_invalid_copies_are_refused() -> None:
    x, y = separable_problem()
    ctx = context(x, y, TrainConfig(batch_size=32, max_epochs=30, stop_train_acc=None, stop_train_loss=None))
    _, log = fit(ctx, config=ctx.budget.model_copy(update={"max_epochs": 4}))
    assert log.epochs == 4
    with pytest.raises(ValidationError, match="max_epochs"):
        fit(ctx, config=ctx.budget.model_copy(update={"max_epochs": 0}))


# --- x=, y=, seed=, and what comes back ------------------------------------------------------------------------


def test_the_returned_model_is_the_given_one_in_eval_mode_on_the_device() -> None:
    x, y = separable_problem()
    ctx = context(x, y, fixed(2, batch_size=32))
    torch.manual_seed(0)
    model = ctx.make_backbone()
    returned, _ = ctx.fit_model(model)
    assert returned is model and not returned.training
    assert all(p.device == ctx.device and p.requires_grad for p in returned.parameters())
    fresh, _ = fit(ctx, weights=torch.linspace(0.5, 2.0, len(y)))
    assert not fresh.training


def test_relabelled_training_with_y_learns_the_new_labels() -> None:
    x, y = separable_problem()
    ctx = context(x, y, TrainConfig(batch_size=32, max_epochs=50))
    model, log = fit(ctx, y=1 - y)
    assert log.train_acc[-1] == 1.0
    with torch.no_grad():
        assert torch.equal(model(x).argmax(dim=1), 1 - y)


def test_x_and_y_together_train_on_a_different_set_and_x_alone_must_match_the_labels() -> None:
    x, y = separable_problem()
    ctx = context(x, y, fixed(2, batch_size=32))
    _, log = fit(ctx, x=x[:50], y=y[:50], weights=torch.ones(50))
    assert log.epochs == 2
    with pytest.raises(ValueError, match="pass y="):
        fit(ctx, x=x[:50])
    with pytest.raises(ValueError, match="x has 200 examples but y has 50"):
        fit(ctx, y=y[:50])


def test_the_seed_changes_only_the_shuffling() -> None:
    x, y = separable_problem()
    ctx = context(x, y, fixed(2, batch_size=32))
    default, _ = fit(ctx)
    same, _ = fit(ctx, seed=ctx.seed)
    other, _ = fit(ctx, seed=ctx.seed + 1)
    assert_identical(default, same)
    assert not all(torch.equal(a, b) for a, b in zip(parameters(default), parameters(other), strict=True))


# --- (d) the two-stage example submission ----------------------------------------------------------------------


def test_jtt_stage_two_upweights_exactly_the_stage_one_error_set(monkeypatch: pytest.MonkeyPatch) -> None:
    info = resolve_method(str(JTT), submissions_dir=None)
    x, y = separable_problem(n=300)
    ctx = context(x, y, TrainConfig(batch_size=64, max_epochs=5))
    calls: list[dict[str, object]] = []
    original = TrainContext.fit_model

    def recording(self: TrainContext, *args: object, **kwargs: object) -> tuple[nn.Module, object]:
        model, log = original(self, *args, **kwargs)
        calls.append({**kwargs, "model": model, "log": log})
        return model, log

    monkeypatch.setattr(TrainContext, "fit_model", recording)
    method = info.load_class().with_overrides({"upweight": 7.0})  # imported here: a unit test of its fit
    torch.manual_seed(0)
    model = method.fit(ctx)
    stage1, stage2 = calls
    assert stage1["log"].epochs == 1 and stage1["config"].stop_train_acc is None
    with torch.no_grad():
        errors = stage1["model"](x).argmax(dim=1) != y
    assert 0 < int(errors.sum()) < len(y)
    assert torch.equal(stage2["weights"], torch.where(errors, 7.0, 1.0))
    assert model is stage2["model"] and model is not stage1["model"] and not model.training


def test_jtt_submission_loads_and_scores_the_smoke_suite(tmp_path: Path) -> None:
    info = resolve_method(str(JTT), submissions_dir=None)
    assert info.name == "example-jtt" and info.track.value == "T0"
    hparams = info.defaults
    assert hparams == {"stage1_epochs": 1, "upweight": 20.0}
    assert resolve_method("example-jtt", submissions_dir=REPO / "submissions").code_hash == info.code_hash

    messages: list[str] = []
    # The inline executor skips the per-job child process: same numbers, a third of the time.
    outcome = score(info, hparams, SUITES["smoke"], cache=ResultCache(tmp_path / "cache"), executor="inline",
                    log=messages.append)
    assert [r.status for r in outcome.results] == ["ok", "ok"], [r.error for r in outcome.results]
    for result in outcome.results:
        assert result.method == "example-jtt" and result.hparams == hparams and result.track == "T0"
        assert 0.5 < result.metrics["acc"] <= 1.0
    error_sets = [m for m in messages if "error set:" in m]  # prefixed by the job
    assert len(error_sets) == 2 and all(m.endswith("of 3000 training points") for m in error_sets)
