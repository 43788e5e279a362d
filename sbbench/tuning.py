"""The tuning record of a leaderboard entry: how its hyperparameters were chosen (``docs/sweep.md``).

A pydantic schema, the single source of truth of the ``tuning`` field of an entry file
(:class:`sbbench.leaderboard.entry.Entry`), written by :mod:`sbbench.sweep` for a sweep and implied
for entries scored at given hyperparameters. It sits beside :mod:`sbbench.results` at the bottom
of the layers because the sweep (below the leaderboard) builds it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MIN_TUNED_TRIALS = 8
"""The protocol's K: a sweep of at least this many trials makes an entry ``tuned``; fewer, ``exploratory``."""

TuningStatus = Literal["default", "given", "exploratory", "tuned"]
"""How an entry's hyperparameters were chosen: the method's defaults (``sbbench score``), given by hand
(``sbbench score --hp``), or a random search (``sbbench sweep``) of fewer than :data:`MIN_TUNED_TRIALS`
trials (``exploratory``) or of at least that many (``tuned``)."""

SEARCHED: tuple[TuningStatus, ...] = ("exploratory", "tuned")
"""The statuses of entries whose hyperparameters a sweep chose."""


def sweep_status(trials: int) -> TuningStatus:
    """``tuned`` for a sweep of ``trials >= MIN_TUNED_TRIALS`` trials, else ``exploratory`` (failed trials count)."""
    return "tuned" if trials >= MIN_TUNED_TRIALS else "exploratory"


class TrialTask(BaseModel):
    """One sweep trial on one task: its selection value, or why it failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    status: Literal["ok", "failed"]
    value: float | None = Field(default=None, allow_inf_nan=False,
                                description="the selection value (see Tuning.metric); null when the job failed")
    error: str | None = None


class TrialRecord(BaseModel):
    """One trial of a sweep: its hyperparameters and selection values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0, description="0 is the method's defaults; 1 .. K-1 the random draws")
    hparams: dict[str, Any]
    status: Literal["ok", "failed"] = Field(description="failed when any task failed; a failed trial is never chosen")
    value: float | None = Field(default=None, allow_inf_nan=False,
                                description="mean over tasks of the selection value; null when the trial failed")
    tasks: list[TrialTask] = Field(description="per task of the suite, in suite order")


class Tuning(BaseModel):
    """How the entry's hyperparameters were chosen; a sweep's search, trial by trial (``docs/sweep.md``).

    ``default`` and ``given`` carry the status only. ``exploratory`` and ``tuned`` carry the
    sweep: its rule, K, seeds, holdout, every trial and the chosen one. Entries written before
    the record existed carry an empty ``trials`` list (see :func:`implied_tuning`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: TuningStatus
    rule: str | None = Field(default=None, description="the selection rule, in words")
    metric: str | None = Field(default=None, description="the trials' selection metric: selection_acc (T0, T1) "
                                                         "or selection_wga (T2, oracle)")
    k: int | None = Field(default=None, ge=1, description="the number of trials K, trial 0 the defaults")
    sweep_seed: int | None = Field(default=None, description="the seed of the draws (sbbench sweep --seed)")
    trial_seed: int | None = Field(default=None, description="each trial trained once per task at this data and "
                                                             "training seed: 10000 + the sweep seed")
    holdout: float | None = Field(default=None, gt=0, lt=1, description="share of the training split held out for "
                                                                        "selection (T0, T1); null when not used")
    chosen: int | None = Field(default=None, ge=0, description="index of the chosen trial")
    trials: list[TrialRecord] = Field(default_factory=list, description="every trial, in index order")

    @model_validator(mode="after")
    def _consistent(self) -> Tuning:
        """A status without a search carries no search data; a sweep's status matches its K; trials are all there."""
        search = (self.rule, self.metric, self.k, self.sweep_seed, self.trial_seed, self.chosen)
        if self.status not in SEARCHED:
            if any(value is not None for value in (*search, self.holdout)) or self.trials:
                raise ValueError(f"a {self.status!r} tuning record holds no search data")
            return self
        if any(value is None for value in search):
            raise ValueError(f"a {self.status!r} tuning record needs rule, metric, k, sweep_seed, trial_seed "
                             "and chosen")
        assert self.k is not None and self.chosen is not None
        if self.status != sweep_status(self.k):
            raise ValueError(f"a sweep of {self.k} trials is {sweep_status(self.k)!r}, not {self.status!r} "
                             f"(tuned needs K >= {MIN_TUNED_TRIALS})")
        if self.chosen >= self.k:
            raise ValueError(f"chosen trial {self.chosen} is not one of the {self.k} trials")
        if self.trials:
            if [trial.index for trial in self.trials] != list(range(self.k)):
                raise ValueError(f"trials must be the K={self.k} trials in index order")
            if self.trials[self.chosen].status != "ok":
                raise ValueError(f"chosen trial {self.chosen} failed")
        return self

    @property
    def label(self) -> str:
        """The leaderboard's word: ``default``, ``given``, ``tuned (K=8)`` or ``exploratory (K=4)``."""
        return self.status if self.status not in SEARCHED else f"{self.status} (K={self.k})"


_LEGACY_SWEEP = re.compile(r"random search, (?P<k>\d+) trials .*?, seed (?P<seed>-?\d+); each trial trained once "
                           r"per task at seed (?P<trial_seed>-?\d+); selected by (?P<rule>.+), mean over tasks; "
                           r"chosen: trial (?P<chosen>\d+)")


def implied_tuning(hparams_source: str) -> Tuning:
    """The tuning record of an entry written before entries carried one, read from its ``hparams_source``.

    ``given on the command line: ...`` (``sbbench score --hp``) is ``given``; the text of an
    older ``sbbench sweep`` gives its K, seeds, rule and chosen trial (``tuned`` or
    ``exploratory`` by K; the trials were not recorded); anything else is ``default``.
    """
    if hparams_source.startswith("given on the command line"):
        return Tuning(status="given")
    match = _LEGACY_SWEEP.match(hparams_source)
    if match is None:
        return Tuning(status="default")
    k = int(match["k"])
    return Tuning(status=sweep_status(k), rule=match["rule"], metric="selection_acc", k=k,
                  sweep_seed=int(match["seed"]), trial_seed=int(match["trial_seed"]), chosen=int(match["chosen"]))
