"""The leaderboard entry file: ``leaderboard/<suite>-v<version>/entries/<name>.json``.

One pydantic schema is the single source of truth for the format; ``docs/entry-format.md``
describes it field by field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sbbench.leaderboard.stats import Summary
from sbbench.results import RunResult

ENTRY_SCHEMA_VERSION = 1


class MethodCard(BaseModel):
    """Who and what: the method's identity as shown on the leaderboard."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    display_name: str
    version: str
    track: str
    code_hash: str
    hparams: dict[str, Any]
    hparams_source: str = Field(description="how the hyperparameters were chosen")
    source: str
    authors: list[str] = Field(default_factory=list)
    paper: str | None = None
    description: str = ""


class Provenance(BaseModel):
    """Where and with what the entry was produced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sbbench_version: str
    git_commit: str
    python: str
    torch: str
    device: str
    platform: str
    created: datetime


class SuiteRef(BaseModel):
    """The suite an entry was scored on; ``hash`` tells whether it is stale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int
    hash: str


class Verdict(BaseModel):
    """The outcome of re-training an entry to verify it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    accepted: bool
    rule: str
    seeds: list[int]
    details: list[str] = Field(default_factory=list)
    by: str
    at: datetime
    sbbench_version: str


class Entry(BaseModel):
    """One method scored on one suite."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = ENTRY_SCHEMA_VERSION
    method: MethodCard
    provenance: Provenance
    suite: SuiteRef
    primary_metric: str
    primary_score: float = Field(description="mean over tasks of the primary metric's seed mean (finite)",
                                 allow_inf_nan=False)
    aggregates: dict[str, dict[str, Summary]] = Field(description="task -> metric -> summary over seeds")
    runs: list[RunResult]
    wall_seconds: float = Field(description="summed train + evaluation time of all runs")
    verification: Verdict | None = None


@dataclass(frozen=True)
class LoadedEntry:
    """An entry with where it lives and whether its suite hash is out of date."""

    entry: Entry
    path: Path
    stale: bool
