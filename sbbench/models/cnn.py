"""The compact CNN default of the image tasks: cheap enough to train on a 2-core CPU.

``depth`` stages of a 3 x 3 convolution with stride 2, batch norm and ReLU; stage ``i`` has
``width * 2**i`` channels. Global average pooling then gives the ``width * 2**(depth - 1)``
features a linear head maps to 2 logits. Every stage halves both spatial sides, so the
default (``width = 32``, ``depth = 4``) maps a ``3 x 64 x 32`` domino to ``256 x 4 x 2``
before pooling, with about 7.5 M multiply-adds and 0.4 M parameters per domino.
"""

from __future__ import annotations

from torch import Tensor, nn


class CompactCNN(nn.Module):
    """Strided conv-BN-ReLU stages, global average pooling, linear head.

    Args:
        in_channels: channels of the input images (3 for dominoes).
        width: channels of the first stage (doubled at every further stage).
        depth: number of stages (at least 1).

    ``forward`` maps ``(n, in_channels, H, W)`` to ``(n, 2)`` logits; ``features`` returns the
    ``(n, width * 2**(depth - 1))`` pooled activations that ``head`` turns into logits;
    ``early_layers`` is the first stage and ``early_features`` its ``(n, width, H/2, W/2)`` output.
    """

    def __init__(self, in_channels: int = 3, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"a CompactCNN needs at least one stage, got depth={depth}")
        stages: list[nn.Module] = []
        channels = in_channels
        for stage in range(depth):
            out_channels = width * 2**stage
            stages.append(nn.Sequential(nn.Conv2d(channels, out_channels, 3, stride=2, padding=1, bias=False),
                                        nn.BatchNorm2d(out_channels), nn.ReLU()))
            channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, 2)

    @property
    def early_layers(self) -> nn.Module:
        """The first stage, sharing this model's parameters."""
        return self.stages[0]

    def early_features(self, x: Tensor) -> Tensor:
        """First-stage activations, shape ``(n, width, H/2, W/2)``."""
        return self.stages[0](x)

    def features(self, x: Tensor) -> Tensor:
        """Pooled activations of the last stage, shape ``(n, width * 2**(depth - 1))``."""
        return self.pool(self.stages(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
