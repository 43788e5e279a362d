"""Backbones: small networks mapping a batch of inputs to 2 logits."""

from sbbench.models.backbone import BackboneFactory, BackboneSpec, build_backbone
from sbbench.models.fcn import FCN

__all__ = ["FCN", "BackboneFactory", "BackboneSpec", "build_backbone"]
