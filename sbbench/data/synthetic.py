"""Multi-dimensional synthetic datasets: LMS-k, MS-(a,b), their noisy versions and AdvMS.

A dataset stacks a simple block S (the first ``simple.dims`` canonical coordinates) and a
complex block S^c (the remaining coordinates), each coordinate drawn independently given the
label by the samplers of :mod:`sbbench.data.blocks`, then rotates everything by a random
orthogonal matrix ``Q`` (QR of a Gaussian matrix, Haar-distributed): observed ``x = z Q``.

Randomness comes from one integer seed split into independent streams (rotation, the
train/test pool, the decorrelated pool, the validation set, the rho-corruption), so the same
spec and seed give bit-identical data and each stream can be drawn on its own.
"""

from __future__ import annotations

import hashlib
from enum import IntEnum
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sbbench.data import blocks
from sbbench.data.dataset import Dataset, LabeledSet
from sbbench.data.features import FeatureSpace


class _Stream(IntEnum):
    ROTATION = 0
    SAMPLES = 1
    POOL = 2
    VAL = 3
    RHO = 4


class BlockSpec(BaseModel):
    """Distribution of one group of coordinates (all drawn i.i.d. given the label)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["linear", "slab"]
    k: int | None = Field(default=None, description="number of slabs (slab blocks only)")
    dims: int = Field(default=1, ge=1)
    margin: float = Field(default=0.1, gt=0, lt=1)
    noise: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _check_k(self) -> BlockSpec:
        if self.kind == "slab" and self.k not in blocks.SLAB_MASSES:
            raise ValueError(f"k-slab blocks exist for k in {sorted(blocks.SLAB_MASSES)}, got k={self.k}")
        if self.kind == "linear" and self.k is not None:
            raise ValueError("k is only meaningful for slab blocks")
        return self

    def check_geometry(self, half_width: float) -> None:
        """Raise ValueError unless the block fits in ``[-half_width, half_width]``."""
        if self.kind == "slab":
            blocks.slab_edges(self.k, self.margin, half_width)
        elif self.margin >= half_width:
            raise ValueError(f"linear margin {self.margin} must be below the half-width {half_width}")

    def sample(self, y: np.ndarray, rng: np.random.Generator, half_width: float) -> np.ndarray:
        """``(n, dims)`` coordinates for labels ``y``."""
        shape = {"margin": self.margin, "half_width": half_width, "dims": self.dims}
        if self.kind == "linear":
            if self.noise:
                return blocks.noisy_linear(y, rng, noise=self.noise, **shape)
            return blocks.linear(y, rng, **shape)
        if self.noise:
            return blocks.noisy_slab(y, rng, self.k, noise=self.noise, **shape)
        return blocks.slab(y, rng, self.k, **shape)


class SyntheticSpec(BaseModel):
    """A synthetic dataset, minus the seed. Its :meth:`content_hash` identifies the generator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generator_version: int = 1
    simple: BlockSpec
    complex: BlockSpec
    n_train: int = Field(ge=2)
    n_test: int = Field(ge=2)
    half_width: float = Field(default=1.0, gt=0)
    rotate: bool = True
    rho: float = Field(default=1.0, ge=0, le=1, description="share of train points whose S agrees with y")
    n_pool: int = Field(default=0, ge=0, description="unlabeled decorrelated points (track T1)")
    n_val: int = Field(default=0, ge=0, description="labeled decorrelated points (track T2)")

    @model_validator(mode="after")
    def _check_geometry(self) -> SyntheticSpec:
        self.simple.check_geometry(self.half_width)
        self.complex.check_geometry(self.half_width)
        return self

    @property
    def d(self) -> int:
        """Input dimension."""
        return self.simple.dims + self.complex.dims

    def content_hash(self) -> str:
        """sha256 of the spec's canonical JSON: equal hashes mean identical generators."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def lms(k: int, *, d: int = 50, n_train: int = 100_000, n_test: int = 10_000, margin: float = 0.1,
        noise: float = 0.0, **extra: object) -> SyntheticSpec:
    """LMS-k: a (possibly noisy) linear S coordinate and ``d - 1`` k-slab coordinates."""
    return SyntheticSpec(
        simple=BlockSpec(kind="linear", margin=margin, noise=noise),
        complex=BlockSpec(kind="slab", k=k, dims=d - 1, margin=margin),
        n_train=n_train, n_test=n_test, **extra,
    )


def ms(a: int, b: int, *, d: int = 50, n_train: int = 100_000, n_test: int = 10_000, margin: float = 0.1,
       noise: float = 0.0, **extra: object) -> SyntheticSpec:
    """MS-(a,b): one (possibly noisy) a-slab S coordinate and ``d - 1`` b-slab coordinates.

    MS-k is ``ms(k, k)``: no block is simpler, the "S removed" control.
    """
    return SyntheticSpec(
        simple=BlockSpec(kind="slab", k=a, margin=margin, noise=noise),
        complex=BlockSpec(kind="slab", k=b, dims=d - 1, margin=margin),
        n_train=n_train, n_test=n_test, **extra,
    )


def adv_ms(*, n_train: int = 6000, n_test: int = 2000, **extra: object) -> SyntheticSpec:
    """AdvMS-(5,7): d = 20, ten 5-slabs with margin 0.05 (S), ten 7-slabs with margin 0.15."""
    return SyntheticSpec(
        simple=BlockSpec(kind="slab", k=5, dims=10, margin=0.05),
        complex=BlockSpec(kind="slab", k=7, dims=10, margin=0.15),
        n_train=n_train, n_test=n_test, **extra,
    )


def make_synthetic(spec: SyntheticSpec, seed: int) -> Dataset:
    """Draw the dataset ``spec`` for ``seed``: train/test from one i.i.d. pool, split afterwards."""
    rotation = _rotation(spec, seed)
    n = spec.n_train + spec.n_test
    rng = _rng(seed, _Stream.SAMPLES)
    y = _balanced_labels(n, rng)
    z = np.concatenate([spec.simple.sample(y, rng, spec.half_width),
                        spec.complex.sample(y, rng, spec.half_width)], axis=1)
    z_train, y_train = z[: spec.n_train], y[: spec.n_train]
    if spec.rho < 1:
        z_train = _decorrelate_rows(spec, z_train, y_train, _rng(seed, _Stream.RHO))
    space = FeatureSpace(
        input_shape=(spec.d,),
        blocks={"S": tuple(range(spec.simple.dims)), "Sc": tuple(range(spec.simple.dims, spec.d))},
        rotation=None if rotation is None else torch.from_numpy(rotation).float(),
    )
    return Dataset(
        train=_labeled(z_train, y_train, rotation),
        test=_labeled(z[spec.n_train:], y[spec.n_train:], rotation),
        space=space,
        pool=_decorrelated_set(spec, spec.n_pool, rotation, _rng(seed, _Stream.POOL)),
        val=_decorrelated_set(spec, spec.n_val, rotation, _rng(seed, _Stream.VAL)),
    )


def _rng(seed: int, stream: _Stream) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, int(stream)]))


def _rotation(spec: SyntheticSpec, seed: int) -> np.ndarray | None:
    if not spec.rotate:
        return None
    gaussian = _rng(seed, _Stream.ROTATION).standard_normal((spec.d, spec.d))
    q, r = np.linalg.qr(gaussian)
    return q * np.sign(np.diag(r))  # the sign fix makes Q Haar-distributed


def _balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % 2)


def _decorrelate_rows(spec: SyntheticSpec, z: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Give a ``1 - rho`` share of the rows a noise-free S block drawn from the other class."""
    rows = rng.choice(len(y), size=round(len(y) * (1 - spec.rho)), replace=False)
    z = z.copy()
    clean = spec.simple.model_copy(update={"noise": 0.0})
    z[rows, : spec.simple.dims] = clean.sample(1 - y[rows], rng, spec.half_width)
    return z


def _decorrelated_set(spec: SyntheticSpec, n: int, rotation: np.ndarray | None,
                      rng: np.random.Generator) -> LabeledSet | None:
    """``n`` points whose S block follows a fair coin independent of the label."""
    if n == 0:
        return None
    y = _balanced_labels(n, rng)
    s_class = rng.integers(0, 2, size=n)
    z = np.concatenate([spec.simple.sample(s_class, rng, spec.half_width),
                        spec.complex.sample(y, rng, spec.half_width)], axis=1)
    return _labeled(z, y, rotation)


def _labeled(z: np.ndarray, y: np.ndarray, rotation: np.ndarray | None) -> LabeledSet:
    x = z if rotation is None else z @ rotation
    return LabeledSet(x=torch.from_numpy(x).float(), y=torch.from_numpy(y).long())
