"""The attacks ascend the margin loss ``z_wrong - z_true``, so scaling the logits cannot mask them.

A model that returns ``c * f(x)`` with a huge ``c`` saturates the softmax: the cross-entropy's
gradient is exactly 0 in float32 for every correctly classified example, and a PGD on the
cross-entropy never moves (its adversarial accuracy equals the clean one). The margin loss is
positively homogeneous and the attacks use only the gradient's direction, so ``c * f`` is
attacked exactly as ``f`` is.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from sbbench.data.features import FeatureSpace
from sbbench.metrics import (
    AttackSpec,
    MetricSpec,
    adversarial_accuracy,
    as_uap,
    evaluate,
    pgd_attack,
    universal_accuracy,
)
from sbbench.metrics.adversarial import _ascent_direction, margin_loss

D = 10
N = 200
SCALES = [1e4, 1e30, 1e38]


class Scaled(nn.Module):
    """Logits of ``model`` multiplied by ``scale``."""

    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        self.model = model
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.model(x)


def fcn_problem() -> tuple[nn.Module, Tensor, Tensor]:
    """A random (D, 32, 2) ReLU net, Gaussian inputs and the net's own labels (clean acc 1)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 32), nn.ReLU(), nn.Linear(32, 2))
    x = torch.randn(N, D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, x, y


def pgd_accuracy(model: nn.Module, x: Tensor, y: Tensor, norm: str, eps: float) -> float:
    delta = pgd_attack(model, x, y, norm=norm, eps=eps, seed=3)  # type: ignore[arg-type]
    return adversarial_accuracy(model, x, y, delta)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize(("norm", "eps"), [("l2", 1.0), ("linf", 0.1)])
def test_pgd_accuracy_ignores_the_logit_scale(norm: str, eps: float, scale: float) -> None:
    model, x, y = fcn_problem()
    reference = pgd_accuracy(model, x, y, norm, eps)
    assert reference < 0.9  # the attack does fool the unscaled model (clean accuracy is 1)
    assert pgd_accuracy(Scaled(model, scale), x, y, norm, eps) == pytest.approx(
        reference, abs=1 / N
    )


@pytest.mark.parametrize("scale", SCALES[:2])
def test_universal_perturbation_ignores_the_logit_scale(scale: float) -> None:
    model, x, y = fcn_problem()

    def uap_accuracy(m: nn.Module) -> float:
        return universal_accuracy(m, x, y, as_uap(m, x, y, norm="l2", eps=1.0, seed=2))

    reference = uap_accuracy(model)
    assert reference < 0.9
    assert uap_accuracy(Scaled(model, scale)) == pytest.approx(reference, abs=1 / N)


def test_evaluate_attack_metrics_ignore_the_logit_scale() -> None:
    model, x, y = fcn_problem()
    space = FeatureSpace(input_shape=(D,), blocks={"S": (0, 1), "Sc": tuple(range(2, D))})
    spec = MetricSpec(
        randomization_repeats=1,
        swap=False,
        attacks=[AttackSpec(norm="l2", eps=1.0), AttackSpec(norm="linf", eps=0.1)],
        coordinate_profile=False,
    )
    reference = evaluate(model, x, y, space, spec).metrics
    scaled = evaluate(Scaled(model, 1e30), x, y, space, spec).metrics
    assert reference["adv_acc_l2_1.0"] < 0.9
    assert scaled.keys() == reference.keys()
    for key, value in reference.items():
        tolerance = 1 / N if "acc" in key else 1e-3
        assert scaled[key] == pytest.approx(value, abs=tolerance), key


def test_margin_loss_is_the_other_logit_minus_the_true_one() -> None:
    logits = torch.tensor([[1.0, 3.0], [1.0, 3.0], [-2.0, 0.5]])
    y = torch.tensor([0, 1, 1])
    assert torch.equal(margin_loss(logits, y), torch.tensor([2.0, -2.0, -2.5]))
    assert torch.equal(margin_loss(4 * logits, y), 4 * margin_loss(logits, y))
    three = torch.tensor([[0.0, 5.0, 2.0]])
    assert torch.equal(margin_loss(three, torch.tensor([2])), torch.tensor([3.0]))


def test_l2_ascent_direction_survives_huge_zero_and_invalid_gradients() -> None:
    grad = torch.tensor(
        [
            [3e30, 4e30, 0.0],  # ||g||_2 overflows float32
            [3e-40, 4e-40, 0.0],  # subnormal
            [0.0, 0.0, 0.0],
            [math.inf, 1.0, -math.inf],
            [3.0, math.nan, 4.0],
        ]
    )
    s = 1 / math.sqrt(2)
    expected = torch.tensor(
        [[0.6, 0.8, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 0.0], [s, 0.0, -s], [0.6, 0.0, 0.8]]
    )
    direction = _ascent_direction(grad, "l2")
    assert torch.allclose(direction, expected, atol=1e-6)
    assert torch.equal(_ascent_direction(grad, "linf")[4], torch.tensor([1.0, 0.0, 1.0]))


def separable_problem(margin: float, n: int = 200) -> tuple[nn.Module, Tensor, Tensor]:
    """2-D points at distance U[margin, 1.1 margin] from the boundary of a unit-norm linear score."""
    g = torch.Generator().manual_seed(5)
    w = torch.nn.functional.normalize(torch.randn(2, generator=g), dim=0)
    y = torch.arange(n) % 2
    distance = margin * (1 + 0.1 * torch.rand(n, generator=g))
    along = 3 * torch.randn(n, generator=g)
    x = ((2 * y - 1) * distance)[:, None] * w + along[:, None] * torch.stack([-w[1], w[0]])
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.stack([-w / 2, w / 2]))  # z_1 - z_0 = w.x
        model.bias.zero_()
    return model, x, y


@pytest.mark.parametrize("scale", [1.0, 1e30])
def test_l2_pgd_fools_exactly_the_examples_within_reach(scale: float) -> None:
    margin = 0.3
    model, x, y = separable_problem(margin)
    model = Scaled(model, scale)
    clean = adversarial_accuracy(model, x, y, torch.zeros_like(x))
    assert clean == 1.0
    assert pgd_accuracy(model, x, y, "l2", 0.8 * margin) == clean
    assert pgd_accuracy(model, x, y, "l2", 1.2 * margin) <= 1 / len(x)
