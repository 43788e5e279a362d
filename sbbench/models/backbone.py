"""Backbone specifications: a hashable description plus a factory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from sbbench.models.cnn import CompactCNN
from sbbench.models.fcn import FCN
from sbbench.models.resnet import ResNet18


class BackboneSpec(BaseModel):
    """Which network a task trains: ``kind`` plus its size parameters.

    * ``fcn``: ``depth`` hidden layers of ``width`` units (:class:`FCN`).
    * ``cnn``: ``depth`` strided conv stages, the first with ``width`` channels
      (:class:`~sbbench.models.cnn.CompactCNN`; images ``(C, H, W)`` only).
    * ``resnet18``: CIFAR-style ResNet with ``depth`` basic blocks per stage and stem width
      ``width`` (``width=64, depth=2`` is ResNet-18; :class:`~sbbench.models.resnet.ResNet18`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["fcn", "cnn", "resnet18"] = "fcn"
    width: int = Field(default=100, ge=1)
    depth: int = Field(default=2, ge=0)


def build_backbone(spec: BackboneSpec, input_shape: tuple[int, ...]) -> nn.Module:
    """A freshly initialised backbone (uses torch's global RNG: seed it first)."""
    if spec.kind != "fcn":
        if len(input_shape) != 3:
            raise ValueError(f"a {spec.kind} backbone needs image inputs (C, H, W), got shape {input_shape}")
        if spec.kind == "cnn":
            return CompactCNN(input_shape[0], spec.width, spec.depth)
        return ResNet18(input_shape[0], spec.width, spec.depth)
    in_features = 1
    for size in input_shape:
        in_features *= size
    return FCN(in_features, spec.width, spec.depth)


@dataclass(frozen=True)
class BackboneFactory:
    """``factory()`` is a freshly initialised backbone of ``spec`` for ``input_shape``, on ``device``.

    What a method gets as ``TrainContext.make_backbone``: it holds the backbone's description and
    nothing else of the task (no data, no generator, no seed), so it reveals nothing to a method.
    """

    spec: BackboneSpec
    input_shape: tuple[int, ...]
    device: torch.device

    def __call__(self) -> nn.Module:
        return build_backbone(self.spec, self.input_shape).to(self.device)
