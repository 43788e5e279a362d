"""Tests of sbbench.metrics.randomization: block randomization, swaps and coordinate profiles."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from sbbench.data.features import FeatureSpace
from sbbench.metrics import (
    block_randomized_metrics,
    block_swapped_accuracy,
    coordinate_dependence,
    donor_block_worst_group,
    randomize_block,
    swap_block,
)
from sbbench.seeding import derive_seed

SETTINGS = settings(derandomize=True, deadline=None, database=None, max_examples=25)
D = 4


def toy(n: int = 2000, rotate: bool = True, seed: int = 0) -> tuple[Tensor, Tensor, FeatureSpace]:
    """Balanced labels; every canonical coordinate is (2y - 1) U[0.1, 1]; S = {0}, Sc = {1..3}.

    The block "pair" = {1, 2} checks that a block moves as a whole.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    z = (2 * y - 1)[:, None] * (0.1 + 0.9 * torch.rand(n, D, generator=g))
    rotation = torch.linalg.qr(torch.randn(D, D, generator=g)).Q if rotate else None
    blocks = {"S": (0,), "Sc": (1, 2, 3), "pair": (1, 2)}
    space = FeatureSpace(input_shape=(D,), blocks=blocks, rotation=rotation)
    return space.from_canonical(z), y, space


class CanonicalLinear(nn.Module):
    """Score ``z . w`` of the canonical coordinates: logits ``[0, z . w]``."""

    def __init__(self, space: FeatureSpace, w: list[float]) -> None:
        super().__init__()
        self.space = space
        self.register_buffer("w", torch.tensor(w))

    def forward(self, x: Tensor) -> Tensor:
        score = self.space.to_canonical(x) @ self.w
        return torch.stack([torch.zeros_like(score), score], dim=1)


def source_rows(z_new: Tensor, z: Tensor, coord: int) -> Tensor:
    """Index j with z[j, coord] == z_new[i, coord] for every i (values are distinct)."""
    matches = z_new[:, coord, None] == z[None, :, coord]
    assert bool((matches.sum(dim=1) == 1).all())
    return matches.int().argmax(dim=1)


@SETTINGS
@given(st.integers(0, 2**31 - 1))
def test_randomize_block_permutes_the_block_as_a_whole_and_keeps_the_rest(seed: int) -> None:
    x, _, space = toy(n=300, rotate=False)
    original = x.clone()
    z = space.to_canonical(x)
    z_new = space.to_canonical(
        randomize_block(x, space, "pair", torch.Generator().manual_seed(seed))
    )
    assert torch.equal(x, original)
    rows = source_rows(z_new, z, coord=1)
    assert torch.equal(torch.sort(rows).values, torch.arange(300))  # a permutation
    assert torch.equal(z_new[:, [1, 2]], z[rows][:, [1, 2]])  # the same one for both coords
    assert torch.equal(z_new[:, [0, 3]], z[:, [0, 3]])


@SETTINGS
@given(st.integers(0, 2**31 - 1))
def test_randomize_block_under_rotation_keeps_marginals_and_other_block(seed: int) -> None:
    x, _, space = toy(n=300)
    z = space.to_canonical(x)
    z_new = space.to_canonical(randomize_block(x, space, "S", torch.Generator().manual_seed(seed)))
    assert torch.allclose(z_new[:, 1:], z[:, 1:], atol=1e-5)
    assert torch.allclose(torch.sort(z_new[:, 0]).values, torch.sort(z[:, 0]).values, atol=1e-5)


def test_randomization_breaks_the_label_link_of_the_block_only() -> None:
    x, y, space = toy()
    on_s = CanonicalLinear(space, [1.0, 0.0, 0.0, 0.0])
    s_rand = block_randomized_metrics(on_s, x, y, space, "S", repeats=3, seed=0)
    sc_rand = block_randomized_metrics(on_s, x, y, space, "Sc", repeats=3, seed=0)
    assert s_rand["auc"] == pytest.approx(0.5, abs=0.04)
    assert s_rand["acc"] == pytest.approx(0.5, abs=0.04)
    assert sc_rand == {"acc": 1.0, "auc": 1.0}


def test_randomized_metrics_are_seeded() -> None:
    x, y, space = toy(n=500)
    on_s = CanonicalLinear(space, [1.0, 0.0, 0.0, 0.0])
    first = block_randomized_metrics(on_s, x, y, space, "S", repeats=2, seed=7)
    assert block_randomized_metrics(on_s, x, y, space, "S", repeats=2, seed=7) == first
    assert block_randomized_metrics(on_s, x, y, space, "S", repeats=2, seed=8) != first


@SETTINGS
@given(st.integers(0, 2**31 - 1))
def test_swap_takes_the_block_from_the_other_class(seed: int) -> None:
    x, y, space = toy(n=200, rotate=False)
    original_y = y.clone()
    z = space.to_canonical(x)
    z_new = space.to_canonical(swap_block(x, y, space, "S", torch.Generator().manual_seed(seed)))
    assert torch.equal(y, original_y)
    assert bool((y[source_rows(z_new, z, coord=0)] != y).all())
    assert torch.equal(z_new[:, 1:], z[:, 1:])


def test_swap_fools_a_model_that_uses_only_the_swapped_block() -> None:
    x, y, space = toy()
    on_s = CanonicalLinear(space, [1.0, 0.0, 0.0, 0.0])
    assert block_swapped_accuracy(on_s, x, y, space, "S", repeats=2) == 0.0
    assert block_swapped_accuracy(on_s, x, y, space, "Sc", repeats=2) == 1.0
    on_all = CanonicalLinear(space, [1.0, 4.0, 4.0, 4.0])  # Sc outweighs S
    assert block_swapped_accuracy(on_all, x, y, space, "S", repeats=2) == 1.0


def test_swap_needs_both_classes() -> None:
    x, y, space = toy(n=10)
    with pytest.raises(ValueError, match="both classes"):
        swap_block(x, torch.ones_like(y), space, "S", torch.Generator().manual_seed(0))


def test_coordinate_profiles_single_out_the_coordinate_the_model_uses() -> None:
    x, y, space = toy(n=1000)
    on_s = CanonicalLinear(space, [1.0, 0.0, 0.0, 0.0])
    random_auc = coordinate_dependence(on_s, x, y, space, mode="random", repeats=2)
    swap_acc = coordinate_dependence(on_s, x, y, space, mode="swap")
    assert random_auc.shape == swap_acc.shape == (D,)
    assert random_auc[0].item() == pytest.approx(0.5, abs=0.05)
    assert torch.equal(random_auc[1:], torch.ones(D - 1, dtype=torch.float64))
    assert torch.equal(swap_acc, torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("mode", ["random", "swap"])
def test_coordinate_values_do_not_depend_on_batching_or_other_coordinates(mode: str) -> None:
    x, y, space = toy(n=100)
    model = CanonicalLinear(space, [1.0, 0.5, -0.3, 0.2])
    full = coordinate_dependence(model, x, y, space, mode=mode, seed=3, repeats=2)
    one_per_pass = coordinate_dependence(
        model, x, y, space, mode=mode, seed=3, repeats=2, batch_size=64
    )
    subset = coordinate_dependence(model, x, y, space, mode=mode, seed=3, coords=[2, 0], repeats=2)
    assert torch.allclose(full, one_per_pass)
    assert torch.allclose(subset, full[[2, 0]])


def test_coordinate_dependence_rejects_bad_arguments() -> None:
    x, y, space = toy(n=20)
    model = CanonicalLinear(space, [1.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="mode"):
        coordinate_dependence(model, x, y, space, mode="shuffle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="coords"):
        coordinate_dependence(model, x, y, space, coords=[D])
    with pytest.raises(ValueError, match="repeats"):
        coordinate_dependence(model, x, y, space, repeats=0)


def test_derive_seed_gives_distinct_reproducible_streams() -> None:
    seeds = {derive_seed(0, key) for key in ["s_rand", "sc_rand", 0, 1]}
    assert len(seeds) == 4
    assert derive_seed(5, "s_rand") == derive_seed(5, "s_rand") != derive_seed(6, "s_rand")


@SETTINGS
@given(st.integers(0, 2**31 - 1))
def test_worst_group_accuracy_is_zero_for_a_model_of_s_alone_and_full_for_one_of_sc(seed: int) -> None:
    x, y, space = toy(seed=seed % 1000)
    only_s = block_randomized_metrics(CanonicalLinear(space, [1.0, 0, 0, 0]), x, y, space, "S", repeats=2, seed=seed,
                                      worst_group=True)
    only_sc = block_randomized_metrics(CanonicalLinear(space, [0, 1.0, 1.0, 1.0]), x, y, space, "S", repeats=2,
                                       seed=seed, worst_group=True)
    assert only_s["wga"] == 0.0 and only_s["acc"] == pytest.approx(0.5, abs=0.05)
    assert only_sc["wga"] == 1.0


def test_worst_group_accuracy_is_the_worst_of_the_four_label_agreement_groups() -> None:
    x, y, space = toy(n=400, rotate=False)

    class WrongOnDisagreeingOnes(nn.Module):
        """Uses S^c, but answers 0 whenever S says 0 and the label (read from S^c) is 1."""

        def forward(self, inputs: Tensor) -> Tensor:
            s, sc = inputs[:, 0], inputs[:, 1]
            score = torch.where((sc > 0) & (s < 0), -1.0, torch.sign(sc))
            return torch.stack([torch.zeros_like(score), score], dim=1)

    metrics = block_randomized_metrics(WrongOnDisagreeingOnes(), x, y, space, "S", repeats=3, seed=1,
                                       worst_group=True)
    assert metrics["wga"] == 0.0  # label 1 with S disagreeing: always wrong
    assert 0.7 < metrics["acc"] < 0.8  # the other three groups are right: about 3/4
    plain = block_randomized_metrics(WrongOnDisagreeingOnes(), x, y, space, "S", repeats=3, seed=1)
    assert "wga" not in plain and plain["acc"] == metrics["acc"]


def decorrelated(x: Tensor, space: FeatureSpace, seed: int) -> Tensor:
    """``x`` with its S block shuffled once: S says nothing about the labels (a decorrelated validation set)."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    z = space.to_canonical(x).clone()
    z[:, 0] = z[order, 0]
    return space.from_canonical(z)


@SETTINGS
@given(st.integers(0, 2**31 - 1))
def test_donor_worst_group_accuracy_on_a_decorrelated_set_is_zero_for_s_alone_and_full_for_sc(seed: int) -> None:
    every_x, every_y, space = toy(n=2200, seed=seed % 1000)
    x, y = every_x[:2000], every_y[:2000]
    val_x, val_y = decorrelated(every_x[2000:], space, seed), every_y[2000:]
    only_s, only_sc = CanonicalLinear(space, [1.0, 0, 0, 0]), CanonicalLinear(space, [0, 1.0, 1.0, 1.0])
    assert donor_block_worst_group(only_s, val_x, val_y, x, y, space, "S", repeats=2, seed=seed) == 0.0
    assert donor_block_worst_group(only_sc, val_x, val_y, x, y, space, "S", repeats=2, seed=seed) == 1.0
    # the permutation rule cannot see it on such a set: S-alone sits near chance in every group
    permuted = block_randomized_metrics(only_s, val_x, val_y, space, "S", repeats=2, seed=seed, worst_group=True)
    assert permuted["wga"] > 0.2


def test_donor_worst_group_accuracy_refuses_donor_labels_of_the_wrong_length() -> None:
    x, y, space = toy(n=40)
    with pytest.raises(ValueError):
        donor_block_worst_group(CanonicalLinear(space, [1.0, 0, 0, 0]), x, y, x, y[:10], space, "S")
