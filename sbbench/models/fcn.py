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
    ``(n, w)`` penultimate activations that ``head`` turns into logits; ``early_layers`` is the
    input-side block (flatten and the first hidden layer) and ``early_features`` its ``(n, w)``
    output, the hook for methods that act on early layers only (e.g. SiFeR).
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

    @property
    def early_layers(self) -> nn.Module:
        """The first hidden layer with the flatten before it: a view sharing this model's parameters.

        Raises ``ValueError`` for a linear model (``depth = 0``), which has no hidden layer.
        """
        if len(self.body) < 3:
            raise ValueError("a linear FCN (depth 0) has no early layers")
        return self.body[:3]

    def early_features(self, x: Tensor) -> Tensor:
        """Activations of the first hidden layer, shape ``(n, w)``."""
        return self.early_layers(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))
