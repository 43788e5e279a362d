"""Tests of sbbench.metrics.evaluate: the metric specs, the result keys and their values."""

from __future__ import annotations

import pydantic
import pytest
import torch
from torch import Tensor, nn

from sbbench.data.features import FeatureSpace
from sbbench.metrics import AttackSpec, Evaluation, MetricSpec, evaluate

D = 4
FAST = {"randomization_repeats": 2}


class CanonicalLinear(nn.Module):
    """Logits ``[0, z . w]`` of the canonical coordinates ``z``."""

    def __init__(self, space: FeatureSpace, w: list[float]) -> None:
        super().__init__()
        self.space = space
        self.linear = nn.Linear(D, 1, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([w]))

    def forward(self, x: Tensor) -> Tensor:
        score = self.linear(self.space.to_canonical(x))
        return torch.cat([torch.zeros_like(score), score], dim=1)


@pytest.fixture(scope="module")
def toy() -> tuple[Tensor, Tensor, FeatureSpace]:
    """Rotated D-dim data, each canonical coordinate (2y - 1) U[0.1, 1]; S = {0}."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(1000) % 2
    z = (2 * y - 1)[:, None] * (0.1 + 0.9 * torch.rand(len(y), D, generator=g))
    rotation = torch.linalg.qr(torch.randn(D, D, generator=g)).Q
    space = FeatureSpace(input_shape=(D,), blocks={"S": (0,), "Sc": (1, 2, 3)}, rotation=rotation)
    return space.from_canonical(z), y, space


@pytest.fixture(scope="module")
def on_s_evaluation(toy: tuple[Tensor, Tensor, FeatureSpace]) -> Evaluation:
    x, y, space = toy
    return evaluate(CanonicalLinear(space, [1.0, 0.0, 0.0, 0.0]), x, y, space, MetricSpec(**FAST))


def test_default_spec_produces_exactly_the_documented_keys(on_s_evaluation: Evaluation) -> None:
    expected = {"acc", "auc", "s_rand_acc", "s_rand_auc", "sc_rand_acc", "sc_rand_auc"}
    expected |= {"s_swap_acc", "sc_swap_acc"}
    for tag in ["l2_0.5", "l2_1.0", "linf_0.05", "linf_0.1"]:
        expected |= {f"adv_acc_{tag}", f"adv_share_s_{tag}"}
    for tag in ["l2_0.5", "l2_1.0"]:
        expected |= {f"uap_svd_acc_{tag}", f"uap_svd_share_s_{tag}"}
        expected |= {f"uap_acc_{tag}", f"uap_share_s_{tag}"}
    assert set(on_s_evaluation.metrics) == expected
    assert set(on_s_evaluation.profiles) == {"coord_random_auc", "coord_swap_acc"}
    assert all(len(p) == D for p in on_s_evaluation.profiles.values())
    assert all(0 <= value <= 1 for value in on_s_evaluation.metrics.values())


def test_a_model_of_s_alone_shows_extreme_simplicity_bias(
    toy: tuple[Tensor, Tensor, FeatureSpace], on_s_evaluation: Evaluation
) -> None:
    x, _, space = toy
    m = on_s_evaluation.metrics
    assert m["acc"] == m["auc"] == m["sc_rand_acc"] == m["sc_rand_auc"] == m["sc_swap_acc"] == 1
    assert m["s_rand_auc"] == pytest.approx(0.5, abs=0.05)
    assert m["s_swap_acc"] == 0
    s_margin = space.to_canonical(x)[:, 0].abs()
    for eps in [0.5, 1.0]:
        survive = (s_margin > eps).double().mean().item()
        for name in ["adv", "uap_svd", "uap"]:
            assert m[f"{name}_acc_l2_{eps}"] == pytest.approx(survive, abs=0.01)
            assert m[f"{name}_share_s_l2_{eps}"] > 0.999
    profile = on_s_evaluation.profiles
    assert profile["coord_random_auc"][0] == pytest.approx(0.5, abs=0.06)
    assert profile["coord_random_auc"][1:] == [1.0] * (D - 1)
    assert profile["coord_swap_acc"] == [0.0] + [1.0] * (D - 1)


def test_evaluate_is_reproducible_and_families_have_their_own_seeds(
    toy: tuple[Tensor, Tensor, FeatureSpace],
) -> None:
    x, y, space = toy
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 2))
    one = [AttackSpec(norm="l2", eps=0.5, steps=5)]
    small = MetricSpec(attacks=one, coordinate_profile=False, **FAST)
    first = evaluate(model, x, y, space, small, seed=3)
    assert evaluate(model, x, y, space, small, seed=3) == first
    assert evaluate(model, x, y, space, small, seed=4) != first
    larger = MetricSpec(attacks=[AttackSpec(norm="linf", eps=0.1, steps=5), *one], **FAST)
    extended = evaluate(model, x, y, space, larger, seed=3)
    assert {k: extended.metrics[k] for k in first.metrics} == first.metrics
    no_swap = MetricSpec(attacks=[], swap=False, coordinate_profile=False, **FAST)
    reduced = evaluate(model, x, y, space, no_swap, seed=3).metrics
    assert reduced == {k: first.metrics[k] for k in reduced}
    assert "s_swap_acc" not in reduced


def test_profiles_are_skipped_for_high_dimensional_spaces(
    toy: tuple[Tensor, Tensor, FeatureSpace],
) -> None:
    x, y, space = toy
    spec = MetricSpec(attacks=[], profile_max_features=D - 1, **FAST)
    model = CanonicalLinear(space, [1.0, 0.0, 0.0, 0.0])
    assert evaluate(model, x, y, space, spec).profiles == {}


def test_attack_tags_format_eps_as_python_floats() -> None:
    assert AttackSpec(norm="l2", eps=1).tag == "l2_1.0"
    assert AttackSpec(norm="linf", eps=0.05).tag == "linf_0.05"


def test_specs_are_frozen_and_strict() -> None:
    spec = MetricSpec()
    with pytest.raises(pydantic.ValidationError):
        spec.swap = False
    with pytest.raises(pydantic.ValidationError):
        MetricSpec(repeats=3)
    with pytest.raises(pydantic.ValidationError):
        AttackSpec(norm="l1", eps=0.1)
    with pytest.raises(pydantic.ValidationError):
        AttackSpec(norm="l2", eps=0)
    with pytest.raises(pydantic.ValidationError, match="differ"):
        MetricSpec(attacks=[AttackSpec(norm="l2", eps=0.5), AttackSpec(norm="l2", eps=0.5)])
    with pytest.raises(pydantic.ValidationError, match="lo < hi"):
        MetricSpec(clamp=(1.0, 0.0))


def test_specs_and_evaluations_round_trip_through_json(on_s_evaluation: Evaluation) -> None:
    spec = MetricSpec(clamp=(0.0, 1.0), attacks=[AttackSpec(norm="linf", eps=0.3, steps=40)])
    assert MetricSpec.model_validate_json(spec.model_dump_json()) == spec
    assert Evaluation.model_validate_json(on_s_evaluation.model_dump_json()) == on_s_evaluation
