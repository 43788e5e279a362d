"""One call that computes every simplicity-bias metric of a trained model on a test set.

The metric names returned by :func:`evaluate` are part of the result-file format:

==========================  ===============================================================
key                         meaning
==========================  ===============================================================
``acc``, ``auc``            clean accuracy and ROC-AUC of ``logit_1 - logit_0``
``s_rand_acc``/``_auc``     the same with block ``S`` randomized (:func:`randomize_block`)
``sc_rand_acc``/``_auc``    the same with block ``Sc`` randomized
``s_swap_acc``              accuracy with ``S`` swapped with the other class (if ``swap``)
``sc_swap_acc``             accuracy with ``Sc`` swapped with the other class (if ``swap``)
``adv_acc_{n}_{e}``         accuracy under PGD in norm ``n`` with radius ``e``
``adv_share_s_{n}_{e}``     mean share on ``S`` of the l_2 norm of the PGD steps' move up to
                            the first label flip of each path (:func:`flip_displacement`)
``uap_svd_acc_l2_{e}``      worst accuracy under ``c v``, ``v`` the SVD universal perturbation
                            of the l_2 PGD ones, ``c = +-k/K`` (:func:`worst_universal_accuracy`)
``uap_svd_share_s_l2_{e}``  share of that perturbation's l_2 norm on ``S``
``uap_acc_l2_{e}``          worst accuracy under ``c v``, ``c = k/K``, for Shafahi et al.'s
                            stochastic universal perturbation ``v``
``uap_share_s_l2_{e}``      share of that perturbation's l_2 norm on ``S``
==========================  ===============================================================

``{e}`` is ``repr(float(eps))`` (``0.5``, ``1.0``, ``0.05``); the universal metrics exist for
l_2 attacks when ``universal`` is set. Profiles, when ``coordinate_profile`` is set and the
canonical space has at most ``profile_max_features`` coordinates: ``coord_random_auc`` and
``coord_swap_acc``, one value per canonical coordinate (:func:`coordinate_dependence`).

Each metric family draws from its own stream ``derive_seed(seed, family)``, so enabling or
adding one family leaves the values of the others unchanged.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator
from torch import Tensor, nn

from sbbench.data.features import FeatureSpace
from sbbench.metrics.adversarial import (
    adversarial_accuracy,
    as_uap,
    flip_displacement,
    pgd_attack_with_flip,
    share_on_block,
    svd_universal_perturbation,
    universal_share_on_block,
    worst_universal_accuracy,
)
from sbbench.metrics.classification import (
    DEFAULT_BATCH_SIZE,
    accuracy,
    margin_scores,
    predict_logits,
    roc_auc,
)
from sbbench.metrics.randomization import (
    block_randomized_metrics,
    block_swapped_accuracy,
    coordinate_dependence,
)
from sbbench.seeding import derive_seed

BLOCKS = {"s": "S", "sc": "Sc"}


class AttackSpec(BaseModel):
    """A PGD attack: ``norm`` ball of radius ``eps``, ``steps`` steps of size ``step_size``.

    ``step_size=None`` means ``2.5 eps / steps``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    norm: Literal["linf", "l2"]
    eps: float = Field(gt=0)
    steps: int = Field(default=20, ge=1)
    step_size: float | None = Field(default=None, gt=0)

    @property
    def tag(self) -> str:
        """``{norm}_{eps}`` suffix of the metric keys, e.g. ``l2_1.0``."""
        return f"{self.norm}_{float(self.eps)!r}"


def _default_attacks() -> list[AttackSpec]:
    return [
        AttackSpec(norm="l2", eps=0.5),
        AttackSpec(norm="l2", eps=1.0),
        AttackSpec(norm="linf", eps=0.05),
        AttackSpec(norm="linf", eps=0.1),
    ]


class MetricSpec(BaseModel):
    """Which metrics :func:`evaluate` computes, and how.

    Attributes:
        randomization_repeats: permutations averaged per randomized/swapped metric.
        swap: compute ``s_swap_acc`` and ``sc_swap_acc``.
        attacks: PGD attacks; each gives ``adv_acc_*`` and ``adv_share_s_*``.
        universal: for l_2 attacks, also the SVD and stochastic universal perturbations.
        coordinate_profile: compute the profiles ``coord_random_auc`` and ``coord_swap_acc``.
        profile_max_features: skip the profiles for canonical spaces of more coordinates
            than this (their cost grows linearly with the dimension, e.g. 6144 for images).
        clamp: ``(lo, hi)`` range of valid inputs that attacks must respect, e.g. ``(0, 1)``
            for images; ``None`` for unbounded inputs.
        batch_size: examples per forward pass.
        worst_group: also compute ``s_rand_wga``, the worst-group accuracy with ``S``
            randomized (groups: label x whether ``S`` agrees with it).
        summary_attack: the tag (e.g. ``l2_1.0``) of the attack whose accuracy is the task's
            adversarial summary column; one of ``attacks``.

    ``worst_group`` and ``summary_attack`` are left out of the serialised spec while unset,
    so specs written before they existed keep their content hashes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    randomization_repeats: int = Field(default=5, ge=1)
    swap: bool = True
    attacks: list[AttackSpec] = Field(default_factory=_default_attacks)
    universal: bool = True
    coordinate_profile: bool = True
    profile_max_features: int = Field(default=1024, ge=1)
    clamp: tuple[float, float] | None = None
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1)
    worst_group: bool = False
    summary_attack: str | None = None

    @model_validator(mode="after")
    def _check(self) -> MetricSpec:
        tags = [attack.tag for attack in self.attacks]
        if len(set(tags)) != len(tags):
            raise ValueError(f"attacks must differ in (norm, eps), got {tags}")
        if self.summary_attack is not None and self.summary_attack not in tags:
            raise ValueError(f"summary_attack {self.summary_attack!r} is none of the attacks {tags}")
        if self.clamp is not None and not self.clamp[0] < self.clamp[1]:
            raise ValueError(f"clamp must be (lo, hi) with lo < hi, got {self.clamp}")
        return self

    @model_serializer(mode="wrap")
    def _omit_unset_additions(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data = handler(self)
        if not self.worst_group:
            data.pop("worst_group", None)
        if self.summary_attack is None:
            data.pop("summary_attack", None)
        return data


class Evaluation(BaseModel):
    """Result of :func:`evaluate`: scalar ``metrics`` and per-coordinate ``profiles``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metrics: dict[str, float]
    profiles: dict[str, list[float]] = Field(default_factory=dict)


def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    space: FeatureSpace,
    spec: MetricSpec | None = None,
    seed: int = 0,
) -> Evaluation:
    """Compute the metrics selected by ``spec`` (default :class:`MetricSpec`) on ``(x, y)``.

    Args:
        model: two-class model mapping ``(n, *space.input_shape)`` to ``(n, 2)`` logits.
        x: ``(n, *space.input_shape)`` test inputs.
        y: ``(n,)`` labels in {0, 1}, both classes present.
        space: feature space of ``x``; must define the blocks ``"S"`` and ``"Sc"``.
        spec: what to compute.
        seed: non-negative root seed of every random draw.

    Returns:
        The metrics and profiles listed in the module docstring.
    """
    spec = spec if spec is not None else MetricSpec()
    logits = predict_logits(model, x, spec.batch_size)
    metrics = {"acc": accuracy(logits, y), "auc": roc_auc(margin_scores(logits), y)}
    metrics |= _block_metrics(model, x, y, space, spec, seed)
    for attack in spec.attacks:
        metrics |= _attack_metrics(model, x, y, space, attack, spec, seed)
    profiles = {}
    if spec.coordinate_profile and space.n_features <= spec.profile_max_features:
        profiles = _coordinate_profiles(model, x, y, space, spec, seed)
    return Evaluation(metrics=metrics, profiles=profiles)


def _block_metrics(
    model: nn.Module, x: Tensor, y: Tensor, space: FeatureSpace, spec: MetricSpec, seed: int
) -> dict[str, float]:
    """``{s,sc}_rand_{acc,auc}`` and, if ``spec.swap``, ``{s,sc}_swap_acc``."""
    metrics = {}
    for prefix, block in BLOCKS.items():
        randomized = block_randomized_metrics(
            model,
            x,
            y,
            space,
            block,
            repeats=spec.randomization_repeats,
            seed=derive_seed(seed, f"{prefix}_rand"),
            batch_size=spec.batch_size,
            worst_group=spec.worst_group and block == "S",
        )
        metrics[f"{prefix}_rand_acc"] = randomized["acc"]
        metrics[f"{prefix}_rand_auc"] = randomized["auc"]
        if "wga" in randomized:
            metrics[f"{prefix}_rand_wga"] = randomized["wga"]
        if spec.swap:
            metrics[f"{prefix}_swap_acc"] = block_swapped_accuracy(
                model,
                x,
                y,
                space,
                block,
                repeats=spec.randomization_repeats,
                seed=derive_seed(seed, f"{prefix}_swap"),
                batch_size=spec.batch_size,
            )
    return metrics


def _attack_metrics(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    space: FeatureSpace,
    attack: AttackSpec,
    spec: MetricSpec,
    seed: int,
) -> dict[str, float]:
    """``adv_*`` metrics of one PGD attack, plus ``uap_*`` ones for l_2 if ``spec.universal``.

    ``adv_acc`` is measured at the end of the PGD paths, ``adv_share_s`` on the steps' move
    from the random start to the first label-flipping point (:func:`flip_displacement`).
    """
    tag = attack.tag
    result = pgd_attack_with_flip(
        model,
        x,
        y,
        norm=attack.norm,
        eps=attack.eps,
        steps=attack.steps,
        step_size=attack.step_size,
        clamp=spec.clamp,
        seed=derive_seed(seed, f"pgd_{tag}"),
        batch_size=spec.batch_size,
    )
    metrics = {
        f"adv_acc_{tag}": adversarial_accuracy(model, x, y, result.delta, spec.batch_size),
        f"adv_share_s_{tag}": share_on_block(flip_displacement(result), space, "S"),
    }
    if not (spec.universal and attack.norm == "l2"):
        return metrics
    universal = {
        "uap_svd": svd_universal_perturbation(result.delta, y, attack.eps, "l2"),
        "uap": as_uap(
            model,
            x,
            y,
            norm="l2",
            eps=attack.eps,
            clamp=spec.clamp,
            seed=derive_seed(seed, f"uap_{tag}"),
        ),
    }
    for name, v in universal.items():
        # The SVD direction's sign is a convention (fixed by a sum that cancels on symmetric
        # slabs), so both orientations are tried; the ascent chose the sign of AS-UAP's ``v``.
        metrics[f"{name}_acc_{tag}"] = worst_universal_accuracy(
            model,
            x,
            y,
            v,
            both_signs=name == "uap_svd",
            clamp=spec.clamp,
            batch_size=spec.batch_size,
        )
        metrics[f"{name}_share_s_{tag}"] = universal_share_on_block(v, space, "S")
    return metrics


def _coordinate_profiles(
    model: nn.Module, x: Tensor, y: Tensor, space: FeatureSpace, spec: MetricSpec, seed: int
) -> dict[str, list[float]]:
    """``coord_random_auc`` and ``coord_swap_acc`` over all canonical coordinates."""
    profiles = {}
    for mode, key in (("random", "coord_random_auc"), ("swap", "coord_swap_acc")):
        profile = coordinate_dependence(
            model,
            x,
            y,
            space,
            mode=mode,
            seed=derive_seed(seed, key),
            batch_size=spec.batch_size,
        )
        profiles[key] = profile.tolist()
    return profiles
