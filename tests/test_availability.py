"""Feature availability: a linear probe on frozen features, with S randomized, separates
"S^c never learned" from "S^c learned but not used"."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from sbbench.data.dataset import Dataset
from sbbench.data.features import FeatureSpace
from sbbench.data.synthetic import lms, make_synthetic
from sbbench.methods.base import Method, TrainContext
from sbbench.methods.registry import MethodInfo, resolve_method
from sbbench.metrics import block_randomized_metrics
from sbbench.metrics.availability import feature_availability, fit_linear_probe, penultimate_features
from sbbench.runner import run_job
from sbbench.tasks import Task

# class-1 slabs of a 5-slab coordinate at margin 0.1: |z| in [0.32, 0.56] (docs of the spec)
SLAB_LOW, SLAB_HIGH = 0.32, 0.56


class HandModel(nn.Module):
    """Predicts from the sign of S only; its features are chosen per test.

    ``with_complex`` adds, next to S, an indicator of S^c coordinate 1 lying in a class-1 slab
    (linearly decodable S^c: "learned but not used"); without it the features hold S only.
    """

    def __init__(self, space: FeatureSpace, with_complex: bool) -> None:
        super().__init__()
        self.space = space
        self.with_complex = with_complex
        self.scale = nn.Parameter(torch.ones(()))

    def features(self, x: Tensor) -> Tensor:
        z = self.space.to_canonical(x)
        parts = [z[:, :1]]
        if self.with_complex:
            c = z[:, 1].abs()
            parts.append(((c > SLAB_LOW - 0.01) & (c < SLAB_HIGH + 0.01)).float().unsqueeze(1))
        return torch.cat(parts, dim=1) * self.scale

    def forward(self, x: Tensor) -> Tensor:
        s = self.space.to_canonical(x)[:, 0] * self.scale
        return torch.stack([-s, s], dim=1)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return make_synthetic(lms(5, d=10, n_train=3000, n_test=2000), seed=0)


def availability(model: nn.Module, data: Dataset, seed: int = 0) -> float | None:
    return feature_availability(model, data.train.x, data.train.y, data.test.x, data.test.y, data.space, seed=seed)


def test_features_holding_sc_give_high_availability(data: Dataset) -> None:
    value = availability(HandModel(data.space, with_complex=True), data)
    assert value is not None and value > 0.97


def test_features_of_s_only_give_chance(data: Dataset) -> None:
    value = availability(HandModel(data.space, with_complex=False), data)
    assert value is not None and abs(value - 0.5) < 0.05


def test_the_hand_model_itself_ignores_sc(data: Dataset) -> None:
    """The 'learned but not used' case: the model's own S-randomized accuracy is at chance."""
    randomized = block_randomized_metrics(HandModel(data.space, with_complex=True), data.test.x, data.test.y,
                                          data.space, "S", repeats=2)
    assert abs(randomized["acc"] - 0.5) < 0.05


def test_modules_without_features_get_no_value(data: Dataset) -> None:
    assert availability(nn.Linear(10, 2), data) is None


def test_seeded_and_inputs_untouched(data: Dataset) -> None:
    model = HandModel(data.space, with_complex=True)
    x_train, x_test = data.train.x.clone(), data.test.x.clone()
    first = availability(model, data, seed=3)
    assert first == availability(model, data, seed=3)
    assert torch.equal(x_train, data.train.x) and torch.equal(x_test, data.test.x)


def test_probe_fits_separable_features() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(400, 3, generator=generator)
    y = (features[:, 0] - 0.5 * features[:, 2] > 0).long()
    probe = fit_linear_probe(features, y)
    with torch.no_grad():
        predicted = probe(features).argmax(dim=1)
    assert (predicted == y).double().mean().item() > 0.98


def test_penultimate_features_are_batched_and_gradient_free(data: Dataset) -> None:
    model = HandModel(data.space, with_complex=True)
    full = penultimate_features(model, data.test.x)
    assert full.shape == (len(data.test), 2) and not full.requires_grad
    torch.testing.assert_close(penultimate_features(model, data.test.x, batch_size=7), full)


class NoFeatures(Method):
    """Returns a module without ``features``: the runner must simply omit the metric."""

    name = "no-features"

    def fit(self, ctx: TrainContext) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(ctx.input_shape[0], 2))


def test_runner_reports_availability_for_backbones_and_omits_it_otherwise(tiny_task: Task) -> None:
    erm = resolve_method("erm")
    with_features = run_job(erm, erm.defaults, tiny_task, 0, device=torch.device("cpu"))
    assert with_features.status == "ok", with_features.error
    assert 0 <= with_features.metrics["feature_availability"] <= 1
    info = MethodInfo.of_class(NoFeatures)
    without = run_job(info, info.defaults, tiny_task, 0, device=torch.device("cpu"))
    assert without.status == "ok", without.error
    assert "feature_availability" not in without.metrics
