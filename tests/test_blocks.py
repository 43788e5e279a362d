"""Geometry of the one-dimensional blocks (linear, k-slab, noisy versions) in sbbench.data.blocks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbbench.data import blocks

SLAB_KS = sorted(blocks.SLAB_MASSES)
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None)


def slab_index(x: np.ndarray, edges: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Index of the slab holding each value of ``x`` (-1 for values in a gap or outside)."""
    inside = (x[..., None] >= edges[:, 0] - tol) & (x[..., None] <= edges[:, 1] + tol)
    return np.where(inside.any(axis=-1), inside.argmax(axis=-1), -1)


def balanced(n: int) -> np.ndarray:
    return np.arange(n) % 2


@st.composite
def slab_geometry(draw: st.DrawFn) -> tuple[int, float, float]:
    """A valid ``(k, margin, half_width)``: the margin leaves slabs of positive width."""
    k = draw(st.sampled_from(SLAB_KS))
    half_width = draw(st.floats(0.1, 10.0))
    margin = draw(st.floats(0.01, 0.99)) * half_width / (k - 1)
    return k, margin, half_width


# --- linear ---------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(n=st.integers(1, 300), dims=st.integers(1, 3), half_width=st.floats(0.1, 10.0),
       margin_share=st.floats(0.01, 0.99), seed=st.integers(0, 2**32 - 1))
def test_linear_samples_lie_in_their_class_interval(n: int, dims: int, half_width: float, margin_share: float,
                                                    seed: int) -> None:
    margin = margin_share * half_width
    y = np.random.default_rng(seed).integers(0, 2, n)
    x = blocks.linear(y, np.random.default_rng(seed + 1), margin, half_width, dims)
    assert x.shape == (n, dims)
    positive, negative = x[y == 1], x[y == 0]
    assert np.all((positive >= margin) & (positive <= half_width))
    assert np.all((negative >= -half_width) & (negative <= -margin))


def test_linear_is_uniform_on_its_interval() -> None:
    n = 100_000
    x = blocks.linear(balanced(n), np.random.default_rng(0))[:, 0]
    positive = x[balanced(n) == 1]
    # U[0.1, 1]: mean 0.55, standard deviation 0.9 / sqrt(12)
    assert positive.mean() == pytest.approx(0.55, abs=5 * 0.9 / np.sqrt(12 * len(positive)))
    assert positive.min() < 0.101 and positive.max() > 0.999


# --- k-slab geometry ------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(geometry=slab_geometry())
def test_slab_edges_tile_the_interval_with_equal_slabs_and_gaps(geometry: tuple[int, float, float]) -> None:
    k, margin, half_width = geometry
    edges = blocks.slab_edges(k, margin, half_width)
    assert edges.shape == (k, 2)
    assert edges[0, 0] == pytest.approx(-half_width)
    assert edges[-1, 1] == pytest.approx(half_width)
    widths = edges[:, 1] - edges[:, 0]
    np.testing.assert_allclose(widths, 2 * (half_width - (k - 1) * margin) / k)
    np.testing.assert_allclose(edges[1:, 0] - edges[:-1, 1], 2 * margin)


@pytest.mark.parametrize("k", SLAB_KS)
def test_slab_labels_alternate_with_centre_in_class_zero(k: int) -> None:
    labels = blocks.slab_labels(k)
    assert labels[k // 2] == 0
    assert np.all(labels[1:] != labels[:-1])
    assert set(labels.tolist()) == {0, 1}


@pytest.mark.parametrize("k", SLAB_KS)
def test_slab_masses_sum_to_one_per_class(k: int) -> None:
    masses = np.asarray(blocks.SLAB_MASSES[k])
    labels = blocks.slab_labels(k)
    assert len(masses) == k
    for cls in (0, 1):
        assert masses[labels == cls].sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(masses, masses[::-1])


SPEC_TABLE = {
    # k: (width, class 0 slabs, class 1 slabs), from the spec at g = 0.1, B = 1
    3: (0.5333, [(-0.2667, 0.2667)], [(-1.0, -0.4667), (0.4667, 1.0)]),
    5: (0.24, [(-1.0, -0.76), (-0.12, 0.12), (0.76, 1.0)], [(-0.56, -0.32), (0.32, 0.56)]),
    7: (0.11429, [(-0.6857, -0.5714), (-0.0571, 0.0571), (0.5714, 0.6857)],
        [(-1.0, -0.8857), (-0.3714, -0.2571), (0.2571, 0.3714), (0.8857, 1.0)]),
}
SPEC_MASSES = {
    3: ([1.0], [0.5, 0.5]),
    5: ([1 / 8, 3 / 4, 1 / 8], [1 / 2, 1 / 2]),
    7: ([1 / 4, 1 / 2, 1 / 4], [1 / 16, 7 / 16, 7 / 16, 1 / 16]),
}


@pytest.mark.parametrize("k", SLAB_KS)
def test_slab_table_of_the_spec(k: int) -> None:
    width, class0, class1 = SPEC_TABLE[k]
    edges = blocks.slab_edges(k, margin=0.1)
    labels = blocks.slab_labels(k)
    masses = np.asarray(blocks.SLAB_MASSES[k])
    np.testing.assert_allclose(edges[:, 1] - edges[:, 0], width, atol=1e-4)
    np.testing.assert_allclose(edges[labels == 0], class0, atol=1e-4)
    np.testing.assert_allclose(edges[labels == 1], class1, atol=1e-4)
    np.testing.assert_allclose(masses[labels == 0], SPEC_MASSES[k][0])
    np.testing.assert_allclose(masses[labels == 1], SPEC_MASSES[k][1])


# --- k-slab sampling ------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(geometry=slab_geometry(), n=st.integers(1, 300), dims=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_slab_samples_lie_in_a_slab_of_their_class(geometry: tuple[int, float, float], n: int, dims: int,
                                                   seed: int) -> None:
    k, margin, half_width = geometry
    y = np.random.default_rng(seed).integers(0, 2, n)
    x = blocks.slab(y, np.random.default_rng(seed + 1), k, margin, half_width, dims)
    assert x.shape == (n, dims)
    index = slab_index(x, blocks.slab_edges(k, margin, half_width), tol=1e-12 * half_width)
    assert np.all(index >= 0)
    np.testing.assert_array_equal(blocks.slab_labels(k)[index], np.broadcast_to(y[:, None], x.shape))


@pytest.mark.parametrize("k", SLAB_KS)
def test_slab_class_masses_match_slab_masses(k: int) -> None:
    n = 200_000
    y = balanced(n)
    x = blocks.slab(y, np.random.default_rng(k), k)[:, 0]
    index = slab_index(x, blocks.slab_edges(k))
    labels = blocks.slab_labels(k)
    for cls in (0, 1):
        in_class = index[y == cls]
        for j in np.flatnonzero(labels == cls):
            mass = blocks.SLAB_MASSES[k][j]
            standard_error = np.sqrt(mass * (1 - mass) / len(in_class))
            assert np.mean(in_class == j) == pytest.approx(mass, abs=5 * standard_error + 1e-12)


@pytest.mark.parametrize("k", [5, 7])
def test_slab_classes_have_equal_variance(k: int) -> None:
    n = 200_000
    y = balanced(n)
    x = blocks.slab(y, np.random.default_rng(100 + k), k)[:, 0]
    variances, standard_errors = [], []
    for cls in (0, 1):
        values = x[y == cls]
        squares = values**2  # the class means are 0 by symmetry
        assert values.mean() == pytest.approx(0.0, abs=5 * np.sqrt(squares.mean() / len(values)))
        variances.append(squares.mean())
        standard_errors.append(squares.std() / np.sqrt(len(values)))
        assert variances[-1] == pytest.approx(0.199, abs=1e-3 + 5 * standard_errors[-1])
    assert variances[0] == pytest.approx(variances[1], abs=5 * np.hypot(*standard_errors))


# --- noisy blocks ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(n=st.integers(1, 400), noise=st.floats(0.0, 1.0), dims=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_noisy_linear_puts_exactly_round_np_points_in_the_margin(n: int, noise: float, dims: int, seed: int) -> None:
    margin = 0.1
    y = np.random.default_rng(seed).integers(0, 2, n)
    x = blocks.noisy_linear(y, np.random.default_rng(seed + 1), margin=margin, dims=dims, noise=noise)
    in_margin = np.abs(x) < margin
    np.testing.assert_array_equal(in_margin.sum(axis=0), round(n * noise))
    signs = np.where(y[:, None] == 1, 1.0, -1.0)
    clean = ~in_margin
    assert np.all(x[clean] * np.broadcast_to(signs, x.shape)[clean] >= margin)
    assert np.all(np.abs(x) <= 1.0)


def test_noisy_linear_sign_rule_accuracy_is_one_minus_half_the_noise() -> None:
    n, noise = 200_000, 0.1
    y = balanced(n)
    x = blocks.noisy_linear(y, np.random.default_rng(3), noise=noise)[:, 0]
    accuracy = np.mean((x > 0) == (y == 1))
    assert accuracy == pytest.approx(1 - noise / 2, abs=5 * np.sqrt(noise / 4 / n))


@PROPERTY_SETTINGS
@given(k=st.sampled_from(SLAB_KS), n=st.integers(1, 400), noise=st.floats(0.0, 1.0), dims=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1))
def test_noisy_slab_puts_exactly_round_np_points_in_wrong_slabs(k: int, n: int, noise: float, dims: int,
                                                               seed: int) -> None:
    y = np.random.default_rng(seed).integers(0, 2, n)
    x = blocks.noisy_slab(y, np.random.default_rng(seed + 1), k, dims=dims, noise=noise)
    index = slab_index(x, blocks.slab_edges(k))
    assert np.all(index >= 0)
    wrong = blocks.slab_labels(k)[index] != y[:, None]
    np.testing.assert_array_equal(wrong.sum(axis=0), round(n * noise))


def test_noisy_rows_are_distinct_and_exact() -> None:
    rows = blocks.noisy_rows(1000, 0.37, np.random.default_rng(0))
    assert len(rows) == 370
    assert len(np.unique(rows)) == 370
    assert rows.min() >= 0 and rows.max() < 1000


def test_same_generator_state_gives_same_samples() -> None:
    y = balanced(500)
    first = blocks.noisy_slab(y, np.random.default_rng(7), 7, dims=3)
    second = blocks.noisy_slab(y, np.random.default_rng(7), 7, dims=3)
    np.testing.assert_array_equal(first, second)


# --- invalid arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 1, 2, 4, 6, 9])
def test_invalid_k_is_rejected(k: int) -> None:
    y = balanced(10)
    with pytest.raises(ValueError, match="k"):
        blocks.slab_edges(k)
    with pytest.raises(ValueError):
        blocks.slab_labels(k)
    with pytest.raises(ValueError):
        blocks.slab(y, np.random.default_rng(0), k)
    with pytest.raises(ValueError):
        blocks.noisy_slab(y, np.random.default_rng(0), k)


@pytest.mark.parametrize(("k", "margin"), [(3, 0.5), (3, 0.7), (5, 0.25), (5, 0.4), (7, 1 / 6), (7, 0.3)])
def test_too_large_margin_is_rejected(k: int, margin: float) -> None:
    with pytest.raises(ValueError, match="margin"):
        blocks.slab_edges(k, margin)
    with pytest.raises(ValueError, match="margin"):
        blocks.slab(balanced(10), np.random.default_rng(0), k, margin)


@pytest.mark.parametrize("noise", [-0.1, -1e-9, 1.0 + 1e-9, 1.5])
def test_noise_outside_unit_interval_is_rejected(noise: float) -> None:
    y = balanced(10)
    with pytest.raises(ValueError, match="noise"):
        blocks.noisy_rows(10, noise, np.random.default_rng(0))
    with pytest.raises(ValueError, match="noise"):
        blocks.noisy_linear(y, np.random.default_rng(0), noise=noise)
    with pytest.raises(ValueError, match="noise"):
        blocks.noisy_slab(y, np.random.default_rng(0), 5, noise=noise)
