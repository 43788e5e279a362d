"""Universal accuracies are worst cases over radii, ``adv_share_s`` is read at the label flip.

On slab data a universal perturbation of exactly ``eps`` can overshoot the slab it should
reach and carry points back into a slab of their class, so the accuracy at exactly ``eps``
can rise with ``eps``; ``uap_*_acc`` take the worst case over the radii ``eps k / K``. After
PGD flips a label it keeps ascending the margin along other directions, so the share of the
end point on ``S`` drifts with the number of steps; ``adv_share_s`` reads the PGD steps' move
up to the first flip. All models are hand-built functions of the canonical coordinates ``z``
(``s = z_0`` is the block ``S``) of a randomly rotated 10-dim space.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from sbbench.data.features import FeatureSpace
from sbbench.metrics import (
    AttackSpec,
    MetricSpec,
    as_uap,
    evaluate,
    pgd_attack,
    share_on_block,
    svd_universal_perturbation,
    universal_accuracy,
)
from sbbench.metrics.adversarial import (
    FLIP_BISECTION_STEPS,
    UNIVERSAL_RADIUS_STEPS,
    flip_displacement,
    pgd_attack_with_flip,
    universal_scales,
    worst_universal_accuracy,
)
from sbbench.seeding import derive_seed

D = 10
N = 400
QUIET = {"randomization_repeats": 1, "swap": False, "coordinate_profile": False}


def space() -> FeatureSpace:
    """A Haar-rotated D-dim space with ``S = {0}`` and ``Sc = {1, ..., D - 1}``."""
    rotation = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(0))).Q
    blocks = {"S": (0,), "Sc": tuple(range(1, D))}
    return FeatureSpace(input_shape=(D,), blocks=blocks, rotation=rotation)


class Canonical(nn.Module):
    """Logits ``[0, score(z)]`` of the canonical coordinates ``z`` of ``space``."""

    def __init__(self, space: FeatureSpace, score) -> None:
        super().__init__()
        self.space, self.score = space, score

    def forward(self, x: Tensor) -> Tensor:
        f = self.score(self.space.to_canonical(x))
        return torch.stack([torch.zeros_like(f), f], dim=1)


def inputs(space: FeatureSpace, s: Tensor, sc_scale: float, seed: int = 1) -> Tensor:
    """Inputs with ``z_0 = s`` and the other coordinates ``U[-sc_scale, sc_scale]``."""
    z = sc_scale * (2 * torch.rand(len(s), D, generator=torch.Generator().manual_seed(seed)) - 1)
    z[:, 0] = s
    return space.from_canonical(z)


def slab_problem() -> tuple[nn.Module, Tensor, Tensor, FeatureSpace]:
    """Class 1 iff ``|s| < 1``: class 1 at ``s ~ U[-0.9, 0.9]``, class 0 at ``|s| ~ U[1.1, 2]``.

    Along ``S`` with the class sign (``+t`` for class 0, ``-t`` for class 1), class 1 is fooled
    for ``s < t - 1`` and the class-0 points at ``s < 0`` for ``-1 < s + t < 1``: the accuracy
    falls to 0.25 on ``t in [1.9, 2.1]`` and rises back to 0.5 at ``t = 3`` (overshoot).
    """
    sp = space()
    g = torch.Generator().manual_seed(2)
    y = torch.arange(N) % 2
    side = torch.where(torch.rand(N, generator=g) < 0.5, -1.0, 1.0)
    inside = 1.8 * torch.rand(N, generator=g) - 0.9
    outside = side * (1.1 + 0.9 * torch.rand(N, generator=g))
    s = torch.where(y == 1, inside, outside)
    return Canonical(sp, lambda z: 1 - z[:, 0].abs()), inputs(sp, s, 1.0), y, sp


def flip_first_problem() -> tuple[nn.Module, Tensor, Tensor, FeatureSpace]:
    """Class 1 iff ``clamp(1 - |s|, min=-0.2) + w . z_Sc > 0`` with ``||w||_2 = 0.05``.

    Class 1 at ``|s| ~ U[0.6, 0.9]``, class 0 at ``|s| ~ U[1.05, 1.15]``, ``z_Sc ~ U[-0.3, 0.3]``:
    every label flips along ``S`` within a move of 0.4, after which the ``S`` term saturates
    (``|s| > 1.2``) and PGD's margin ascent moves along ``w``, in ``Sc``.
    """
    sp = space()
    g = torch.Generator().manual_seed(3)
    y = torch.arange(N) % 2
    side = torch.where(torch.rand(N, generator=g) < 0.5, -1.0, 1.0)
    u = torch.rand(N, generator=g)
    s = side * torch.where(y == 1, 0.6 + 0.3 * u, 1.05 + 0.1 * u)
    w = 0.05 * torch.ones(D - 1) / (D - 1) ** 0.5

    def score(z: Tensor) -> Tensor:
        return torch.clamp(1 - z[:, 0].abs(), min=-0.2) + z[:, 1:] @ w

    return Canonical(sp, score), inputs(sp, s, 0.3), y, sp


def linear_problem() -> tuple[nn.Module, Tensor, Tensor, FeatureSpace, Tensor]:
    """Score ``w . z`` with weight on both blocks; ``z ~ N(0, I)`` labelled by the score."""
    sp = space()
    w = torch.tensor([1.0, 0.5, -0.3, 0.2, 0, 0, 0, 0, 0.4, -0.1])
    z = torch.randn(N, D, generator=torch.Generator().manual_seed(4))
    y = (z @ w > 0).long()
    return Canonical(sp, lambda c: c @ w), sp.from_canonical(z), y, sp, w


def l2_spec(eps: list[float], **attack: object) -> MetricSpec:
    return MetricSpec(attacks=[AttackSpec(norm="l2", eps=e, **attack) for e in eps], **QUIET)


# (a) ---------------------------------------------------------------------------------------


def test_universal_accuracy_does_not_rise_with_eps_on_slabs() -> None:
    model, x, y, sp = slab_problem()
    radii = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0]
    metrics = evaluate(model, x, y, sp, l2_spec(radii)).metrics
    svd = [metrics[f"uap_svd_acc_l2_{e}"] for e in radii]
    # Analytically 0.78, 0.5, 0.36, 0.25, then the plateau 0.25 (0.5 at exactly 3 and 4).
    assert svd == sorted(svd, reverse=True), svd
    assert svd[-1] == pytest.approx(0.25, abs=0.05)
    for e in radii:
        assert metrics[f"uap_svd_share_s_l2_{e}"] > 0.99
    uap = [metrics[f"uap_acc_l2_{e}"] for e in radii]
    assert uap == sorted(uap, reverse=True), uap


# (b) ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("step_size", [None, 0.05])
def test_adv_share_s_is_read_at_the_flip_and_does_not_drift_with_the_steps(
    step_size: float | None,
) -> None:
    model, x, y, sp = flip_first_problem()
    shares = []
    for steps in [10, 20, 50]:
        attack = AttackSpec(norm="l2", eps=1.0, steps=steps, step_size=step_size)
        spec = MetricSpec(attacks=[attack], universal=False, **QUIET)
        shares.append(evaluate(model, x, y, sp, spec).metrics["adv_share_s_l2_1.0"])
    # Every step moves along (+-1 on S, w on Sc) until the flip: share 1 / sqrt(1 + 0.05^2).
    assert max(shares) - min(shares) <= 0.02, shares
    assert min(shares) > 0.99, shares


# (c) ---------------------------------------------------------------------------------------


def test_on_a_linear_model_the_worst_cases_equal_the_end_point_metrics() -> None:
    model, x, y, sp, w = linear_problem()
    seed, tag = 0, "l2_1.0"
    metrics = evaluate(model, x, y, sp, l2_spec([1.0]), seed=seed).metrics
    delta = pgd_attack(model, x, y, norm="l2", eps=1.0, seed=derive_seed(seed, f"pgd_{tag}"))
    v_svd = svd_universal_perturbation(delta, y, 1.0, "l2")
    v_uap = as_uap(model, x, y, norm="l2", eps=1.0, seed=derive_seed(seed, f"uap_{tag}"))
    assert metrics[f"uap_svd_acc_{tag}"] == universal_accuracy(model, x, y, v_svd) < 0.9
    assert metrics[f"uap_acc_{tag}"] == universal_accuracy(model, x, y, v_uap) < 0.9
    # The l_2 PGD steps all follow w: the share of w on S, up to the random start's residue.
    share_w = (w[0].abs() / w.norm()).item()
    assert metrics[f"adv_share_s_{tag}"] == pytest.approx(share_w, abs=1e-3)
    assert metrics[f"adv_share_s_{tag}"] == pytest.approx(share_on_block(delta, sp, "S"), abs=0.02)


# the new functions -------------------------------------------------------------------------


def test_flip_points_lie_on_the_linear_boundary_within_the_bisection_tolerance() -> None:
    model, x, y, sp, w = linear_problem()
    result = pgd_attack_with_flip(model, x, y, norm="l2", eps=1.0, steps=10, seed=5)
    assert torch.equal(result.delta, pgd_attack(model, x, y, norm="l2", eps=1.0, steps=10, seed=5))
    flipped = result.flip_step >= 1
    assert flipped.double().mean().item() > 0.3
    margin = (2 * y - 1) * (sp.to_canonical(x + result.flip) @ w)
    assert bool((margin[flipped] <= 0).all())  # wrong (a tie predicts class 0)
    step = 2.5 * 1.0 / 10  # |p_j - p_{j-1}| <= one step (or the start's eps / 10)
    assert bool((margin[flipped] > -w.norm() * step * 2.0**-FLIP_BISECTION_STEPS * 1.01).all())
    never = result.flip_step == -1
    assert bool(never.any())
    assert torch.equal(result.flip[never], result.delta[never])
    # The move from the start follows w exactly until the flip (no projection yet).
    moved = sp.to_canonical(flip_displacement(result)[flipped & (result.flip_step >= 2)])
    assert torch.cosine_similarity(moved, w[None].expand_as(moved), dim=1).abs().min() > 0.9999


def test_flip_steps_of_clean_errors_and_start_flips_are_skipped() -> None:
    model, x, y, _, _ = linear_problem()
    y = y.clone()
    y[:5] = 1 - y[:5]  # five clean errors
    result = pgd_attack_with_flip(model, x, y, norm="l2", eps=1.0, steps=5)
    assert torch.equal(result.flip_step[:5], torch.zeros(5, dtype=torch.long))
    assert torch.equal(result.flip[:5], torch.zeros(5, D))
    skipped = (result.flip_step == 0) | (result.flip_step == 1)
    moved = flip_displacement(result)
    assert bool((moved[skipped] == 0).all())
    assert bool((moved[~skipped].norm(dim=1) > 0).all())
    with pytest.raises(ValueError, match="bisection_steps"):
        pgd_attack_with_flip(model, x, y, norm="l2", eps=1.0, bisection_steps=-1)


def test_worst_universal_accuracy_is_the_minimum_over_the_radius_grid() -> None:
    model, x, y, sp = slab_problem()
    assert UNIVERSAL_RADIUS_STEPS == 20
    assert universal_scales(4) == [0.25, 0.5, 0.75, 1.0, -0.25, -0.5, -0.75, -1.0]
    assert universal_scales(4, both_signs=False) == [0.25, 0.5, 0.75, 1.0]
    v = sp.from_canonical(torch.eye(D)[:1])[0] * 3.0  # 3 along S: overshoots the minimum
    at_v = universal_accuracy(model, x, y, v)
    worst = worst_universal_accuracy(model, x, y, v)
    grid = [universal_accuracy(model, x, y, c * v) for c in universal_scales()]
    assert worst == min(grid) < at_v - 0.15
    assert worst_universal_accuracy(model, x, y, v, both_signs=False) == min(grid[:20])
    with pytest.raises(ValueError, match="radius_steps"):
        universal_scales(0)
