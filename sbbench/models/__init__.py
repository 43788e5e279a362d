"""Backbones: small networks mapping a batch of inputs to 2 logits."""

from sbbench.models.backbone import BackboneSpec, build_backbone
from sbbench.models.fcn import FCN

__all__ = ["FCN", "BackboneSpec", "build_backbone"]
