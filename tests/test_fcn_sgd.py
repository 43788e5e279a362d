"""The fused FCN step makes the same updates as autograd + torch.optim.SGD."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sbbench.models import FCN
from sbbench.training import TrainConfig, cross_entropy_objective, gradient_step
from sbbench.training.fcn_sgd import FusedFCNSGDStep, supports_fused_step
from sbbench.training.loop import default_step


def _batches(n_steps: int, batch: int, d: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(batch, d, generator=generator), torch.randint(0, 2, (batch,), generator=generator))
            for _ in range(n_steps)]


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
@pytest.mark.parametrize(("momentum", "weight_decay"), [(0.0, 0.0), (0.0, 5e-4), (0.9, 5e-4)])
def test_fused_step_matches_autograd_sgd(depth: int, momentum: float, weight_decay: float) -> None:
    torch.manual_seed(0)
    reference = FCN(7, width=16, depth=depth)
    fused = copy.deepcopy(reference)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay)
    step = FusedFCNSGDStep(fused, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    for x, y in _batches(25, 32, 7):
        loss_ref, logits_ref = gradient_step(cross_entropy_objective)(reference, optimizer, x, y)
        loss_fused, logits_fused = step(fused, optimizer, x, y)
        torch.testing.assert_close(loss_fused, loss_ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(logits_fused, logits_ref, rtol=1e-5, atol=1e-5)
    for p_ref, p_fused in zip(reference.parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(p_fused, p_ref, rtol=1e-5, atol=1e-5)


def test_fused_loss_is_the_mean_cross_entropy() -> None:
    model = FCN(3, width=4, depth=1)
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    expected = F.cross_entropy(model(x), y)
    loss, _ = FusedFCNSGDStep(model, lr=0.0, momentum=0.0, weight_decay=0.0)(model, None, x, y)
    torch.testing.assert_close(loss, expected)


def test_default_step_uses_the_fused_path_only_for_plain_erm_with_sgd() -> None:
    model = FCN(5, width=8, depth=2)
    assert supports_fused_step(model)
    assert isinstance(default_step(model, cross_entropy_objective, TrainConfig()), FusedFCNSGDStep)
    assert not isinstance(default_step(model, cross_entropy_objective, TrainConfig(optimizer="adam")),
                          FusedFCNSGDStep)

    def custom(model, x, y):
        return cross_entropy_objective(model, x, y)

    assert not isinstance(default_step(model, custom, TrainConfig()), FusedFCNSGDStep)
    assert not supports_fused_step(torch.nn.Sequential(torch.nn.Linear(5, 2)))
