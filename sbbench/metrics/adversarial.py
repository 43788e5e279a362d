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

Two summaries are worst cases by construction. :func:`worst_universal_accuracy` takes the
minimum accuracy over the radii ``||v|| k / K`` of a universal direction (``K = 20``), because
on slab data a perturbation of exactly ``eps`` can overshoot the slabs and bring points back to
their class. :func:`pgd_attack_with_flip` locates, per example, the first point of the PGD path
that flips the label, because after the flip PGD keeps moving, often along other directions:
where the budget goes (:func:`share_on_block`) is read at the flip (:func:`flip_displacement`).

Every attack ascends the margin (Carlini-Wagner) loss ``z_wrong - z_true`` of the logits ``z``
(:func:`margin_loss`), not the cross-entropy. The margin is positively homogeneous in the logits
and the steps use only the gradient's direction (``sign(g)`` or ``g / ||g||_2``), so a model
whose logits are multiplied by any ``c > 0`` is attacked along the same path (up to rounding):
scaling the logits up until the softmax saturates, which zeroes the cross-entropy's gradient,
cannot mask the gradient and fake robustness.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

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
# steering the universal perturbation. On the margin loss the cap 0 does exactly that (the
# Carlini-Wagner hinge with confidence 0), and unlike a positive cap in logit units it is
# invariant to scaling the logits: min(c m, 0) = c min(m, 0) for c > 0.
DEFAULT_LOSS_CAP = 0.0

# Halvings of the segment between the last right and the first wrong point of a PGD path that
# locate the flip: the point found lies within 2**-10 of one step past a label change, so the
# flip point no longer depends on where the step grid happens to cross the boundary.
FLIP_BISECTION_STEPS = 10

# K of the radius grid eps k / K, k = 1..K, over which universal accuracies take their worst
# case. K = 20 puts the grid points eps / 20 apart (0.025 and 0.05 at the default l_2 radii
# 0.5 and 1.0), under half the narrowest slab of the synthetic tasks (a 7-slab is 0.114 wide),
# so no slab crossing falls between two grid points, for 20 forward passes per sign.
UNIVERSAL_RADIUS_STEPS = 20


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example margin (Carlini-Wagner) loss ``max_{j != y_i} z_ij - z_{i y_i}``, shape ``(n,)``.

    For two classes this is ``z_wrong - z_true = (1 - 2 y_i) (z_i1 - z_i0)``: positive iff the
    example is misclassified. It is positively homogeneous, ``margin_loss(c z, y) = c
    margin_loss(z, y)`` for ``c > 0``, so its gradient's direction ignores the logits' scale.

    Args:
        logits: ``(n, k)`` logits, ``k >= 2``.
        y: ``(n,)`` integer labels in ``[0, k)``.
    """
    true = logits.gather(1, y[:, None]).squeeze(1)
    is_true = F.one_hot(y, logits.shape[1]).bool()
    wrong = logits.masked_fill(is_true, -math.inf).amax(dim=1)
    return wrong - true


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
    """Per-example projected gradient ascent (Madry et al.) on the margin loss.

    From ``delta_0`` (uniform in the ball of radius ``eps / 10`` if ``random_start``, else 0)
    each of ``steps`` iterations takes, per example, the gradient
    ``g = grad_delta L(model(x + delta), y)`` of the margin loss ``L(z, y) = z_wrong - z_true``
    (:func:`margin_loss`; for two classes the other class's logit minus the true one's) and
    updates

    * ``l_inf``: ``delta <- clip(delta + alpha sign(g), -eps, eps)``,
    * ``l_2``: ``delta <- P(delta + alpha g / ||g||_2)`` with ``P(d) = d min(1, eps / ||d||_2)``,

    then, if ``clamp = (lo, hi)``, ``delta <- clip(x + delta, lo, hi) - x``, which keeps the
    perturbed input in the data range without leaving the ball. The model runs in eval mode
    and only the input is differentiated, so its parameters accumulate no gradients.

    Only the direction of ``g`` is used (see :func:`_ascent_direction`) and ``L`` is positively
    homogeneous, so multiplying the model's logits by ``c > 0`` leaves the attack unchanged:
    unlike the cross-entropy, whose gradient vanishes once the softmax saturates, the margin
    loss cannot be masked by scaling the logits.

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
    config = _PGDConfig(norm, eps, steps, step_size, random_start, clamp, seed, batch_size)
    return _pgd(model, x, y, config)[0]


class PGDResult(NamedTuple):
    """Output of :func:`pgd_attack_with_flip`; all tensors on ``x``'s device.

    The path of example ``i`` is the polyline ``p_0 = 0, p_1 = delta_0, ..., p_{T+1} =
    delta_T`` through the clean input, the clamped random start and the ``T = steps`` iterates.

    Attributes:
        delta: ``(n, *input_shape)`` end points ``delta_T``, as :func:`pgd_attack` returns.
        flip: ``(n, *input_shape)`` first label-flipping perturbation on each path: a point
            of the segment ``[p_{j-1}, p_j]``, ``j = flip_step``; the end point if the path
            never flips, 0 if the clean input is already wrong.
        flip_step: ``(n,)`` int64 index ``j`` of the first wrong point ``p_j``; ``-1`` if
            none (0: the clean input is wrong, 1: the random start alone flips it).
        start: ``(n, *input_shape)`` clamped random starts ``delta_0`` (zeros without one).
    """

    delta: Tensor
    flip: Tensor
    flip_step: Tensor
    start: Tensor


def pgd_attack_with_flip(
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
    bisection_steps: int = FLIP_BISECTION_STEPS,
) -> PGDResult:
    """:func:`pgd_attack`, plus the first perturbation along each path that flips the label.

    With ``p_j`` the first point of the path (see :class:`PGDResult`) at which
    ``argmax model(x_i + p_j) != y_i``, bisection on the segment from ``a = p_{j-1}`` (right)
    to ``b = p_j`` (wrong) keeps fractions ``lo`` (right) and ``hi`` (wrong), halves
    ``[lo, hi]`` ``bisection_steps`` times and gives ``flip_i = a + hi (b - a)``: a wrong
    point within ``2**-bisection_steps |b - a|`` of a label change. After the flip PGD keeps
    ascending the margin, often along other directions, so unlike ``delta`` the flip point
    does not drift with the step count.

    ``delta`` is bit-identical to :func:`pgd_attack` with the same arguments; the extra cost
    is ``2 + bisection_steps`` forward passes (no backward). Arguments as :func:`pgd_attack`.
    """
    config = _PGDConfig(norm, eps, steps, step_size, random_start, clamp, seed, batch_size)
    if bisection_steps < 0:
        raise ValueError(f"bisection_steps must be non-negative, got {bisection_steps}")
    return PGDResult(*_pgd(model, x, y, config, bisection_steps))


def flip_displacement(result: PGDResult) -> Tensor:
    """``(n, *input_shape)`` move of the PGD steps from the random start to the flip point.

    ``flip - start`` where the steps flipped the label (``flip_step >= 2``) or never did
    (``flip_step = -1``: ``delta - start``, the attack's whole move); 0 where the clean input
    or the random start alone is wrong (``flip_step`` 0 or 1), as no step chose a direction.
    The start, uniform in a ball of radius ``eps / 10``, is comparable with the distance to
    a slab edge (``<= 0.12`` in a 5-slab): left in, its isotropic residue would dilute a share
    on a block by an amount that grows with ``eps`` (0.96 at l_2 0.5, 0.88 at 1.0 on a model
    of S whose steps put 0.999 of their move on S).
    """
    moved = result.flip - result.start
    no_step = (result.flip_step == 0) | (result.flip_step == 1)
    return torch.where(_rows(no_step, moved), torch.zeros_like(moved), moved)


@dataclass(frozen=True)
class _PGDConfig:
    """Arguments of :func:`pgd_attack` other than the model and the data."""

    norm: Norm
    eps: float
    steps: int
    step_size: float | None
    random_start: bool
    clamp: tuple[float, float] | None
    seed: int
    batch_size: int

    @property
    def alpha(self) -> float:
        """Step size, default ``2.5 eps / steps``."""
        default = 2.5 * self.eps / max(self.steps, 1)
        return self.step_size if self.step_size is not None else default

    def start(self, shape: torch.Size) -> Tensor:
        """``shape`` float32 CPU random starts in the ball of radius ``eps / 10``, or zeros."""
        if not self.random_start:
            return torch.zeros(shape)
        generator = torch.Generator().manual_seed(self.seed)
        return _uniform_in_ball(shape, self.norm, START_RADIUS_FRACTION * self.eps, generator)


def _pgd(
    model: nn.Module, x: Tensor, y: Tensor, config: _PGDConfig, bisection_steps: int | None = None
) -> list[Tensor]:
    """Batched PGD: ``[delta]``, or with ``bisection_steps`` the fields of :class:`PGDResult`."""
    _check_attack(config.norm, config.eps, config.steps)
    check_labels(y, len(x))
    check_batch_size(config.batch_size)
    start = config.start(x.shape)
    device = model_device(model, x.device)
    parts: list[tuple[Tensor, ...]] = []
    with eval_mode(model), torch.enable_grad():
        batches = (t.split(config.batch_size) for t in (x, y, start))
        for x_b, y_b, start_b in zip(*batches, strict=True):
            x_b, y_b = x_b.to(device), y_b.to(device)
            watch = None if bisection_steps is None else _FlipWatch(model, x_b, y_b)
            start_b = _clamp_input(x_b, start_b.to(x_b), config.clamp)
            delta = _pgd_path(model, x_b, y_b, start_b, config, watch)
            found = () if watch is None else watch.flip_points(delta, bisection_steps, start_b)
            parts.append(tuple(t.to(x.device) for t in (delta, *found)))
    return [torch.cat(list(column)) for column in zip(*parts, strict=True)]


def _pgd_path(
    model: nn.Module,
    x_b: Tensor,
    y_b: Tensor,
    delta: Tensor,
    config: _PGDConfig,
    watch: _FlipWatch | None = None,
) -> Tensor:
    """End point of ``config.steps`` PGD steps from ``delta`` (all ``(m, *input_shape)``).

    ``watch``, if given, sees every iterate ``delta_t``, ``t < steps``, with its logits.
    """
    for _ in range(config.steps):
        delta.requires_grad_(True)
        logits = model(x_b + delta)
        if watch is not None:
            watch.see(delta.detach(), logits.detach())
        (grad,) = torch.autograd.grad(margin_loss(logits, y_b).sum(), delta)
        step = config.alpha * _ascent_direction(grad, config.norm)
        delta = _project(delta.detach() + step, config.norm, config.eps)
        delta = _clamp_input(x_b, delta, config.clamp)
    return delta.detach()


class _FlipWatch:
    """Per example of one batch: the first wrong point of a PGD path and the point before it."""

    def __init__(self, model: nn.Module, x_b: Tensor, y_b: Tensor) -> None:
        self.model, self.x, self.y = model, x_b, y_b
        self.step = torch.full((len(x_b),), -1, dtype=torch.long, device=x_b.device)
        self.seen = 0  # index j of the next path point p_j
        self.right = torch.zeros_like(x_b)  # last right point p_{j-1}
        self.wrong = torch.zeros_like(x_b)  # first wrong point p_j
        with torch.no_grad():
            self.see(torch.zeros_like(x_b), model(x_b))

    def see(self, delta: Tensor, logits: Tensor) -> None:
        """Record the next path point ``delta``, ``(m, *input_shape)``, given its logits."""
        pending = self.step < 0
        wrong = logits.argmax(dim=1) != self.y
        new, still_right = pending & wrong, pending & ~wrong
        self.wrong[new] = delta[new]
        self.right[still_right] = delta[still_right]
        self.step[new] = self.seen
        self.seen += 1

    def flip_points(
        self, end: Tensor, bisection_steps: int, start: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(flip, flip_step, start)`` of :class:`PGDResult` once the path ended at ``end``."""
        with torch.no_grad():
            self.see(end, self.model(self.x + end))
            flip = torch.where(_rows(self.step < 0, end), end, torch.zeros_like(end))
            i = (self.step > 0).nonzero().squeeze(1)
            if len(i):
                flip[i] = _bisect_flip(
                    self.model, self.x[i], self.y[i], self.right[i], self.wrong[i], bisection_steps
                )
        return flip, self.step.clone(), start.detach()


def _bisect_flip(
    model: nn.Module, x: Tensor, y: Tensor, right: Tensor, wrong: Tensor, steps: int
) -> Tensor:
    """Wrong point ``right + hi (wrong - right)`` near a label change (all ``(m, *shape)``).

    Per example ``lo = 0`` (prediction right) and ``hi = 1`` (wrong); each of ``steps``
    halvings moves the one of them whose prediction matches the midpoint's to the midpoint.
    Call under ``torch.no_grad``.
    """
    lo = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    hi = torch.ones_like(lo)
    span = wrong - right
    for _ in range(steps):
        mid = (lo + hi) / 2
        is_wrong = model(x + right + _rows(mid, x) * span).argmax(dim=1) != y
        hi, lo = torch.where(is_wrong, mid, hi), torch.where(is_wrong, lo, mid)
    return torch.where(_rows(hi == 1, x), wrong, right + _rows(hi, x) * span)


def _rows(values: Tensor, like: Tensor) -> Tensor:
    """``(m,)`` per-example ``values`` shaped to broadcast against ``(m, *shape)`` ``like``."""
    return values.view(-1, *([1] * (like.ndim - 1)))


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


def universal_scales(
    radius_steps: int = UNIVERSAL_RADIUS_STEPS, both_signs: bool = True
) -> list[float]:
    """Scales ``C = {k / K : k = 1..K}`` (``K = radius_steps``), with ``-C`` if ``both_signs``."""
    if radius_steps < 1:
        raise ValueError(f"radius_steps must be positive, got {radius_steps}")
    scales = [k / radius_steps for k in range(1, radius_steps + 1)]
    return scales + [-c for c in scales] if both_signs else scales


def worst_universal_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    v: Tensor,
    *,
    radius_steps: int = UNIVERSAL_RADIUS_STEPS,
    both_signs: bool = True,
    clamp: tuple[float, float] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> float:
    """Worst accuracy under the universal perturbations ``c v`` on a grid of radii up to ``v``'s.

    ``min_{c in C} universal_accuracy(model, x, y, c v)`` over the scales ``C`` of
    :func:`universal_scales`: the radii ``||v|| k / K`` (any norm), and both orientations of
    ``v`` if ``both_signs``. The accuracy at ``v`` alone can rise with ``||v||`` when ``v``
    overshoots (on slabs, moving further carries points into a slab of their own class); for
    one direction the worst case over the segment ``[0, v]`` cannot, and the grid approximates
    it to one step ``||v|| / K`` (grids of two radii are not nested, so their values can break
    monotonicity by the change of accuracy over one step). ``c = 1`` is ``v`` itself, so the
    result is at most
    :func:`universal_accuracy` of ``v``, with equality when the accuracy only falls along
    ``[0, v]`` (e.g. a linear model and ``v`` on its worst direction).

    Args:
        model, x, y, clamp, batch_size: as :func:`universal_accuracy`.
        v: ``input_shape`` universal perturbation, applied with :func:`apply_universal`.
        radius_steps: ``K``.
        both_signs: also try ``-c v``: for an SVD direction whose sign is a convention.
    """
    return min(
        universal_accuracy(model, x, y, c * v, clamp=clamp, batch_size=batch_size)
        for c in universal_scales(radius_steps, both_signs)
    )


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
    margin loss ``L(v) = mean_{i in M} min(m_i(v), loss_cap)`` with
    ``m_i(v) = z_wrong - z_true`` the :func:`margin_loss` of ``z = model(x_i + sigma(y_i) v)``:

    * ``l_inf``: ``v <- clip(v + alpha sign(grad L), -eps, eps)``,
    * ``l_2``: ``v <- P(v + alpha grad L / ||grad L||_2)`` with ``P`` the projection onto the
      ball of radius ``eps``.

    With the default cap 0 only the examples that ``v`` does not fool yet steer it, and the
    path is invariant to multiplying the logits by ``c > 0`` (as for :func:`pgd_attack`).

        model: two-class model; it runs on the device of its parameters.
        x: ``(n, *input_shape)`` float inputs.
        y: ``(n,)`` labels in {0, 1}.
        norm: ``"linf"`` or ``"l2"``.
        eps: radius of the perturbation ball, ``>= 0``.
        steps: number of minibatch updates.
        step_size: ``alpha``; default ``2.5 eps / steps``.
        batch_size: minibatch size (the whole set when ``n`` is smaller).
        loss_cap: Shafahi et al.'s ``beta``, in logit units; ``None`` leaves the loss
            unclipped. Only 0 and ``None`` keep the attack invariant to the logits' scale.
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
            losses = margin_loss(model(inputs), y_b)
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
    """Steepest-ascent step of unit ``norm`` per example: ``sign(g)`` or ``g / ||g||_2``.

    Both depend only on the direction of ``g``, so they are invariant to ``g -> c g``, c > 0.
    For ``l_2``, ``g`` is first divided by its largest ``|g_j|`` so that ``||g||_2`` can neither
    overflow (float32 gradients of logits scaled by 1e30 square to inf) nor underflow; if that
    largest entry is infinite, the infinite entries alone give the direction (the limit of
    ``g / max_j |g_j|``). A zero gradient gives a zero step; NaN entries count as 0.
    """
    grad = torch.where(grad.isnan(), torch.zeros_like(grad), grad)
    if norm == "linf":
        return grad.sign()
    largest = grad.flatten(1).abs().amax(dim=1).view(-1, *([1] * (grad.ndim - 1)))
    tiny = torch.finfo(grad.dtype).tiny
    unit = torch.where(
        largest.isinf(),
        torch.where(grad.isinf(), grad.sign(), torch.zeros_like(grad)),
        grad / largest.clamp_min(tiny),
    )
    return unit / _per_example_norm(unit).clamp_min(tiny)


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
