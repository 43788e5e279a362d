"""MNIST-CIFAR "dominoes" (Shah et al., 2020): an MNIST digit stacked on a CIFAR-10 image.

One example is a ``3 x 64 x 32`` float32 image with pixels in [0, 1] (the uint8 values / 255,
no normalisation, no augmentation). Rows 0-31 hold the MNIST digit, zero-padded from 28 x 28
to 32 x 32 (2 pixels on every side) and copied to the 3 channels; rows 32-63 hold the CIFAR
image. Both halves predict the label: in variant A, label 0 = digit 0 over an automobile and
label 1 = digit 1 over a truck (:data:`VARIANTS`).

Pairing: within each class, the i-th image of the (seed-shuffled) MNIST group is paired with
the i-th image of the (seed-shuffled) CIFAR group, and every class uses
``n = min`` over the four groups, so both labels have ``n`` examples (variant A on the
standard splits: 10,000 train / 1,960 test).

Blocks (canonical = pixel coordinates, flattened in C order): ``S`` = the MNIST half
(channels x rows 0-31 x columns, 3,072 coordinates), ``Sc`` = the CIFAR half (rows 32-63).

Side information for tracks T1/T2 comes from images used neither for training nor for
testing: each class first holds out ``ceil``-balanced shares of ``n_pool + n_val`` CIFAR
training images (so ``n`` shrinks by those), and the MNIST halves of the pool and of the
validation set are drawn from the MNIST training images beyond the ``n`` used for training,
with a fair digit that is independent of the label (the CIFAR class).

Two further labeled test sets follow the paper's protocol for this dataset: in
``fresh_s_rand`` the MNIST half of every test example is replaced by a test digit drawn
regardless of the label (balanced over the two digits), in ``fresh_sc_rand`` the CIFAR half
likewise. Labels are those of the kept half.

Everything derives from the seed through independent streams; built datasets are cached on
disk (:mod:`sbbench.data.images.cache`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from sbbench.data.dataset import Dataset, LabeledSet
from sbbench.data.features import FeatureSpace
from sbbench.data.images.cache import CacheHeader, cache_path, default_cache_root, read_arrays, write_arrays
from sbbench.data.images.sources import ImageSource, load_classes

INPUT_SHAPE = (3, 64, 32)
"""Channels, rows, columns of one domino."""

VARIANTS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "A": ((0, 1), (1, 9)),
    "B": ((1, 4), (1, 9)),
    "C": ((0, 1), (0, 8)),
}
"""variant -> ((MNIST digit of label 0, of label 1), (CIFAR-10 class of label 0, of label 1)).

CIFAR-10 classes: 0 airplane, 1 automobile, 8 ship, 9 truck.
"""

FRESH_SETS = ("fresh_s_rand", "fresh_sc_rand")
"""Names of the freshly built randomized test sets (keys of ``Dataset.extra_tests``)."""


class _Stream(IntEnum):
    TRAIN = 0
    TEST = 1
    POOL = 2
    VAL = 3
    FRESH_S = 4
    FRESH_SC = 5


class DominoSpec(BaseModel):
    """An MNIST-CIFAR dominoes dataset, minus the seed.

    Attributes:
        variant: which digits and CIFAR classes (:data:`VARIANTS`).
        blank_mnist: set the MNIST half to 0 everywhere (the CIFAR-only control); the CIFAR
            halves and labels stay exactly those of the unblanked dataset.
        n_pool: unlabeled pool size (track T1), MNIST independent of the label.
        n_val: labeled validation set size (track T2), same distribution as the pool.
        max_train_per_class: cap on ``n`` for training (``None``: the spec's ``n``).
        max_test_per_class: cap on the test examples per class (``None``: all that pair up).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["dominoes"] = "dominoes"
    generator_version: int = 1
    variant: Literal["A", "B", "C"] = "A"
    blank_mnist: bool = False
    n_pool: int = Field(default=0, ge=0)
    n_val: int = Field(default=0, ge=0)
    max_train_per_class: int | None = Field(default=None, ge=1)
    max_test_per_class: int | None = Field(default=None, ge=1)

    @property
    def digits(self) -> tuple[int, int]:
        """MNIST digits of labels 0 and 1."""
        return VARIANTS[self.variant][0]

    @property
    def cifar_classes(self) -> tuple[int, int]:
        """CIFAR-10 classes of labels 0 and 1."""
        return VARIANTS[self.variant][1]

    def content_hash(self) -> str:
        """sha256 of the spec's canonical JSON: equal hashes mean identical generators."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


@dataclass(frozen=True)
class Halves:
    """One set of dominoes before assembly.

    ``mnist``: ``(n, 28, 28)`` uint8, ``cifar``: ``(n, 32, 32, 3)`` uint8, ``y``: ``(n,)`` int64 labels.
    """

    mnist: np.ndarray
    cifar: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def feature_space() -> FeatureSpace:
    """Pixel coordinates with ``S`` = the MNIST (top) half and ``Sc`` = the CIFAR (bottom) half."""
    index = np.arange(int(np.prod(INPUT_SHAPE))).reshape(INPUT_SHAPE)
    rows = INPUT_SHAPE[1] // 2
    return FeatureSpace(
        input_shape=INPUT_SHAPE,
        blocks={"S": tuple(np.sort(index[:, :rows].ravel()).tolist()),
                "Sc": tuple(np.sort(index[:, rows:].ravel()).tolist())},
        rotation=None,
    )


def assemble(halves: Halves, blank_mnist: bool = False) -> LabeledSet:
    """Stack the halves into ``(n, 3, 64, 32)`` float32 dominoes in [0, 1] with int64 labels."""
    out = np.zeros((len(halves), *INPUT_SHAPE), dtype=np.uint8)
    if not blank_mnist:
        out[:, :, 2:30, 2:30] = halves.mnist[:, None]
    out[:, :, 32:, :] = halves.cifar.transpose(0, 3, 1, 2)
    return LabeledSet(x=torch.from_numpy(out).float().div_(255.0), y=torch.from_numpy(halves.y.astype(np.int64)))


def to_dataset(spec: DominoSpec, sets: dict[str, Halves]) -> Dataset:
    """The :class:`Dataset` of built halves (``train``, ``test``, optional ``pool``/``val``, fresh sets)."""
    def labeled(name: str) -> LabeledSet | None:
        return assemble(sets[name], spec.blank_mnist) if name in sets else None

    return Dataset(
        train=assemble(sets["train"], spec.blank_mnist),
        test=assemble(sets["test"], spec.blank_mnist),
        space=feature_space(),
        pool=labeled("pool"),
        val=labeled("val"),
        extra_tests={name: assemble(sets[name], spec.blank_mnist) for name in FRESH_SETS},
    )


def build_halves(spec: DominoSpec, seed: int, source: ImageSource) -> dict[str, Halves]:
    """Draw every set of the dataset for ``seed`` (deterministic for the same images).

    Returns:
        set name -> :class:`Halves`: ``train``, ``test``, the :data:`FRESH_SETS`, and
        ``pool`` / ``val`` when the spec asks for them.

    Raises:
        DatasetUnavailable: the images cannot be read.
        ValueError: too few spare MNIST training images for the pool and validation set.
    """
    sets = _train_sets(spec, seed, source)
    sets |= _test_sets(spec, seed, source)
    return sets


def _train_sets(spec: DominoSpec, seed: int, source: ImageSource) -> dict[str, Halves]:
    rng = _rng(seed, _Stream.TRAIN)
    mnist = _shuffled(load_classes(source, "mnist", "train", spec.digits), spec.digits, rng)
    cifar = _shuffled(load_classes(source, "cifar10", "train", spec.cifar_classes), spec.cifar_classes, rng)
    side = {}
    for name, size, stream in (("val", spec.n_val, _Stream.VAL), ("pool", spec.n_pool, _Stream.POOL)):
        if size > 0:
            side_rng = _rng(seed, stream)
            side[name] = (_balanced(size, side_rng), _balanced(size, side_rng))  # (label, digit), independent
    held_out = [sum(int((labels == k).sum()) for labels, _ in side.values()) for k in (0, 1)]
    n = min(min(len(mnist[k]), len(cifar[k]) - held_out[k]) for k in (0, 1))
    if spec.max_train_per_class is not None:
        n = min(n, spec.max_train_per_class)
    if n < 1:
        raise ValueError(f"variant {spec.variant}: no training images left after holding out {held_out} per class")
    sets = {"train": _paired([mnist[k][:n] for k in (0, 1)], [cifar[k][held_out[k]:held_out[k] + n] for k in (0, 1)],
                             rng)}
    spare_mnist = [mnist[k][n:] for k in (0, 1)]
    spare_cifar = [cifar[k][:held_out[k]] for k in (0, 1)]
    taken_mnist, taken_cifar = [0, 0], [0, 0]
    for name, (labels, digit_labels) in side.items():
        cifar_rows = _take(spare_cifar, labels, taken_cifar, f"CIFAR images for {name}")
        mnist_rows = _take(spare_mnist, digit_labels, taken_mnist, f"spare MNIST training digits for {name}")
        sets[name] = Halves(mnist=mnist_rows, cifar=cifar_rows, y=labels)
    return sets


def _test_sets(spec: DominoSpec, seed: int, source: ImageSource) -> dict[str, Halves]:
    rng = _rng(seed, _Stream.TEST)
    mnist_all = load_classes(source, "mnist", "test", spec.digits)
    cifar_all = load_classes(source, "cifar10", "test", spec.cifar_classes)
    mnist = _shuffled(mnist_all, spec.digits, rng)
    cifar = _shuffled(cifar_all, spec.cifar_classes, rng)
    n = min(min(len(mnist[k]), len(cifar[k])) for k in (0, 1))
    if spec.max_test_per_class is not None:
        n = min(n, spec.max_test_per_class)
    test = _paired([mnist[k][:n] for k in (0, 1)], [cifar[k][:n] for k in (0, 1)], rng)
    fresh = {}
    for name, stream in (("fresh_s_rand", _Stream.FRESH_S), ("fresh_sc_rand", _Stream.FRESH_SC)):
        fresh_rng = _rng(seed, stream)
        drawn = _balanced(len(test), fresh_rng)
        if name == "fresh_s_rand":
            pools = _shuffled(mnist_all, spec.digits, fresh_rng)
            fresh[name] = Halves(mnist=_take(pools, drawn, [0, 0], name), cifar=test.cifar, y=test.y)
        else:
            pools = _shuffled(cifar_all, spec.cifar_classes, fresh_rng)
            fresh[name] = Halves(mnist=test.mnist, cifar=_take(pools, drawn, [0, 0], name), y=test.y)
    return {"test": test, **fresh}


def _rng(seed: int, stream: _Stream) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 0xD0, int(stream)]))


def _shuffled(classes: dict[int, np.ndarray], order: tuple[int, int], rng: np.random.Generator) -> list[np.ndarray]:
    """The images of label 0 and label 1 (``order`` names their classes), each in a random order."""
    return [classes[c][rng.permutation(len(classes[c]))] for c in order]


def _balanced(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels, ``ceil(n / 2)`` zeros and ``floor(n / 2)`` ones, in random order (int64)."""
    return rng.permutation(np.arange(n, dtype=np.int64) % 2)


def _paired(mnist: list[np.ndarray], cifar: list[np.ndarray], rng: np.random.Generator) -> Halves:
    """Pair the i-th images of each class and shuffle the examples of both classes together."""
    y = np.concatenate([np.full(len(mnist[k]), k, dtype=np.int64) for k in (0, 1)])
    order = rng.permutation(len(y))
    return Halves(mnist=np.concatenate(mnist)[order], cifar=np.concatenate(cifar)[order], y=y[order])


def _take(pools: list[np.ndarray], labels: np.ndarray, taken: list[int], what: str) -> np.ndarray:
    """Rows for ``labels``: example i gets the next unused image of ``pools[labels[i]]`` (``taken`` advances)."""
    out = np.empty((len(labels), *pools[0].shape[1:]), dtype=pools[0].dtype)
    for k in (0, 1):
        rows = np.flatnonzero(labels == k)
        if taken[k] + len(rows) > len(pools[k]):
            raise ValueError(f"not enough {what}: need {taken[k] + len(rows)} of class {k}, have {len(pools[k])}")
        out[rows] = pools[k][taken[k]:taken[k] + len(rows)]
        taken[k] += len(rows)
    return out




def make_dominoes(spec: DominoSpec, seed: int, source: ImageSource | None = None, *,
                  cache_root: Path | None = None, use_cache: bool = True) -> Dataset:
    """The dataset ``spec`` for ``seed``; built once, then read from the on-disk cache.

    Args:
        spec: what to build.
        seed: the data seed.
        source: where the images come from; default :meth:`ImageSource.from_env`.
        cache_root: cache folder; default :func:`~sbbench.data.images.cache.default_cache_root`.
        use_cache: read and write the cache (``False`` always builds and stores nothing).
    """
    source = source if source is not None else ImageSource.from_env()
    if not use_cache:
        return to_dataset(spec, build_halves(spec, seed, source))
    header = CacheHeader(spec=spec.model_dump(mode="json"), seed=seed, source=source.identity())
    path = cache_path(cache_root or default_cache_root(), header)
    arrays = read_arrays(path, header)
    if arrays is None:
        sets = build_halves(spec, seed, source)
        write_arrays(path, header, {f"{name}.{part}": getattr(halves, part)
                                    for name, halves in sets.items() for part in ("mnist", "cifar", "y")})
    else:
        names = sorted({key.split(".")[0] for key in arrays})
        sets = {name: Halves(mnist=arrays[f"{name}.mnist"], cifar=arrays[f"{name}.cifar"], y=arrays[f"{name}.y"])
                for name in names}
    return to_dataset(spec, sets)
