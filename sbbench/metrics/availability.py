"""Feature availability: is the complex feature linearly decodable from the model's representation?

A model with S-randomized AUC ~0.5 ignores S^c in its output. That can mean two different
things: S^c was never learned, or it is present in the penultimate features and the last
layer does not use it. A linear probe tells them apart (cf. Kirichenko, Izmailov, Wilson,
"Last layer re-training is sufficient for robustness to spurious correlations", ICLR 2023):

1. freeze the trained model and take its penultimate features ``phi(x) = model.features(x)``;
2. on training inputs whose block S is randomized (one random permutation of the examples
   applied to S in canonical coordinates, :func:`~sbbench.metrics.randomization.randomize_block`),
   so that only S^c predicts the label, fit a logistic-regression probe ``w^T phi(x) + b``;
3. report the probe's accuracy on the S-randomized test set.

High availability with a low S-randomized AUC means "learned but not used"; availability ~0.5
means the representation holds no linearly decodable S^c. The probe uses only training data
to fit and the test set to report, like every other metric; the method never sees it.

Models without a ``features`` method have no value (:func:`feature_availability` returns
``None``), since their penultimate layer is not defined.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbbench.data.features import FeatureSpace
from sbbench.metrics.classification import (
    DEFAULT_BATCH_SIZE,
    accuracy,
    check_batch_size,
    check_labels,
    eval_mode,
    model_device,
)
from sbbench.metrics.randomization import randomize_block


def penultimate_features(model: nn.Module, x: Tensor, batch_size: int = DEFAULT_BATCH_SIZE) -> Tensor:
    """``(n, k)`` features ``model.features(x)`` (flattened per example), in eval mode without gradients.

    Args:
        model: a module with a ``features`` method; it runs on the device of its parameters.
        x: ``(n, *input_shape)`` inputs.
        batch_size: examples per forward pass.

    Returns:
        ``(n, k)`` float tensor on the model's device.
    """
    check_batch_size(batch_size)
    device = model_device(model, x.device)
    with eval_mode(model), torch.no_grad():
        return torch.cat([model.features(batch.to(device)).reshape(len(batch), -1).float()
                          for batch in x.split(batch_size)])


def fit_linear_probe(features: Tensor, y: Tensor, *, max_iter: int = 100, l2: float = 1e-3) -> nn.Linear:
    """Multinomial logistic regression ``features -> 2 logits`` fitted by full-batch L-BFGS.

    Minimises ``mean_i CE(W f_i + b, y_i) + l2 * ||W||^2`` from ``W = 0, b = 0`` (deterministic),
    with a strong-Wolfe line search. The ridge term keeps the weights finite on separable data.

    Args:
        features: ``(n, k)`` standardised features.
        y: ``(n,)`` labels in {0, 1}.
        max_iter: L-BFGS iterations.
        l2: weight of the squared norm of ``W``.

    Returns:
        The fitted probe, on ``features``' device.
    """
    probe = nn.Linear(features.shape[1], 2).to(features.device)
    nn.init.zeros_(probe.weight)
    nn.init.zeros_(probe.bias)
    optimizer = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(features), y) + l2 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return probe


def feature_availability(
    model: nn.Module,
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    space: FeatureSpace,
    *,
    block: str = "S",
    seed: int = 0,
    max_train: int = 20_000,
    max_iter: int = 100,
    l2: float = 1e-3,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> float | None:
    """Accuracy of a linear probe on the frozen penultimate features, with ``block`` randomized.

    Draws, from one generator seeded with ``seed``: a subsample of at most ``max_train``
    training rows, then one permutation randomizing ``block`` on them, then one on the test
    set. Features are standardised with the training rows' mean and standard deviation, the
    probe is fitted by :func:`fit_linear_probe`, and its accuracy on the randomized test
    features is returned.

    Args:
        model: trained two-class model; ``None`` is returned unless it has ``features``.
        x_train, y_train: ``(n, *input_shape)`` training inputs and ``(n,)`` labels.
        x_test, y_test: ``(m, *input_shape)`` test inputs and ``(m,)`` labels.
        space: feature space of the inputs; defines ``block``.
        block: the block to randomize (``"S"``: is the rest of the signal available?).
        seed: seed of the subsample and the permutations.
        max_train: cap on the probe's training rows (cost).
        max_iter: L-BFGS iterations.
        l2: ridge weight of the probe.
        batch_size: examples per forward pass of the model.

    Returns:
        The probe's test accuracy in [0, 1], or ``None`` for a model without ``features``.
    """
    if not callable(getattr(model, "features", None)):
        return None
    check_labels(y_train, len(x_train))
    check_labels(y_test, len(x_test))
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(x_train), generator=generator)[:max_train]
    x_fit = randomize_block(x_train[rows.to(x_train.device)], space, block, generator)
    x_eval = randomize_block(x_test, space, block, generator)
    f_fit = penultimate_features(model, x_fit, batch_size)
    f_eval = penultimate_features(model, x_eval, batch_size)
    mean, std = f_fit.mean(dim=0), f_fit.std(dim=0).clamp_min(1e-6)
    y_fit = y_train[rows.to(y_train.device)].to(f_fit.device)
    probe = fit_linear_probe((f_fit - mean) / std, y_fit, max_iter=max_iter, l2=l2)
    with torch.no_grad():
        logits = probe((f_eval - mean) / std)
    return accuracy(logits, y_test.to(logits.device))
