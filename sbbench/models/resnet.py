"""A CIFAR-style ResNet-18 (He et al., 2016), written here for GPU users of the image tasks.

"CIFAR-style" means a 3 x 3 stride-1 stem without max pooling, so a ``3 x 64 x 32`` domino
keeps its resolution through the first stage. Four stages of ``blocks`` basic blocks with
``width``, 2, 4 and 8 times ``width`` channels (strides 1, 2, 2, 2), global average pooling,
then a linear head with 2 logits. ``width = 64, blocks = 2`` is ResNet-18 (11.2 M parameters;
about 1.1 GMAC per domino, far too slow for a 2-core CPU, hence the compact CNN default).
"""

from __future__ import annotations

from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3 x 3 conv-BN layers with an identity (or 1 x 1 conv-BN) shortcut, ReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(x)).relu()
        out = self.bn2(self.conv2(out))
        return (out + self.shortcut(x)).relu()


class ResNet18(nn.Module):
    """CIFAR-style ResNet with basic blocks.

    Args:
        in_channels: channels of the input images (3 for dominoes).
        width: channels of the stem and the first stage (64 for the standard ResNet-18).
        blocks: basic blocks per stage (2 for ResNet-18).

    ``forward`` maps ``(n, in_channels, H, W)`` to ``(n, 2)`` logits; ``features`` returns the
    ``(n, 8 width)`` pooled activations that ``head`` turns into logits; ``early_layers`` is the
    stem (conv-BN-ReLU) and ``early_features`` its ``(n, width, H, W)`` output.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, blocks: int = 2) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        stages: list[nn.Module] = []
        channels = width
        for stage, stride in enumerate((1, 2, 2, 2)):
            out_channels = width * 2**stage
            for block in range(blocks):
                stages.append(BasicBlock(channels, out_channels, stride if block == 0 else 1))
                channels = out_channels
        self.body = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, 2)

    @property
    def early_layers(self) -> nn.Module:
        """The stem, sharing this model's parameters."""
        return self.stem

    def early_features(self, x: Tensor) -> Tensor:
        """Stem activations, shape ``(n, width, H, W)``."""
        return self.stem(x)

    def features(self, x: Tensor) -> Tensor:
        """Pooled activations of the last stage, shape ``(n, 8 width)``."""
        return self.body(self.stem(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
