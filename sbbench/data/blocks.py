"""One-dimensional feature blocks of Shah et al. (2020): linear, k-slab and their noisy versions.

Every sampler draws ``dims`` independent coordinates for labels ``y`` (shape ``(n,)``, values
in {0, 1}) and returns a float64 array of shape ``(n, dims)``. Geometry (margin ``g``, half-width ``B``):

* **linear**: class 1 ~ U[g, B], class 0 ~ U[-B, -g].
* **k-slab**: ``k`` slabs of width ``w_k = 2 (B - (k - 1) g) / k`` separated by gaps ``2 g``,
  outermost edges at ``+-B``; slab ``j`` (from the left) spans
  ``[-B + j (w_k + 2 g), -B + j (w_k + 2 g) + w_k]``. Labels alternate with the centre slab in
  class 0. Each class spreads its mass over its slabs by :data:`SLAB_MASSES`, the masses that
  give both classes the same variance (about 0.199 at g = 0.1).
* **noisy** versions: an exact ``round(n p)`` of the points, drawn without replacement, are
  corrupted: noisy linear puts them in the margin U(-g, g) (best accuracy ``1 - p / 2``);
  noisy k-slab draws them from the other class's slabs (best accuracy ``1 - p``).
"""

from __future__ import annotations

import numpy as np

SLAB_MASSES: dict[int, tuple[float, ...]] = {
    3: (0.5, 1.0, 0.5),
    5: (0.125, 0.5, 0.75, 0.5, 0.125),
    7: (0.0625, 0.25, 0.4375, 0.5, 0.4375, 0.25, 0.0625),
}
"""Per slab (left to right), the share of its class's mass; each class's shares sum to 1."""


def linear(y: np.ndarray, rng: np.random.Generator, margin: float = 0.1, half_width: float = 1.0,
           dims: int = 1) -> np.ndarray:
    """Linear block: ``x = (2 y - 1) (g + (B - g) u)`` with ``u ~ U[0, 1)``."""
    if not 0 <= margin < half_width:
        raise ValueError(f"a linear block needs 0 <= margin < half-width, got margin {margin}, half-width {half_width}")
    magnitude = margin + (half_width - margin) * rng.random((len(y), dims))
    return np.where(y[:, None] == 1, magnitude, -magnitude)


def slab_edges(k: int, margin: float = 0.1, half_width: float = 1.0) -> np.ndarray:
    """``(k, 2)`` array of slab intervals ``[left, right]``, ordered left to right."""
    _check_k(k)
    width = 2 * (half_width - (k - 1) * margin) / k
    if width <= 0:
        raise ValueError(f"margin {margin} too large for {k} slabs of half-width {half_width}")
    left = -half_width + np.arange(k) * (width + 2 * margin)
    return np.stack([left, left + width], axis=1)


def slab_labels(k: int) -> np.ndarray:
    """Class of each slab, left to right: alternating, with the centre slab in class 0."""
    _check_k(k)
    return (np.arange(k) - k // 2) % 2


def slab(y: np.ndarray, rng: np.random.Generator, k: int, margin: float = 0.1, half_width: float = 1.0,
         dims: int = 1) -> np.ndarray:
    """k-slab block: pick a slab of the point's class by :data:`SLAB_MASSES`, then U[slab]."""
    edges = slab_edges(k, margin, half_width)
    labels = slab_labels(k)
    masses = np.asarray(SLAB_MASSES[k])
    x = np.empty((len(y), dims))
    for cls in (0, 1):
        rows = np.flatnonzero(y == cls)
        slabs = np.flatnonzero(labels == cls)
        cumulative = np.cumsum(masses[slabs])
        picks = np.searchsorted(cumulative, rng.random((len(rows), dims)) * cumulative[-1], side="right")
        chosen = slabs[np.minimum(picks, len(slabs) - 1)]
        left, right = edges[chosen, 0], edges[chosen, 1]
        x[rows] = left + (right - left) * rng.random((len(rows), dims))
    return x


def noisy_linear(y: np.ndarray, rng: np.random.Generator, margin: float = 0.1, half_width: float = 1.0,
                 dims: int = 1, noise: float = 0.1) -> np.ndarray:
    """Linear block with ``round(n p)`` points per coordinate moved into the margin U(-g, g)."""
    x = linear(y, rng, margin, half_width, dims)
    for column in range(dims):
        noisy = noisy_rows(len(y), noise, rng)
        x[noisy, column] = margin * (2 * rng.random(len(noisy)) - 1)
    return x


def noisy_slab(y: np.ndarray, rng: np.random.Generator, k: int, margin: float = 0.1, half_width: float = 1.0,
               dims: int = 1, noise: float = 0.1) -> np.ndarray:
    """k-slab block with ``round(n p)`` points per coordinate drawn from the other class's slabs."""
    x = slab(y, rng, k, margin, half_width, dims)
    for column in range(dims):
        noisy = noisy_rows(len(y), noise, rng)
        x[noisy, column] = slab(1 - y[noisy], rng, k, margin, half_width)[:, 0]
    return x


def noisy_rows(n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``round(n * noise)`` distinct row indices, drawn without replacement."""
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must lie in [0, 1], got {noise}")
    return rng.choice(n, size=round(n * noise), replace=False)


def _check_k(k: int) -> None:
    if k not in SLAB_MASSES:
        raise ValueError(f"k-slab blocks exist for k in {sorted(SLAB_MASSES)}, got k={k}")
