"""Canonical coordinates and named feature blocks of a dataset.

Every dataset in sbbench is observed in some input space (rotated coordinates for the
synthetic tasks, pixels for images) and has a *canonical* space in which its feature blocks
are sets of coordinates: ``S`` (the simple block), ``Sc`` (its complement) and finer blocks.
Metrics that randomize, swap or attack a block work in canonical coordinates through
:class:`FeatureSpace`, so they need not know how a dataset was built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class FeatureSpace:
    """Map between observed inputs and canonical features, plus the named blocks.

    Observed inputs have per-example shape ``input_shape``; flattening gives ``D`` features.
    With ``rotation`` ``Q`` (a ``(D, D)`` orthogonal matrix) the observed flat input is
    ``x = z @ Q`` and the canonical coordinates are ``z = x @ Q.T``; without one the flat
    input *is* canonical.

    Attributes:
        input_shape: shape of one observed example, e.g. ``(50,)`` or ``(3, 64, 32)``.
        blocks: block name -> sorted canonical coordinate indices (e.g. ``"S"``, ``"Sc"``).
        rotation: optional ``(D, D)`` orthogonal matrix, rows mapping canonical to observed.
    """

    input_shape: tuple[int, ...]
    blocks: dict[str, tuple[int, ...]] = field(default_factory=dict)
    rotation: Tensor | None = None

    @property
    def n_features(self) -> int:
        """``D``, the number of canonical coordinates."""
        n = 1
        for size in self.input_shape:
            n *= size
        return n

    def to_canonical(self, x: Tensor) -> Tensor:
        """``(n, *input_shape)`` observed inputs -> ``(n, D)`` canonical coordinates."""
        z = x.reshape(x.shape[0], -1)
        if self.rotation is not None:
            z = z @ self.rotation.to(z).T
        return z

    def from_canonical(self, z: Tensor) -> Tensor:
        """``(n, D)`` canonical coordinates -> ``(n, *input_shape)`` observed inputs."""
        if self.rotation is not None:
            z = z @ self.rotation.to(z)
        return z.reshape(z.shape[0], *self.input_shape)

    def block(self, name: str) -> Tensor:
        """Indices (int64 tensor) of block ``name``; ``"c<i>"`` names canonical coordinate i."""
        if name in self.blocks:
            return torch.tensor(self.blocks[name], dtype=torch.long)
        if name.startswith("c") and name[1:].isdigit() and int(name[1:]) < self.n_features:
            return torch.tensor([int(name[1:])], dtype=torch.long)
        known = ", ".join(sorted(self.blocks))
        raise KeyError(f"unknown feature block {name!r}; known blocks: {known} (or c<index>)")
