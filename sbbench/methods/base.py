"""The method contract: what a plug-in declares, what it may see, and what it returns.

A method is a class with a ``name``, a ``version``, a ``track`` and a pydantic ``HParams``
model, whose :meth:`Method.fit` turns a :class:`TrainContext` into a trained
``torch.nn.Module`` mapping a batch of inputs to 2 logits. The context holds exactly the
side information the track allows and never the test sets.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from sbbench.data.dataset import LabeledSet
from sbbench.data.features import FeatureSpace
from sbbench.results import MAX_DIAGNOSTICS, DiagnosticError, diagnostic_value
from sbbench.training import (
    Objective,
    TrainConfig,
    TrainLog,
    Update,
    WeightedObjective,
    cross_entropy_objective,
    train,
)


class Track(str, Enum):
    """Side information a method may use beyond the labeled training set."""

    T0 = "T0"
    """nothing"""
    T1 = "T1"
    """an unlabeled pool in which S is independent of the label"""
    T2 = "T2"
    """T1 plus a small labeled validation set from the same decorrelated distribution"""
    ORACLE = "oracle"
    """which coordinates form S (an upper bound, not a method)"""


class HParams(BaseModel):
    """Base class of hyperparameter models: frozen, unknown keys and non-finite floats (inf, NaN) rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def hparam(default: Any, *, low: float | None = None, high: float | None = None, log: bool = False,
           choices: list[Any] | None = None, description: str = "") -> Any:
    """A hyperparameter field with a default and an optional random-search range.

    ``low``/``high`` give a uniform range (log-uniform when ``log``); ``choices`` a finite set.
    The range is stored in the field's JSON schema under ``"search"``.
    """
    search: dict[str, Any] = {}
    if choices is not None:
        search = {"choices": choices}
    elif low is not None and high is not None:
        search = {"low": low, "high": high, "log": log}
    return Field(default=default, description=description, json_schema_extra={"search": search} if search else None)


class TrainDiagnostics:
    """What a fit reports about its own training: short snake_case names mapped to finite floats.

    A method fills it through :meth:`TrainContext.report`; the runner stores the values in the
    job's :class:`~sbbench.results.RunResult` as ``training``. Reporting a name again replaces
    its value. Names and values are checked when reported (:func:`sbbench.results.diagnostic_value`).
    """

    def __init__(self) -> None:
        self._values: dict[str, float] = {}

    def report(self, name: str, value: float) -> None:
        """Record ``value`` under ``name``; raises :class:`~sbbench.results.DiagnosticError` if either is invalid."""
        number = diagnostic_value(name, value)
        if name not in self._values and len(self._values) >= MAX_DIAGNOSTICS:
            raise DiagnosticError(f"at most {MAX_DIAGNOSTICS} training diagnostics may be reported; {name!r} would be "
                                  f"one more")
        self._values[name] = number

    def update(self, values: Mapping[str, float]) -> None:
        """:meth:`report` every ``name -> value`` of ``values``."""
        for name, value in values.items():
            self.report(name, value)

    def values(self) -> dict[str, float]:
        """A copy of everything reported so far."""
        return dict(self._values)

    def __repr__(self) -> str:
        return f"TrainDiagnostics({self._values!r})"


class PenaltyMeter:
    """Counts a run's optimiser steps and measures how strongly a regulariser acted on them.

    Call :meth:`acted` on every step on which the regulariser was part of the update, with the
    penalty term and the loss it was added to, and :meth:`idle` for steps without it (warm-up,
    stages or members trained without it); :meth:`report` then sends ``steps``,
    ``penalty_steps`` and ``penalty_share`` to the context. The share of one step is
    ``|penalty| / (|loss| + |penalty|)``, in ``[0, 1]``: the penalty's share of the objective's
    magnitude (``|penalty| / |total loss|`` whenever both terms are non-negative).
    ``penalty_share`` is its mean over the steps on which the regulariser acted (0 if none).
    Shares are summed on the tensors' device and read once, in :meth:`report`, so metering
    adds no synchronisation to the training loop.
    """

    def __init__(self) -> None:
        self.steps = 0
        self.penalty_steps = 0
        self._share_sum: Tensor | float = 0.0

    def acted(self, penalty: Tensor, loss: Tensor) -> None:
        """One step on which the regulariser acted: ``penalty`` is its term, ``loss`` the rest of the objective."""
        penalty, loss = penalty.detach().abs(), loss.detach().abs()
        total = (loss + penalty).clamp_min(torch.finfo(penalty.dtype).tiny)
        self.record(penalty / total)

    def record(self, share: Tensor | float, steps: int = 1) -> None:
        """``steps`` steps on which the regulariser acted, each with penalty share ``share`` (in ``[0, 1]``)."""
        self.steps += steps
        self.penalty_steps += steps
        self._share_sum = self._share_sum + (share.detach() if isinstance(share, Tensor) else share) * steps

    def idle(self, steps: int = 1) -> None:
        """``steps`` optimiser steps without the regulariser."""
        self.steps += steps

    @property
    def penalty_share(self) -> float:
        """Mean share over the steps on which the regulariser acted; 0 when it never did."""
        return float(self._share_sum) / self.penalty_steps if self.penalty_steps else 0.0

    def report(self, ctx: TrainContext) -> None:
        """Report ``steps``, ``penalty_steps`` and ``penalty_share`` to ``ctx``; log a line if it never acted."""
        ctx.report("steps", self.steps)
        ctx.report("penalty_steps", self.penalty_steps)
        ctx.report("penalty_share", self.penalty_share)
        if self.steps and not self.penalty_steps:
            ctx.log(f"warning: the regulariser never acted in {self.steps} optimiser steps")


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps in one epoch over ``n`` examples: ``ceil(n / batch_size)``."""
    return -(-n // batch_size)


@dataclass(frozen=True)
class TrainContext:
    """Everything a method may see while training.

    Attributes:
        train: the labeled training split.
        input_shape: shape of one input example.
        budget: the task's optimiser settings, batch size and stopping rule.
        seed: the job's seed (torch's global RNG is seeded with it before ``fit``).
        device: where to train.
        make_backbone: returns a freshly initialised copy of the task's backbone. Besides
            ``forward`` (``(n, *input_shape)`` to ``(n, 2)`` logits) every backbone exposes
            ``features(x)`` (penultimate activations ``(n, w)``), ``head`` (the module mapping them
            to logits), ``early_layers`` (the input-side block, a module sharing the backbone's
            parameters: for an FCN the first hidden layer) and ``early_features(x)`` (its output,
            ``(n, ...)``), the hook for methods that act on early layers only (e.g. SiFeR).
        pool: inputs of the unlabeled decorrelated pool (tracks T1, T2), else ``None``.
        val: the labeled decorrelated validation set (track T2), else ``None``.
        space: canonical coordinates and blocks, including which is S (oracle track only).
        log: progress messages.
        diagnostics: what the fit reported about its training (:meth:`report`); the runner
            stores it in the job's result.
    """

    train: LabeledSet
    input_shape: tuple[int, ...]
    budget: TrainConfig
    seed: int
    device: torch.device
    make_backbone: Callable[[], nn.Module]
    pool: Tensor | None = None
    val: LabeledSet | None = None
    space: FeatureSpace | None = None
    log: Callable[[str], None] = lambda message: None
    diagnostics: TrainDiagnostics = field(default_factory=TrainDiagnostics)

    def report(self, name: str, value: float) -> None:
        """Report a training diagnostic: a finite number under a short snake_case name.

        The values end up in the job's :class:`~sbbench.results.RunResult` as ``training``
        (as JSON data: they cross the process boundary of an isolated fit with the model). A
        regulariser reports at least ``steps``, ``penalty_steps`` and ``penalty_share``
        (:class:`PenaltyMeter` does this). Reporting a name again replaces its value.

        Args:
            name: snake_case, a lowercase letter first, at most 40 characters (e.g. ``"penalty_share"``).
            value: an int, a float or a one-element tensor (read with ``float``); finite.

        Raises:
            sbbench.results.DiagnosticError: a bad name, a value that is not a finite number, or
                more than 64 names.
        """
        self.diagnostics.report(name, value)

    def fit_model(
        self,
        model: nn.Module | None = None,
        objective: Objective | WeightedObjective = cross_entropy_objective,
        *,
        update: Update | None = None,
        config: TrainConfig | None = None,
        seed: int | None = None,
        x: Tensor | None = None,
        y: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> tuple[nn.Module, TrainLog]:
        """Train ``model`` (default: a fresh backbone) with the shared loop; return it and its log.

        Runs :func:`sbbench.training.train` on the training split (or on ``x``/``y``): one
        shuffle per epoch, minibatches of ``config.batch_size``, until the stopping rule holds
        or ``config.max_epochs`` have run.

        Args:
            model: the module to train, moved to ``self.device`` in place (``nn.Module.to``) and
                trained in place; default ``self.make_backbone()``, a fresh initialisation drawn
                from torch's global RNG (so two calls give two different initialisations).
            objective: the minibatch loss ``(model, x, y) -> (loss, logits)``; default mean
                cross-entropy. With ``weights`` a custom objective is called as
                ``(model, x, y, w)`` and must apply the minibatch weights ``w`` itself
                (:class:`~sbbench.training.WeightedObjective`).
            update: replaces the whole step ``(model, optimizer, x, y) -> (loss, logits)``; not
                together with ``weights``.
            config: optimiser, batch size, epoch cap and stopping rule; default ``self.budget``.
                A :class:`TrainConfig` is frozen: change a field with
                ``self.budget.model_copy(update={"max_epochs": 5})`` (checked here, since
                ``model_copy`` does not validate). ``stop_train_acc=None, stop_train_loss=None``
                trains exactly ``max_epochs`` epochs.
            seed: seeds the shuffling only (not the initialisation); default ``self.seed``.
            x: training inputs ``(m, *input_shape)`` to use instead of ``self.train.x``
                (transformed, augmented or relabelled data). Without ``y`` it must be in the
                order of ``self.train.y`` (``m == n``).
            y: int64 labels ``(m,)`` to use instead of ``self.train.y``, in the order of the
                inputs used.
            weights: non-negative per-example weights ``(m,)`` in the order of the inputs used
                (finite, not all zero). Each minibatch's loss becomes the weighted mean
                ``sum_i w_i CE_i / sum_i w_i`` of its examples' cross-entropies, and the log's
                loss and accuracy (hence the stopping rule) are weighted likewise. Equal
                weights give exactly the unweighted run.

        ``x``, ``y`` and ``weights`` are moved to ``self.device``.

        Returns:
            ``(model, log)``: the trained module itself (the same object as ``model`` when one
            is passed), on ``self.device`` and in **eval** mode; its parameters' ``.grad`` hold
            leftovers of the last training step (call ``model.zero_grad()`` before using them).
            ``log`` is a :class:`TrainLog`: ``log.train_loss`` and ``log.train_acc`` hold one
            running (in-epoch) mean loss and accuracy per epoch run, ``log.epochs`` their count.

        Raises:
            ValueError: mismatched lengths, invalid ``weights``, or ``weights`` with ``update``.
            pydantic.ValidationError: ``config`` has an out-of-range field.
            TrainingDiverged: an epoch's mean loss became NaN or infinite.
        """
        if config is not None:
            TrainConfig.model_validate(config.model_dump())
        model = (model if model is not None else self.make_backbone()).to(self.device)
        inputs = self.train.x if x is None else x.to(self.device)
        if y is not None:
            labels = y.to(self.device)
        elif len(inputs) != len(self.train.y):
            raise ValueError(f"x has {len(inputs)} examples but the training split has {len(self.train.y)}; "
                             "pass y= (labels in the order of x) to train on a different set")
        else:
            labels = self.train.y
        log = train(model, inputs, labels, config or self.budget,
                    seed=self.seed if seed is None else seed, objective=objective, update=update,
                    weights=None if weights is None else weights.to(self.device),
                    on_epoch=lambda epoch, loss, acc: self.log(f"epoch {epoch}: loss {loss:.4f}, acc {acc:.4f}"))
        return model, log


class Method(ABC):
    """Base class of every training method (built-in, installed or submitted).

    Subclasses set the class attributes and implement :meth:`fit`.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    paper: ClassVar[str | None] = None
    """Link to the method's paper, shown on the leaderboard (a submission's TOML ``paper`` wins)."""
    track: ClassVar[Track] = Track.T0
    HParams: ClassVar[type[HParams]] = HParams
    default_hparams: ClassVar[HParams | None] = None
    """Defaults that override ``HParams()``'s (set from a submission's ``[hparams]`` table)."""

    def __init__(self, hparams: HParams | None = None) -> None:
        self.hparams = hparams if hparams is not None else self.defaults()

    @classmethod
    def defaults(cls) -> HParams:
        """The hyperparameters used when none are given."""
        return cls.default_hparams if cls.default_hparams is not None else cls.HParams()

    @classmethod
    def with_overrides(cls, overrides: dict[str, Any]) -> Method:
        """An instance whose hyperparameters are the defaults updated by ``overrides``.

        Raises pydantic's ``ValidationError`` when a key is unknown or a value has the wrong type.
        """
        values = {**cls.defaults().model_dump(), **overrides}
        return cls(cls.HParams.model_validate(values))

    @abstractmethod
    def fit(self, ctx: TrainContext) -> nn.Module:
        """Train on ``ctx`` and return a module mapping ``(n, *input_shape)`` to ``(n, 2)`` logits."""
