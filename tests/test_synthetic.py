"""Multi-dimensional synthetic datasets (sbbench.data.synthetic): determinism, rotation, blocks, rho, side sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from sbbench.data import blocks
from sbbench.data.dataset import Dataset, LabeledSet
from sbbench.data.synthetic import BlockSpec, SyntheticSpec, adv_ms, lms, make_synthetic, ms

N_TRAIN, N_TEST = 2000, 500


def small_lms(**extra: object) -> SyntheticSpec:
    return lms(5, n_train=N_TRAIN, n_test=N_TEST, **extra)


def labeled_sets(data: Dataset) -> dict[str, LabeledSet]:
    sets = {"train": data.train, "test": data.test, "pool": data.pool, "val": data.val}
    return {name: s for name, s in sets.items() if s is not None}


def slab_classes(z: np.ndarray, k: int, margin: float = 0.1) -> np.ndarray:
    """Class of the slab holding each canonical value (-1 in a gap), with a float32 tolerance."""
    edges = blocks.slab_edges(k, margin)
    inside = (z[..., None] >= edges[:, 0] - 1e-5) & (z[..., None] <= edges[:, 1] + 1e-5)
    return np.where(inside.any(axis=-1), blocks.slab_labels(k)[inside.argmax(axis=-1)], -1)


# --- determinism and identity ---------------------------------------------------------------


def test_same_spec_and_seed_give_bit_identical_tensors() -> None:
    spec = small_lms(n_pool=300, n_val=200, rho=0.9)
    first, second = make_synthetic(spec, seed=4), make_synthetic(spec, seed=4)
    assert torch.equal(first.space.rotation, second.space.rotation)
    first_sets, second_sets = labeled_sets(first), labeled_sets(second)
    assert set(first_sets) == {"train", "test", "pool", "val"}
    for name, labeled in first_sets.items():
        assert torch.equal(labeled.x, second_sets[name].x), name
        assert torch.equal(labeled.y, second_sets[name].y), name


def test_different_seeds_give_different_data() -> None:
    spec = small_lms(n_pool=300, n_val=200)
    first, second = make_synthetic(spec, seed=0), make_synthetic(spec, seed=1)
    assert not torch.equal(first.space.rotation, second.space.rotation)
    second_sets = labeled_sets(second)
    for name, labeled in labeled_sets(first).items():
        assert not torch.equal(labeled.x, second_sets[name].x), name
        assert not torch.equal(labeled.y, second_sets[name].y), name


def test_content_hash_is_stable_for_equal_specs() -> None:
    spec = lms(5)
    rebuilt = SyntheticSpec.model_validate_json(spec.model_dump_json())
    assert spec.content_hash() == lms(5).content_hash() == rebuilt.content_hash()
    assert len(spec.content_hash()) == 64
    assert int(spec.content_hash(), 16) >= 0


SPEC_VARIATIONS: dict[str, object] = {
    "generator_version": 2,
    "simple": BlockSpec(kind="linear", margin=0.2),
    "complex": BlockSpec(kind="slab", k=7, dims=49),
    "n_train": 99_999,
    "n_test": 10_001,
    "half_width": 2.0,
    "rotate": False,
    "rho": 0.9,
    "n_pool": 5,
    "n_val": 5,
}
BLOCK_VARIATIONS: dict[str, object] = {"kind": "linear", "k": 3, "dims": 48, "margin": 0.05, "noise": 0.1}


def test_content_hash_changes_with_every_spec_field() -> None:
    assert set(SPEC_VARIATIONS) == set(SyntheticSpec.model_fields), "cover every field of SyntheticSpec"
    base = lms(5)
    hashes = {base.content_hash()}
    for name, value in SPEC_VARIATIONS.items():
        changed = SyntheticSpec.model_validate({**base.model_dump(), name: value})
        hashes.add(changed.content_hash())
    assert len(hashes) == 1 + len(SPEC_VARIATIONS)


def test_content_hash_changes_with_every_block_field() -> None:
    assert set(BLOCK_VARIATIONS) == set(BlockSpec.model_fields), "cover every field of BlockSpec"
    base = lms(5)
    hashes = {base.content_hash()}
    for name, value in BLOCK_VARIATIONS.items():
        block = base.complex.model_dump()
        block[name] = value
        if name == "kind":
            block["k"] = None
        changed = SyntheticSpec.model_validate({**base.model_dump(), "complex": block})
        hashes.add(changed.content_hash())
    assert len(hashes) == 1 + len(BLOCK_VARIATIONS)


# --- rotation and canonical coordinates -----------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotation_is_orthogonal(seed: int) -> None:
    rotation = make_synthetic(small_lms(), seed).space.rotation
    assert rotation.shape == (50, 50) and rotation.dtype == torch.float32
    assert torch.allclose(rotation @ rotation.T, torch.eye(50), atol=1e-5)
    assert torch.allclose(rotation.T @ rotation, torch.eye(50), atol=1e-5)
    assert (rotation.abs() > 0.5).sum() < 50, "a random rotation mixes coordinates"


@pytest.mark.parametrize("spec", [small_lms(n_pool=200, n_val=200),
                                  ms(5, 7, n_train=N_TRAIN, n_test=N_TEST),
                                  adv_ms(n_train=N_TRAIN, n_test=N_TEST)])
def test_canonical_coordinates_match_the_unrotated_generation(spec: SyntheticSpec) -> None:
    rotated = make_synthetic(spec, seed=11)
    canonical = make_synthetic(SyntheticSpec.model_validate({**spec.model_dump(), "rotate": False}), seed=11)
    canonical_sets = labeled_sets(canonical)
    for name, labeled in labeled_sets(rotated).items():
        z = rotated.space.to_canonical(labeled.x)
        assert torch.allclose(z, canonical_sets[name].x, atol=1e-5), name
        assert torch.equal(labeled.y, canonical_sets[name].y), name
        assert torch.allclose(rotated.space.from_canonical(z), labeled.x, atol=1e-5), name


def test_no_rotation_means_observed_inputs_are_canonical() -> None:
    data = make_synthetic(small_lms(rotate=False), seed=0)
    assert data.space.rotation is None
    assert torch.equal(data.space.to_canonical(data.train.x), data.train.x)
    assert torch.equal(data.space.from_canonical(data.test.x), data.test.x)


# --- shapes, labels, blocks -----------------------------------------------------------------


def test_shapes_and_dtypes() -> None:
    data = make_synthetic(small_lms(n_pool=300, n_val=200), seed=0)
    sizes = {"train": N_TRAIN, "test": N_TEST, "pool": 300, "val": 200}
    for name, labeled in labeled_sets(data).items():
        assert labeled.x.shape == (sizes[name], 50), name
        assert labeled.y.shape == (sizes[name],), name
        assert labeled.x.dtype == torch.float32, name
        assert labeled.y.dtype == torch.int64, name
        assert set(labeled.y.unique().tolist()) == {0, 1}, name
        assert len(labeled) == sizes[name]
    assert data.space.input_shape == (50,)
    assert data.space.n_features == 50


def test_side_sets_are_absent_by_default() -> None:
    data = make_synthetic(small_lms(), seed=0)
    assert data.pool is None and data.val is None


def test_labels_are_balanced() -> None:
    data = make_synthetic(lms(5, n_train=N_TRAIN, n_test=N_TEST + 1), seed=3)
    total = N_TRAIN + N_TEST + 1
    ones = int(data.train.y.sum() + data.test.y.sum())
    assert ones == total // 2
    assert data.train.y.float().mean().item() == pytest.approx(0.5, abs=5 * 0.5 / np.sqrt(N_TRAIN))


@pytest.mark.parametrize(("spec", "n_simple", "d"), [(lms(5), 1, 50), (lms(7, d=30), 1, 30), (ms(5, 7), 1, 50),
                                                     (adv_ms(), 10, 20)])
def test_blocks_split_s_and_sc(spec: SyntheticSpec, n_simple: int, d: int) -> None:
    spec = SyntheticSpec.model_validate({**spec.model_dump(), "n_train": 20, "n_test": 20})
    space = make_synthetic(spec, seed=0).space
    assert spec.d == d == space.n_features
    assert space.blocks["S"] == tuple(range(n_simple))
    assert space.blocks["Sc"] == tuple(range(n_simple, d))
    torch.testing.assert_close(space.block("S"), torch.arange(n_simple))


def test_lms_canonical_coordinates_follow_the_block_geometry() -> None:
    data = make_synthetic(small_lms(), seed=5)
    z = data.space.to_canonical(data.train.x).numpy()
    y = data.train.y.numpy()
    np.testing.assert_array_equal(z[:, 0] > 0, y == 1)
    assert np.all(np.abs(z[:, 0]) >= 0.1 - 1e-5)
    np.testing.assert_array_equal(slab_classes(z[:, 1:], 5), np.broadcast_to(y[:, None], z[:, 1:].shape))


def test_adv_ms_blocks_use_their_own_margins() -> None:
    data = make_synthetic(adv_ms(n_train=N_TRAIN, n_test=N_TEST, rotate=False), seed=0)
    z, y = data.train.x.numpy(), data.train.y.numpy()[:, None]
    np.testing.assert_array_equal(slab_classes(z[:, :10], 5, margin=0.05), np.broadcast_to(y, (N_TRAIN, 10)))
    np.testing.assert_array_equal(slab_classes(z[:, 10:], 7, margin=0.15), np.broadcast_to(y, (N_TRAIN, 10)))


def test_noisy_lms_corrupts_an_exact_share_of_the_pool() -> None:
    data = make_synthetic(lms(7, n_train=N_TRAIN, n_test=N_TEST, noise=0.1, rotate=False), seed=0)
    s = torch.cat([data.train.x[:, 0], data.test.x[:, 0]]).numpy()
    assert np.sum(np.abs(s) < 0.1) == round((N_TRAIN + N_TEST) * 0.1)


# --- rho: S less predictive on train --------------------------------------------------------


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_rho_flips_s_on_an_exact_share_of_train_rows(rho: float) -> None:
    clean = make_synthetic(small_lms(rotate=False), seed=8)
    data = make_synthetic(small_lms(rotate=False, rho=rho), seed=8)
    s, y = data.train.x[:, 0].numpy(), data.train.y.numpy()
    flipped = (s > 0) != (y == 1)
    assert flipped.sum() == round((1 - rho) * N_TRAIN)
    assert np.all(np.abs(s) >= 0.1)
    assert torch.equal(data.train.y, clean.train.y)
    assert torch.equal(data.train.x[:, 1:], clean.train.x[:, 1:])
    assert torch.equal(data.train.x[~flipped], clean.train.x[~flipped])
    assert torch.equal(data.test.x, clean.test.x) and torch.equal(data.test.y, clean.test.y)


# --- decorrelated pool and validation sets --------------------------------------------------


@pytest.mark.parametrize("side", ["pool", "val"])
def test_decorrelated_sets_break_s_but_keep_sc(side: str) -> None:
    n = 4000
    data = make_synthetic(small_lms(n_pool=n, n_val=n), seed=9)
    labeled = getattr(data, side)
    z = data.space.to_canonical(labeled.x).numpy()
    y = labeled.y.numpy()
    s_sign = np.sign(z[:, 0])
    assert abs(np.corrcoef(s_sign, 2 * y - 1)[0, 1]) < 5 / np.sqrt(n)
    assert np.mean(s_sign > 0) == pytest.approx(0.5, abs=5 * 0.5 / np.sqrt(n))
    np.testing.assert_array_equal(slab_classes(z[:, 1:], 5), np.broadcast_to(y[:, None], z[:, 1:].shape))
    assert abs(y.sum() - n // 2) <= 1


def test_pool_and_val_differ_from_each_other_and_from_train() -> None:
    data = make_synthetic(small_lms(n_pool=N_TRAIN, n_val=N_TRAIN), seed=2)
    assert not torch.equal(data.pool.x, data.val.x)
    assert not torch.equal(data.pool.x, data.train.x)


# --- validation of specs --------------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    {"kind": "slab", "k": 4},
    {"kind": "slab"},
    {"kind": "linear", "k": 5},
    {"kind": "slab", "k": 5, "noise": 1.5},
    {"kind": "linear", "noise": -0.1},
    {"kind": "linear", "dims": 0},
    {"kind": "linear", "margin": 0.0},
    {"kind": "linear", "unknown": 1},
])
def test_invalid_block_specs_are_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BlockSpec(**fields)


@pytest.mark.parametrize("make", [
    lambda: ms(5, 7, margin=0.3),
    lambda: lms(7, half_width=0.3),
    lambda: lms(5, margin=0.5, half_width=0.5),
])
def test_block_geometry_is_checked_against_the_half_width(make) -> None:
    with pytest.raises(ValidationError):
        make()


def test_wide_half_width_admits_large_margins() -> None:
    assert ms(7, 7, half_width=3.0, margin=0.4).half_width == 3.0


@pytest.mark.parametrize("change", [{"rho": 1.5}, {"rho": -0.1}, {"n_train": 1}, {"n_pool": -1}, {"extra": 1}])
def test_invalid_synthetic_specs_are_rejected(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SyntheticSpec.model_validate({**lms(5).model_dump(), **change})


def test_specs_are_frozen() -> None:
    spec = lms(5)
    with pytest.raises(ValidationError):
        spec.rho = 0.5
