"""The (w, d)-FCN of Shah et al.: d hidden ReLU layers of width w, then 2 logits."""

from __future__ import annotations

from torch import Tensor, nn


class FCN(nn.Module):
    """Fully connected ReLU network.

    Args:
        in_features: flattened input size ``D``.
        width: hidden width ``w``.
        depth: number of hidden layers ``d`` (0 gives a linear model).

    ``forward`` maps ``(n, *input_shape)`` to ``(n, 2)`` logits; ``features`` returns the
    ``(n, w)`` penultimate activations that ``head`` turns into logits.
    """

    def __init__(self, in_features: int, width: int = 100, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        size = in_features
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(size, 2)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations, shape ``(n, w)``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))
