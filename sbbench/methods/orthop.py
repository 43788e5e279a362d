"""OrthoP (Morwani, Batra, Jain, Netrapalli, NeurIPS 2023, "Simplicity Bias in 1-Hidden Layer Neural Networks")."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sbbench.methods.base import HParams, Method, PenaltyMeter, Track, TrainContext, hparam, steps_per_epoch
from sbbench.methods.ensemble import LogitAverage, member_seed


class OrthoPHParams(HParams):
    models: int = hparam(2, choices=[2, 3, 4], description="number of successively trained models")
    rank: int = hparam(1, choices=[1, 2, 4, 8], description="directions removed after each model")


class Projected(nn.Module):
    """``f(P x)``: a model applied to inputs projected by a fixed symmetric ``(D, D)`` projector ``P``.

    ``x`` of shape ``(n, *input_shape)`` is flattened to ``(n, D)``, multiplied by ``P`` and
    reshaped back, so gradients flow to the input.
    """

    def __init__(self, model: nn.Module, projector: Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("projector", projector)

    def project(self, x: Tensor) -> Tensor:
        """``P x`` per example, same shape as ``x``."""
        return (x.flatten(1) @ self.projector).view_as(x)

    def features(self, x: Tensor) -> Tensor:
        """The wrapped model's penultimate activations on ``P x``."""
        return self.model.features(self.project(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.project(x))


def first_layer_weight(model: nn.Module, in_features: int) -> Tensor:
    """The ``(w, D)`` weight of the model's first ``nn.Linear``, which must read the flattened input.

    Raises:
        ValueError: the first linear layer does not take ``D = in_features`` inputs (e.g. a CNN),
            or there is none.
    """
    for module in model.modules():
        if isinstance(module, nn.Linear):
            if module.in_features != in_features:
                break
            return module.weight
    raise ValueError(f"OrthoP needs a backbone whose first layer is linear on the {in_features} flattened inputs")


def extend_basis(basis: Tensor, weight_change: Tensor, rank: int) -> Tensor:
    """Add the top ``rank`` right singular vectors of ``weight_change`` (restricted off ``basis``) to ``basis``.

    Args:
        basis: ``(D, r0)`` orthonormal columns spanning the directions removed so far.
        weight_change: ``(w, D)`` first-layer weights learned by the last model.
        rank: number of new directions.

    Returns:
        ``(D, r0 + rank')`` orthonormal columns, ``rank' = min(rank, D - r0)``.
    """
    dims = weight_change.shape[1]
    allowed = torch.eye(dims, dtype=weight_change.dtype, device=weight_change.device) - basis @ basis.T
    _, _, vh = torch.linalg.svd(weight_change @ allowed, full_matrices=False)
    new = vh[: min(rank, dims - basis.shape[1])].T
    q, _ = torch.linalg.qr(torch.cat([basis, new], dim=1))
    return q


def removed_energy(x: Tensor, projected: Tensor) -> float:
    """``sum ||x - P x||^2 / sum ||x||^2`` over the rows: the share of the inputs' energy the projection removes."""
    removed = (x - projected).flatten(1).pow(2).sum(dtype=torch.float64)
    return float(removed / x.flatten(1).pow(2).sum(dtype=torch.float64).clamp_min(torch.finfo(torch.float64).tiny))


def orthogonal_projector(basis: Tensor) -> Tensor:
    """``P = I - B B^T``, the ``(D, D)`` projector onto the orthogonal complement of the columns of ``B``."""
    return torch.eye(basis.shape[0], dtype=basis.dtype, device=basis.device) - basis @ basis.T


class OrthoP(Method):
    """Models trained one after another, each on the inputs orthogonal to what the earlier ones used (Morwani et al.).

    Algorithm, with ``B`` an orthonormal basis of removed input directions (empty at first)
    and ``P = I - B B^T``:

    1. train model ``m`` with ERM on the projected inputs ``P x`` (fresh backbone, member seed);
    2. take the change of its first-layer weight matrix during training, ``Delta W (w x D)``,
       restricted to the allowed subspace (``Delta W P``), and add its top ``rank`` right
       singular vectors to ``B``;
    3. repeat for ``models`` models; predict with ``(1/M) sum_m f_m(P_m x)`` on logits.

    Morwani et al. show that a 1-hidden-layer network trained on linearly separable data depends
    on a low-dimensional projection of the input (the span of its first-layer weights), so
    removing that span forces the next model onto other features. We use the learned change
    ``Delta W = W - W_0`` rather than ``W``: their analysis starts from a small initialisation,
    where the two coincide, while the default PyTorch initialisation is full rank and would
    dominate the singular spectrum. On LMS-5, S is a single direction, so ``rank = 1``.
    Needs a backbone whose first layer is linear on the flattened input. Compute: ``models``
    times ERM plus one SVD per model. Reports ``steps`` (all members'), ``penalty_steps`` (the
    members trained on projected inputs) and ``penalty_share``, the mean share of the training
    inputs' energy their projection removes (:func:`removed_energy`).
    """

    name = "orthop"
    version = "1"
    track = Track.T0
    HParams = OrthoPHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        dims = math.prod(ctx.input_shape)
        basis = torch.zeros(dims, 0, device=ctx.device)
        members = []
        meter = PenaltyMeter()
        epoch_steps = steps_per_epoch(len(ctx.train.y), ctx.budget.batch_size)
        for index in range(self.hparams.models):
            projector = orthogonal_projector(basis)
            seed = member_seed(ctx.seed, index)
            torch.manual_seed(seed)
            wrapped = Projected(ctx.make_backbone(), projector).to(ctx.device)
            initial = first_layer_weight(wrapped.model, dims).detach().clone()
            with torch.no_grad():
                x = wrapped.project(ctx.train.x)
            _, log = ctx.fit_model(wrapped.model, x=x, seed=seed)
            if basis.shape[1]:
                meter.record(removed_energy(ctx.train.x, x), steps=log.epochs * epoch_steps)
            else:
                meter.idle(log.epochs * epoch_steps)
            members.append(wrapped)
            if index + 1 < self.hparams.models:
                change = first_layer_weight(wrapped.model, dims).detach() - initial
                basis = extend_basis(basis, change, self.hparams.rank)
        meter.report(ctx)
        return LogitAverage(members).eval()
