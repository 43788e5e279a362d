"""Per-example and universal adversarial perturbations, and where their budget goes.

Norms are taken over all input dimensions of one example. ``eps`` is the radius of the
``l_inf`` ball (``max_j |delta_j| <= eps``) or the ``l_2`` ball (``||delta||_2 <= eps``), in the
units of the observed inputs.

Universal perturbations use a class-dependent sign: a single ``v`` of shape ``input_shape``
perturbs example ``i`` to ``x_i + sigma(y_i) v`` with ``sigma(y) = 1 - 2y``, i.e.
``sigma(0) = +1`` and ``sigma(1) = -1``. An effective ``v`` therefore points from class 0
towards class 1 (the direction in which the score ``logit_1 - logit_0`` grows): it is added to
class-0 inputs and subtracted from class-1 inputs. For a linear score ``f(x) = w.x + b`` the
optimal ``v`` is ``eps w / ||w||_2`` (``l_2``) or ``eps sign(w)`` (``l_inf``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

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
    predict_logits,
)

Norm = Literal["linf", "l2"]

# The random start only needs to move PGD off flat or non-differentiable points. A larger one
# leaves a residue along directions the model ignores, which l_2 projections shrink only
# geometrically and which would dilute the share of the budget spent on the used features.
START_RADIUS_FRACTION = 0.1

# Shafahi et al. clip the per-example loss at beta so that examples already fooled stop
# steering the universal perturbation; the binary cross-entropy exceeds 12 only for inputs
# pushed far across the decision boundary.
DEFAULT_LOSS_CAP = 12.0


def pgd_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    norm: Norm,
    eps: float,
    steps: int = 20,
    step_size: float | None = None,
    random_start: bool = True,
    clamp: tuple[float, float] | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Tensor:
    """Per-example projected gradient ascent on the cross-entropy (Madry et al.).

    From ``delta_0`` (uniform in the ball of radius ``eps / 10`` if ``random_start``, else 0)
    each of ``steps`` iterations takes ``g = grad_delta CE(model(x + delta), y)`` per example
    and updates

    * ``l_inf``: ``delta <- clip(delta + alpha sign(g), -eps, eps)``,
    * ``l_2``: ``delta <- P(delta + alpha g / ||g||_2)`` with ``P(d) = d min(1, eps / ||d||_2)``,

    then, if ``clamp = (lo, hi)``, ``delta <- clip(x + delta, lo, hi) - x``, which keeps the
    perturbed input in the data range without leaving the ball. The model runs in eval mode
    and only the input is differentiated, so its parameters accumulate no gradients.

    Args:
        model: two-class model; it runs on the device of its parameters.
        x: ``(n, *input_shape)`` float inputs.
        y: ``(n,)`` labels in {0, 1}.
        norm: ``"linf"`` or ``"l2"``.
        eps: radius of the perturbation ball, ``>= 0``.
        steps: number of ascent steps.
        step_size: ``alpha``; default ``2.5 eps / steps``.
        random_start: start from a random point of the small ball instead of 0.
        clamp: optional ``(lo, hi)`` range of valid inputs.
        seed: seed of the random start.
        batch_size: examples per forward/backward pass.

    Returns:
        ``(n, *input_shape)`` perturbations ``delta`` on ``x``'s device.
    """
    _check_attack(norm, eps, steps)
    check_labels(y, len(x))
    check_batch_size(batch_size)
    alpha = step_size if step_size is not None else 2.5 * eps / max(steps, 1)
    if random_start:
        generator = torch.Generator().manual_seed(seed)
        start = _uniform_in_ball(x.shape, norm, START_RADIUS_FRACTION * eps, generator)
    else:
        start = torch.zeros(x.shape)
    device = model_device(model, x.device)
    deltas = []
    with eval_mode(model), torch.enable_grad():
        for x_b, y_b, start_b in zip(
            x.split(batch_size), y.split(batch_size), start.split(batch_size), strict=True
        ):
            x_b = x_b.to(device)
            delta = _clamp_input(x_b, start_b.to(x_b), clamp)
            for _ in range(steps):
                delta.requires_grad_(True)
                loss = F.cross_entropy(model(x_b + delta), y_b.to(device), reduction="sum")
                (grad,) = torch.autograd.grad(loss, delta)
                delta = _project(delta.detach() + alpha * _ascent_direction(grad, norm), norm, eps)
                delta = _clamp_input(x_b, delta, clamp)
            deltas.append(delta.detach().to(x.device))
    return torch.cat(deltas)


def adversarial_accuracy(
    model: nn.Module, x: Tensor, y: Tensor, delta: Tensor, batch_size: int = DEFAULT_BATCH_SIZE
) -> float:
    """Accuracy of ``model`` on the perturbed inputs ``x + delta`` (all ``(n, *input_shape)``)."""
    return accuracy(predict_logits(model, x + delta, batch_size), y)


def share_on_block(delta: Tensor, space: FeatureSpace, block: str) -> float:
    """Mean share of the perturbation norm that lies on a block, in canonical coordinates.

    ``share = mean_i ||z_i[B]||_2 / ||z_i||_2`` with ``z = space.to_canonical(delta)``, over
    the examples with ``z_i != 0``; NaN if every perturbation is 0. 1 means the perturbations
    touch only ``B``, ``sqrt(|B| / D)`` is typical of isotropic noise.

    Args:
        delta: ``(n, *input_shape)`` perturbations.
        space: the feature space of the inputs.
        block: block name understood by :meth:`FeatureSpace.block`.
    """
    z = space.to_canonical(delta).double()
    total = z.norm(dim=1)
    on_block = z[:, space.block(block).to(z.device)].norm(dim=1)
    keep = total > 0
    if not bool(keep.any()):
        return math.nan
    return (on_block[keep] / total[keep]).mean().item()


def class_sign(y: Tensor) -> Tensor:
    """``(n,)`` float signs ``sigma(y) = 1 - 2y`` of a universal perturbation: +1 for class 0."""
    return 1.0 - 2.0 * y.double()


def apply_universal(
    x: Tensor, y: Tensor, v: Tensor, clamp: tuple[float, float] | None = None
) -> Tensor:
    """Inputs ``x_i + sigma(y_i) v``, clipped to ``clamp = (lo, hi)`` if given.

    Args:
        x: ``(n, *input_shape)`` inputs.
        y: ``(n,)`` labels in {0, 1}.
        v: ``input_shape`` universal perturbation.
        clamp: optional ``(lo, hi)`` range of valid inputs.
    """
    check_labels(y, len(x))
    signs = class_sign(y).to(x).view(-1, *([1] * (x.ndim - 1)))
    perturbed = x + signs * v.to(x)
    return perturbed if clamp is None else perturbed.clamp(*clamp)


def universal_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    v: Tensor,
    *,
    clamp: tuple[float, float] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> float:
    """Accuracy of ``model`` on ``x_i + sigma(y_i) v`` (see :func:`apply_universal`)."""
    return accuracy(predict_logits(model, apply_universal(x, y, v, clamp), batch_size), y)


def universal_share_on_block(v: Tensor, space: FeatureSpace, block: str) -> float:
    """``||z[B]||_2 / ||z||_2`` for the canonical coordinates ``z`` of one perturbation ``v``."""
    return share_on_block(v.unsqueeze(0), space, block)


def svd_universal_perturbation(deltas: Tensor, y: Tensor, eps: float, norm: Norm) -> Tensor:
    """Universal perturbation from the top singular direction of per-example perturbations.

    Let ``M`` be the ``(n, D)`` matrix with rows ``sigma(y_i) delta_i`` (flattened), so that
    the perturbations of both classes point the same way, and ``u`` its top right singular
    vector, signed so that ``sum_i M_i . u >= 0``. Then ``v = eps u`` (``l_2``, as ``||u|| = 1``)
    or ``v = eps sign(u)`` (``l_inf``).

    Args:
        deltas: ``(n, *input_shape)`` per-example perturbations, e.g. from :func:`pgd_attack`.
        y: ``(n,)`` labels in {0, 1}.
        eps: radius of the ball ``v`` lies on.
        norm: ``"linf"`` or ``"l2"``.

    Returns:
        ``input_shape`` perturbation ``v``, same dtype and device as ``deltas``.
    """
    _check_attack(norm, eps, 0)
    check_labels(y, len(deltas))
    rows = class_sign(y).to(deltas.device)[:, None] * deltas.flatten(1).double()
    direction = torch.linalg.svd(rows, full_matrices=False).Vh[0]
    if (rows @ direction).sum() < 0:
        direction = -direction
    v = eps * (direction if norm == "l2" else direction.sign())
    return v.view(deltas.shape[1:]).to(deltas.dtype)


def as_uap(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    norm: Norm,
    eps: float,
    steps: int = 100,
    step_size: float | None = None,
    batch_size: int = 1024,
    loss_cap: float | None = DEFAULT_LOSS_CAP,
    clamp: tuple[float, float] | None = None,
    seed: int = 0,
) -> Tensor:
    """Universal perturbation by stochastic projected gradient ascent (Shafahi et al., 2020).

    Starting from ``v = 0``, each of ``steps`` iterations draws a minibatch ``M`` (consecutive
    slices of a fresh random permutation per pass over the data) and ascends the mean clipped
    loss ``L(v) = mean_{i in M} min(CE(model(x_i + sigma(y_i) v), y_i), loss_cap)``:

    * ``l_inf``: ``v <- clip(v + alpha sign(grad L), -eps, eps)``,
    * ``l_2``: ``v <- P(v + alpha grad L / ||grad L||_2)`` with ``P`` the projection onto the
      ball of radius ``eps``.

    Args:
        model: two-class model; it runs on the device of its parameters.
        x: ``(n, *input_shape)`` float inputs.
        y: ``(n,)`` labels in {0, 1}.
        norm: ``"linf"`` or ``"l2"``.
        eps: radius of the perturbation ball, ``>= 0``.
        steps: number of minibatch updates.
        step_size: ``alpha``; default ``2.5 eps / steps``.
        batch_size: minibatch size (the whole set when ``n`` is smaller).
        loss_cap: Shafahi et al.'s ``beta``; ``None`` leaves the loss unclipped.
        clamp: optional ``(lo, hi)`` range the perturbed inputs are clipped to.
        seed: seed of the minibatch order.

    Returns:
        ``input_shape`` perturbation ``v`` on ``x``'s device; apply it with
        :func:`apply_universal`.
    """
    _check_attack(norm, eps, steps)
    check_labels(y, len(x))
    check_batch_size(batch_size)
    alpha = step_size if step_size is not None else 2.5 * eps / max(steps, 1)
    device = model_device(model, x.device)
    generator = torch.Generator().manual_seed(seed)
    v = torch.zeros(x.shape[1:], dtype=x.dtype, device=device)
    with eval_mode(model), torch.enable_grad():
        for batch in _minibatches(len(x), batch_size, steps, generator):
            batch = batch.to(x.device)
            y_b = y[batch].to(device)
            v.requires_grad_(True)
            inputs = apply_universal(x[batch].to(device), y_b, v, clamp)
            losses = F.cross_entropy(model(inputs), y_b, reduction="none")
            if loss_cap is not None:
                losses = losses.clamp(max=loss_cap)
            (grad,) = torch.autograd.grad(losses.mean(), v)
            step = _ascent_direction(grad.unsqueeze(0), norm)
            v = _project(v.detach().unsqueeze(0) + alpha * step, norm, eps).squeeze(0)
    return v.detach().to(x.device)


def _minibatches(
    n: int, batch_size: int, steps: int, generator: torch.Generator
) -> Iterator[Tensor]:
    """``steps`` index batches of ``min(batch_size, n)``, slicing one permutation per pass."""
    size = min(batch_size, n)
    per_pass = n // size
    order = torch.randperm(n, generator=generator)
    for step in range(steps):
        if step > 0 and step % per_pass == 0:
            order = torch.randperm(n, generator=generator)
        start = (step % per_pass) * size
        yield order[start : start + size]


def _uniform_in_ball(
    shape: torch.Size, norm: Norm, radius: float, generator: torch.Generator
) -> Tensor:
    """``shape[0]`` points drawn uniformly from the ``norm`` ball of ``radius`` (float32, CPU)."""
    if norm == "linf":
        return radius * (2 * torch.rand(shape, generator=generator) - 1)
    direction = torch.randn(shape, generator=generator)
    direction = direction / _per_example_norm(direction).clamp_min(torch.finfo().tiny)
    dims = math.prod(shape[1:])
    radii = radius * torch.rand(shape[0], generator=generator) ** (1 / dims)
    return direction * radii.view(-1, *([1] * (len(shape) - 1)))


def _ascent_direction(grad: Tensor, norm: Norm) -> Tensor:
    """Steepest-ascent step of unit ``norm`` per example: ``sign(g)`` or ``g / ||g||_2``."""
    if norm == "linf":
        return grad.sign()
    return grad / _per_example_norm(grad).clamp_min(torch.finfo(grad.dtype).tiny)


def _project(delta: Tensor, norm: Norm, eps: float) -> Tensor:
    """Euclidean projection of each example's ``delta`` onto the ``norm`` ball of radius eps."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    scale = (eps / _per_example_norm(delta).clamp_min(torch.finfo(delta.dtype).tiny)).clamp(max=1)
    return delta * scale


def _clamp_input(x: Tensor, delta: Tensor, clamp: tuple[float, float] | None) -> Tensor:
    """``delta`` changed so that ``x + delta`` lies in ``clamp = (lo, hi)``, if given."""
    return delta if clamp is None else (x + delta).clamp(*clamp) - x


def _per_example_norm(t: Tensor) -> Tensor:
    """``||t_i||_2`` over all but the first dimension, shaped to broadcast against ``t``."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def _check_attack(norm: str, eps: float, steps: int) -> None:
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if not eps >= 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
