"""Built-in T0 baselines: each algorithm checked on a case small enough to verify by hand, then end to end."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.data.dataset import LabeledSet
from sbbench.methods.adversarial_training import adversarial_batch
from sbbench.methods.base import TrainContext
from sbbench.methods.cmid import cmi_weight, soft_conditional_mutual_information
from sbbench.methods.ensemble import LogitAverage, member_seed
from sbbench.methods.erm_adam import ErmAdam
from sbbench.methods.input_grad_diversity import gradient_similarity_penalty, true_class_input_gradients
from sbbench.methods.orthop import Projected, extend_basis, first_layer_weight, orthogonal_projector
from sbbench.methods.registry import resolve_method
from sbbench.methods.sam import sam_perturbation, sam_update
from sbbench.methods.sifer import forget_loss, forget_step
from sbbench.methods.spectral_decoupling import SpectralDecoupling, sd_penalty
from sbbench.models import FCN
from sbbench.runner import run_job
from sbbench.tasks import Task
from sbbench.training import TrainConfig, TrainLog

T0_METHODS = ["erm-adam", "ensemble", "adv-train-linf", "adv-train-l2", "spectral-decoupling",
              "input-grad-diversity", "sam", "orthop", "cmid", "sifer"]


@dataclass(frozen=True)
class CapturingContext(TrainContext):
    """A context whose ``fit_model`` records its arguments instead of training."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def fit_model(self, model: nn.Module | None = None, objective: Any = None, *, update: Any = None,
                  config: TrainConfig | None = None, seed: int | None = None,
                  x: Tensor | None = None) -> tuple[nn.Module | None, TrainLog]:
        self.calls.append({"model": model, "objective": objective, "update": update, "config": config})
        return model, TrainLog()


def capturing_context(budget: TrainConfig | None = None) -> CapturingContext:
    x = torch.randn(8, 4)
    return CapturingContext(train=LabeledSet(x=x, y=(x[:, 0] > 0).long()), input_shape=(4,),
                            budget=budget or TrainConfig(), seed=0, device=torch.device("cpu"),
                            make_backbone=lambda: FCN(4, 8, 2))


def linear_model(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    """``nn.Linear`` with the given ``(2, D)`` weight and bias (default 0)."""
    weight_t = torch.tensor(weight)
    layer = nn.Linear(weight_t.shape[1], weight_t.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight_t)
        layer.bias.copy_(torch.tensor(bias) if bias is not None else torch.zeros(weight_t.shape[0]))
    return layer


# --- erm-adam -------------------------------------------------------------------------------


def test_erm_adam_trains_with_adam_at_its_learning_rate_and_the_task_budget_otherwise() -> None:
    budget = TrainConfig(lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=64, max_epochs=7)
    ctx = capturing_context(budget)
    ErmAdam.with_overrides({"lr": 3e-4}).fit(ctx)
    (call,) = ctx.calls
    assert call["config"] == budget.model_copy(update={"optimizer": "adam", "lr": 3e-4})
    assert ErmAdam.defaults().lr == 1e-3


# --- ensemble -------------------------------------------------------------------------------


def test_logit_average_averages_member_logits_and_concatenates_features() -> None:
    first, second = FCN(3, 4, 1), FCN(3, 5, 1)
    ensemble = LogitAverage([first, second])
    x = torch.randn(6, 3)
    torch.testing.assert_close(ensemble(x), (first(x) + second(x)) / 2)
    features = ensemble.features(x)
    assert features.shape == (6, 9)
    torch.testing.assert_close(features, torch.cat([first.features(x), second.features(x)], dim=1))


def test_logit_average_of_fixed_linear_members_by_hand() -> None:
    ensemble = LogitAverage([linear_model([[1.0, 0.0], [0.0, 1.0]]),
                             linear_model([[0.0, 0.0], [2.0, 0.0]], [1.0, -1.0])])
    x = torch.tensor([[1.0, 2.0]])
    # member 1: (1, 2); member 2: (0 + 1, 2 - 1) = (1, 1); mean (1, 1.5)
    torch.testing.assert_close(ensemble(x), torch.tensor([[1.0, 1.5]]))


def test_ensemble_members_get_distinct_seeds_and_member_zero_is_the_job_seed() -> None:
    seeds = [member_seed(7, index) for index in range(5)]
    assert seeds[0] == 7
    assert len(set(seeds)) == 5


# --- adversarial training -------------------------------------------------------------------


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_adversarial_training_examples_lie_in_the_ball_and_leave_parameters_without_gradients(
        norm: str, eps: float) -> None:
    torch.manual_seed(0)
    model = FCN(6, 16, 2)
    x = torch.randn(32, 6)
    y = (x[:, 0] > 0).long()
    x_adv = adversarial_batch(model, x, y, norm=norm, eps=eps, steps=7, step_fraction=0.4, clamp=None, seed=1)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= eps * (1 + 1e-5)).all())
    assert size.max() > 0.5 * eps  # the attack moves the inputs
    assert all(p.grad is None for p in model.parameters())
    assert model.training  # the attack gives the model back in its own mode
    loss_clean = F.cross_entropy(model(x), y)
    assert F.cross_entropy(model(x_adv), y) > loss_clean


def test_adversarial_training_examples_respect_the_input_range() -> None:
    torch.manual_seed(0)
    model = FCN(4, 8, 1)
    x = torch.rand(16, 4)
    x_adv = adversarial_batch(model, x, (x[:, 0] > 0.5).long(), norm="linf", eps=0.3, steps=5, step_fraction=0.4,
                              clamp=(0.0, 1.0), seed=0)
    assert x_adv.min() >= 0 and x_adv.max() <= 1


# --- spectral decoupling --------------------------------------------------------------------


def test_sd_penalty_is_the_mean_squared_logit() -> None:
    logits = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    assert sd_penalty(logits).item() == pytest.approx((1 + 4 + 9 + 1) / 4)


def test_sd_objective_adds_the_penalty_after_the_warmup() -> None:
    ctx = capturing_context()
    SpectralDecoupling.with_overrides({"lam": 0.5, "warmup_steps": 2}).fit(ctx)
    objective = ctx.calls[0]["objective"]
    model = linear_model([[1.0, 0.0], [0.0, 2.0]])
    x, y = torch.tensor([[1.0, 1.0], [0.5, -1.0]]), torch.tensor([1, 0])
    logits = torch.tensor([[1.0, 2.0], [0.5, -2.0]])
    ce = F.cross_entropy(logits, y).item()
    for _ in range(2):
        assert objective(model, x, y)[0].item() == pytest.approx(ce)
    loss, out = objective(model, x, y)
    torch.testing.assert_close(out, logits)
    assert loss.item() == pytest.approx(ce + 0.5 * (1 + 4 + 0.25 + 4) / 4)


# --- input-gradient diversity ---------------------------------------------------------------


def test_input_gradients_and_cosine_penalty_of_two_linear_models_by_hand() -> None:
    first = linear_model([[1.0, 1.0], [1.0, 0.0]])
    second = linear_model([[0.0, 1.0], [2.0, -1.0]])
    x, y = torch.tensor([[0.3, -0.2], [1.0, 2.0]]), torch.tensor([0, 1])
    logits, grads = true_class_input_gradients([first, second], x, y)
    # the input gradient of the true-class logit of a linear model is that class's weight row
    torch.testing.assert_close(grads[0], torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    torch.testing.assert_close(grads[1], torch.tensor([[0.0, 1.0], [2.0, -1.0]]))
    torch.testing.assert_close(logits[0], first(x))
    cos_0 = 1 / math.sqrt(2)  # (1,1).(0,1) / (sqrt 2 * 1)
    cos_1 = 2 / math.sqrt(5)  # (1,0).(2,-1) / (1 * sqrt 5)
    assert gradient_similarity_penalty(grads, squared=False).item() == pytest.approx((cos_0 + cos_1) / 2)
    assert gradient_similarity_penalty(grads, squared=True).item() == pytest.approx((cos_0**2 + cos_1**2) / 2)


def test_cosine_penalty_sums_over_pairs_and_reaches_the_weights_by_double_backprop() -> None:
    members = [linear_model([[0.0, 0.0], [1.0, 0.0]]), linear_model([[0.0, 0.0], [0.0, 1.0]]),
               linear_model([[0.0, 0.0], [1.0, 1.0]])]
    x, y = torch.tensor([[0.5, 0.5]]), torch.tensor([1])
    _, grads = true_class_input_gradients(members, x, y)
    penalty = gradient_similarity_penalty(grads, squared=False)
    # pairs: (e1, e2) -> 0, (e1, (1,1)) -> 1/sqrt2, (e2, (1,1)) -> 1/sqrt2
    assert penalty.item() == pytest.approx(2 / math.sqrt(2))
    penalty.backward()
    assert members[0].weight.grad is not None and members[0].weight.grad[1].abs().sum() > 0


# --- SAM ------------------------------------------------------------------------------------


def test_sam_perturbation_has_norm_rho_and_the_gradient_direction() -> None:
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0], [4.0]])]
    perturbation = sam_perturbation(grads, rho=0.05)
    flat = torch.cat([e.flatten() for e in perturbation])
    assert flat.norm().item() == pytest.approx(0.05)
    torch.testing.assert_close(flat, 0.05 * torch.tensor([3.0, 0.0, 0.0, 4.0]) / 5)


def test_sam_step_uses_the_gradient_at_the_perturbed_weights() -> None:
    torch.manual_seed(0)
    model = FCN(3, 5, 1)
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    rho, lr = 0.5, 0.1
    start = [p.detach().clone() for p in model.parameters()]
    # by hand: g at w, e = rho g / ||g||, g' at w + e, w <- w - lr g'
    reference = FCN(3, 5, 1)
    reference.load_state_dict(model.state_dict())
    g = torch.autograd.grad(F.cross_entropy(reference(x), y), list(reference.parameters()))
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    with torch.no_grad():
        for p, gi in zip(reference.parameters(), g, strict=True):
            p.add_(rho * gi / norm)
    g_sharp = torch.autograd.grad(F.cross_entropy(reference(x), y), list(reference.parameters()))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss, _ = sam_update(rho)(model, optimizer, x, y)
    for p, p0, gs in zip(model.parameters(), start, g_sharp, strict=True):
        torch.testing.assert_close(p.detach(), p0 - lr * gs)
    assert loss.item() == pytest.approx(F.cross_entropy(fcn_logits(start, x), y).item())


def fcn_logits(params: list[Tensor], x: Tensor) -> Tensor:
    """Logits of ``FCN(3, 5, 1)`` with the given parameters."""
    model = FCN(3, 5, 1)
    with torch.no_grad():
        for p, value in zip(model.parameters(), params, strict=True):
            p.copy_(value)
    return model(x)


# --- OrthoP ---------------------------------------------------------------------------------


def test_orthop_projection_removes_the_top_singular_direction_of_the_weight_change() -> None:
    generator = torch.Generator().manual_seed(0)
    v = torch.tensor([1.0, 2.0, 2.0, 0.0]) / 3
    u = torch.randn(6, generator=generator)
    change = 5.0 * torch.outer(u, v) + 0.01 * torch.randn(6, 4, generator=generator)
    basis = extend_basis(torch.zeros(4, 0), change, rank=1)
    assert basis.shape == (4, 1)
    assert abs(basis[:, 0] @ v).item() == pytest.approx(1.0, abs=1e-3)
    projector = orthogonal_projector(basis)
    torch.testing.assert_close(projector, projector.T)
    torch.testing.assert_close(projector @ projector, projector)
    x = torch.randn(5, 4, generator=generator)
    projected = Projected(nn.Identity(), projector).project(x)
    torch.testing.assert_close(projected @ basis, torch.zeros(5, 1), atol=1e-6, rtol=0)
    # the next direction is taken off the removed one: the basis stays orthonormal
    basis2 = extend_basis(basis, change, rank=1)
    torch.testing.assert_close(basis2.T @ basis2, torch.eye(2), atol=1e-5, rtol=0)


def test_orthop_needs_a_first_linear_layer_on_the_flattened_input() -> None:
    model = FCN(4, 8, 2)
    assert first_layer_weight(model, 4) is model.body[1].weight
    conv = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="first layer is linear"):
        first_layer_weight(conv, 6)


# --- CMID -----------------------------------------------------------------------------------


def test_cmid_plugin_cmi_of_a_known_joint() -> None:
    # within class 0, the (main, simple) predictions are one-hot with joint [[.4, .1], [.1, .4]]
    pairs = [(0, 0)] * 4 + [(0, 1)] + [(1, 0)] + [(1, 1)] * 4
    p = F.one_hot(torch.tensor([a for a, _ in pairs]), 2).float()
    q = F.one_hot(torch.tensor([b for _, b in pairs]), 2).float()
    y0 = torch.zeros(10, dtype=torch.long)
    expected = 2 * 0.4 * math.log(0.4 / 0.25) + 2 * 0.1 * math.log(0.1 / 0.25)
    assert soft_conditional_mutual_information(p, q, y0).item() == pytest.approx(expected, rel=1e-5)
    # class 1: identical fair predictions (I = log 2); class weights 10/20 and 10/20
    p1 = F.one_hot(torch.tensor([0, 1] * 5), 2).float()
    both = soft_conditional_mutual_information(torch.cat([p, p1]), torch.cat([q, p1]),
                                               torch.cat([y0, torch.ones(10, dtype=torch.long)]))
    assert both.item() == pytest.approx(0.5 * expected + 0.5 * math.log(2), rel=1e-5)


def test_cmid_plugin_cmi_is_zero_for_soft_predictions_that_do_not_vary() -> None:
    # constant soft predictions: the joint is an outer product, so I = 0
    p = torch.tensor([[0.7, 0.3]]).repeat(6, 1)
    q = torch.tensor([[0.2, 0.8]]).repeat(6, 1)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    assert soft_conditional_mutual_information(p, q, y).item() == pytest.approx(0.0, abs=1e-7)


def test_cmid_weight_schedule() -> None:
    assert cmi_weight(0, lam=0.5, scale=10, cap=5) == 0.5
    assert cmi_weight(10, lam=0.5, scale=10, cap=5) == 1.0
    assert cmi_weight(1000, lam=0.5, scale=10, cap=5) == 2.5


# --- SiFeR ----------------------------------------------------------------------------------


def test_sifer_forget_loss_is_cross_entropy_to_uniform() -> None:
    assert forget_loss(torch.zeros(3, 2)).item() == pytest.approx(math.log(2))
    logits = torch.tensor([[2.0, 0.0]])
    expected = -(F.log_softmax(logits, dim=1)).mean().item()
    assert forget_loss(logits).item() == pytest.approx(expected)


def test_sifer_forget_step_touches_only_the_early_layers() -> None:
    torch.manual_seed(0)
    model, aux = FCN(4, 8, 2), FCN(8, 16, 2)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    aux_before = [p.detach().clone() for p in aux.parameters()]
    optimizer = torch.optim.SGD(model.early_layers.parameters(), lr=0.5)
    forget_step(model, aux, optimizer, torch.randn(32, 4))
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"body.1.weight", "body.1.bias"}
    assert all(torch.equal(p, p0) for p, p0 in zip(aux.parameters(), aux_before, strict=True))
    assert all(p.grad is None for p in aux.parameters())
    assert all(p.grad is None for name, p in model.named_parameters() if name not in changed)


def test_fcn_early_layers_share_the_first_hidden_layer() -> None:
    model = FCN(4, 8, 2)
    x = torch.randn(3, 4)
    torch.testing.assert_close(model.early_features(x), torch.relu(model.body[1](x)))
    assert [p for p in model.early_layers.parameters()] == [model.body[1].weight, model.body[1].bias]
    with pytest.raises(ValueError):
        FCN(4, 8, 0).early_layers  # noqa: B018


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", T0_METHODS)
def test_method_runs_end_to_end_deterministically(name: str, tiny_task: Task) -> None:
    info = resolve_method(name)
    assert info.track.value == "T0" and info.version == "1"
    first = run_job(info, info.defaults, tiny_task, seed=0)
    second = run_job(info, info.defaults, tiny_task, seed=0)
    assert first.status == "ok", first.error
    assert first.metrics == second.metrics
    assert 0.0 <= first.metrics["s_rand_auc"] <= 1.0
