"""Tests of sbbench.metrics.adversarial: PGD, universal perturbations and budget shares.

A linear score ``f(x) = w.x + b`` (logits ``[0, f]``) has a closed-form worst case: an
example with signed margin ``m = (2y - 1) f(x)`` survives every perturbation of the ball of
radius eps iff ``m > eps ||w||_*``, the dual norm (``||w||_1`` for l_inf, ``||w||_2`` for l_2),
and the same direction attacks every example, so universal and per-example attacks coincide.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from sbbench.data.features import FeatureSpace
from sbbench.metrics import (
    adversarial_accuracy,
    apply_universal,
    as_uap,
    class_sign,
    pgd_attack,
    share_on_block,
    svd_universal_perturbation,
    universal_accuracy,
    universal_share_on_block,
)

SETTINGS = settings(derandomize=True, deadline=None, database=None, max_examples=6)
D = 5
DUAL = {"linf": 1, "l2": 2}  # the dual norm's order


class LinearScore(nn.Module):
    """Logits ``[0, x.w + b]``."""

    def __init__(self, w: Tensor, b: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(len(w), 1)
        with torch.no_grad():
            self.linear.weight.copy_(w[None])
            self.linear.bias.fill_(b)

    def forward(self, x: Tensor) -> Tensor:
        score = self.linear(x.flatten(1))
        return torch.cat([torch.zeros_like(score), score], dim=1)


def linear_problem(seed: int, n: int = 400) -> tuple[LinearScore, Tensor, Tensor, Tensor]:
    """A random linear model, Gaussian inputs, random labels and signed margins ``m``."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(D, generator=g)
    model = LinearScore(w, b=0.3)
    x = torch.randn(n, D, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    margins = (2 * y - 1) * (x @ w + 0.3)
    return model, x, y, margins


def toy_space(seed: int = 0) -> FeatureSpace:
    """A randomly rotated D-dim space with S = {0} and Sc = {1, ..., D - 1}."""
    rotation = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(seed))).Q
    blocks = {"S": (0,), "Sc": tuple(range(1, D))}
    return FeatureSpace(input_shape=(D,), blocks=blocks, rotation=rotation)


def toy_on_s(n: int = 1000) -> tuple[LinearScore, Tensor, Tensor, FeatureSpace]:
    """Data whose canonical coordinates are all (2y - 1) U[0.1, 1], a model of S = z_0 only."""
    space = toy_space()
    g = torch.Generator().manual_seed(1)
    y = torch.arange(n) % 2
    z = (2 * y - 1)[:, None] * (0.1 + 0.9 * torch.rand(n, D, generator=g))
    return LinearScore(space.rotation[0].clone()), space.from_canonical(z), y, space


def survives(model: nn.Module, x: Tensor, y: Tensor, delta: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x + delta).argmax(dim=1) == y


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), norm=st.sampled_from(["linf", "l2"]))
def test_pgd_on_a_linear_model_finds_the_closed_form_worst_case(seed: int, norm: str) -> None:
    model, x, y, margins = linear_problem(seed)
    w = model.linear.weight[0].detach()
    eps = 0.3 * margins.abs().median().item() / w.norm(p=DUAL[norm]).item()
    threshold = eps * w.norm(p=DUAL[norm]).item()
    delta = pgd_attack(model, x, y, norm=norm, eps=eps, seed=seed)
    reduction = margins - (2 * y - 1) * ((x + delta) @ w + 0.3)
    assert bool((reduction > 0.999 * threshold).all())
    assert bool((reduction < (1 + 1e-5) * threshold).all())
    expected = margins > threshold
    clear = (margins - threshold).abs() > 1e-3 * threshold
    assert clear.double().mean().item() > 0.99
    assert torch.equal(survives(model, x, y, delta)[clear], expected[clear])
    assert adversarial_accuracy(model, x, y, delta) == pytest.approx(
        expected.double().mean().item(), abs=(~clear).double().mean().item() + 1e-12
    )


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_respects_the_budget_and_the_input_range(norm: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 32), nn.ReLU(), nn.Linear(32, 2))
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(300, D, generator=g), torch.randint(0, 2, (300,), generator=g)
    delta = pgd_attack(model, x, y, norm=norm, eps=0.4, steps=10, clamp=(0.0, 1.0), batch_size=128)
    assert delta.shape == x.shape
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= 0.4 * (1 + 1e-5)).all())
    assert bool(((x + delta >= 0) & (x + delta <= 1)).all())


def test_pgd_leaves_the_model_as_it_was_and_is_seeded() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 16), nn.Dropout(0.2), nn.Linear(16, 2)).train()
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(50, D, generator=g), torch.randint(0, 2, (50,), generator=g)
    with torch.no_grad():  # the attack must still be able to differentiate
        first = pgd_attack(model, x, y, norm="l2", eps=0.5, seed=4)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(pgd_attack(model, x, y, norm="l2", eps=0.5, seed=4), first)
    assert not torch.equal(pgd_attack(model, x, y, norm="l2", eps=0.5, seed=5), first)
    no_start = pgd_attack(model, x, y, norm="l2", eps=0.5, random_start=False, seed=4)
    assert torch.equal(no_start, pgd_attack(model, x, y, norm="l2", eps=0.5, random_start=False))


def test_pgd_rejects_bad_arguments() -> None:
    model, x, y, _ = linear_problem(0, n=4)
    with pytest.raises(ValueError, match="norm"):
        pgd_attack(model, x, y, norm="l1", eps=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        pgd_attack(model, x, y, norm="l2", eps=-0.1)


def test_share_on_block() -> None:
    space = toy_space()
    z = torch.tensor([[3.0, 4.0, 0, 0, 0], [0, 0, 0, 0, 0], [2.0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0]])
    delta = space.from_canonical(z)
    # Shares 0.6, (zero row skipped), 1 and 0.
    assert share_on_block(delta, space, "S") == pytest.approx((0.6 + 1 + 0) / 3)
    assert share_on_block(delta[2:3], space, "S") == pytest.approx(1.0)
    assert share_on_block(delta[3:], space, "Sc") == pytest.approx(1.0)
    assert math.isnan(share_on_block(delta[1:2], space, "S"))
    assert universal_share_on_block(delta[0], space, "Sc") == pytest.approx(0.8)


def test_l2_pgd_against_a_model_of_s_spends_its_budget_on_s() -> None:
    model, x, y, space = toy_on_s()
    delta = pgd_attack(model, x, y, norm="l2", eps=0.5)
    assert share_on_block(delta, space, "S") > 0.999
    assert adversarial_accuracy(model, x, y, delta) == pytest.approx(
        (space.to_canonical(x)[:, 0].abs() > 0.5).double().mean().item(), abs=0.01
    )


def test_universal_perturbations_use_the_class_sign_convention() -> None:
    y = torch.tensor([0, 1, 1])
    assert torch.equal(class_sign(y), torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    x = torch.zeros(3, 2)
    v = torch.tensor([0.5, -2.0])
    assert torch.equal(apply_universal(x, y, v), torch.stack([v, -v, -v]))
    assert torch.equal(
        apply_universal(x, y, v, clamp=(-1.0, 1.0)), torch.stack([v, -v, -v]).clamp(-1, 1)
    )


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_svd_universal_perturbation_of_a_linear_model_is_its_worst_direction(norm: str) -> None:
    model, x, y, margins = linear_problem(3)
    w = model.linear.weight[0].detach()
    eps = 0.3
    v = svd_universal_perturbation(pgd_attack(model, x, y, norm=norm, eps=eps), y, eps, norm)
    if norm == "l2":
        assert v.norm().item() == pytest.approx(eps)
        assert torch.cosine_similarity(v, w, dim=0).item() > 0.9999
    else:
        assert torch.equal(v, eps * w.sign())
    survive = (margins > eps * w.norm(p=DUAL[norm])).double().mean().item()
    assert universal_accuracy(model, x, y, v) == pytest.approx(survive, abs=0.01)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_as_uap_recovers_the_direction_of_s(norm: str) -> None:
    model, x, y, space = toy_on_s()
    eps = 0.5
    v = as_uap(model, x, y, norm=norm, eps=eps, batch_size=128, seed=0)
    w = space.rotation[0]
    best = eps * (w if norm == "l2" else w.sign())
    assert torch.allclose(v, best, atol=1e-4)
    if norm == "l2":
        assert universal_share_on_block(v, space, "S") > 0.9999
        survive = (space.to_canonical(x)[:, 0].abs() > eps).double().mean().item()
        assert universal_accuracy(model, x, y, v) == pytest.approx(survive, abs=0.01)


def test_as_uap_leaves_the_model_as_it_was_and_is_seeded() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Linear(16, 2)).train()
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(200, D, generator=g), torch.randint(0, 2, (200,), generator=g)
    kwargs = {"norm": "l2", "eps": 0.5, "steps": 30, "batch_size": 32, "clamp": (-1.0, 1.0)}
    v = as_uap(model, x, y, seed=1, **kwargs)
    assert v.shape == (D,)
    assert v.norm().item() <= 0.5 * (1 + 1e-5)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(as_uap(model, x, y, seed=1, **kwargs), v)
    assert not torch.equal(as_uap(model, x, y, seed=2, **kwargs), v)
