"""Backbone specifications: a hashable description plus a factory."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from sbbench.models.fcn import FCN


class BackboneSpec(BaseModel):
    """Which network a task trains: ``kind`` plus its size parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["fcn"] = "fcn"
    width: int = Field(default=100, ge=1)
    depth: int = Field(default=2, ge=0)


def build_backbone(spec: BackboneSpec, input_shape: tuple[int, ...]) -> nn.Module:
    """A freshly initialised backbone (uses torch's global RNG: seed it first)."""
    in_features = 1
    for size in input_shape:
        in_features *= size
    return FCN(in_features, spec.width, spec.depth)
