"""The leaderboard entry file ``<root>/<suite>-v<version>/entries/<name>.json`` and its verdicts.

One pydantic schema is the single source of truth for each format; ``docs/entry-format.md``
describes them field by field. An entry holds *claims* only; whether they were verified is a
:class:`Verdict`, kept in ``<root>/<suite>-v<version>/verdicts/<claims digest>.json`` (written by
``sbbench verify``, never by a submitter) and found by :func:`claims_digest` of the entry as it
is now, so an entry edited after its verification has no verdict.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from sbbench.leaderboard.stats import Summary
from sbbench.results import RunResult
from sbbench.tuning import Tuning, implied_tuning

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


LEGACY_VERDICT_KEY = "verification"
"""Where entry files once stored their verdict; the key is accepted when reading and ignored."""


class Entry(BaseModel):
    """One method scored on one suite."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = ENTRY_SCHEMA_VERSION
    method: MethodCard
    tuning: Tuning = Field(default_factory=lambda data: implied_tuning(data["method"].hparams_source)
                           if "method" in data else Tuning(status="default"),
                           description="how the hyperparameters were chosen, as a record; a file without it "
                                       "implies it from method.hparams_source (implied_tuning)")
    provenance: Provenance
    suite: SuiteRef
    primary_metric: str
    primary_score: float = Field(description="mean over tasks of the primary metric's seed mean (finite)",
                                 allow_inf_nan=False)
    aggregates: dict[str, dict[str, Summary]] = Field(description="task -> metric -> summary over seeds")
    runs: list[RunResult]
    wall_seconds: float = Field(description="summed train + evaluation time of all runs")

    @model_validator(mode="before")
    @classmethod
    def _drop_legacy_verdict(cls, data: Any) -> Any:
        """Drop the ``verification`` object that older entry files carry: it is never trusted.

        Anyone can paste a verdict into an entry file, so verdicts live in the verdict store
        instead; an old file still reads, and is written back without it.
        """
        if isinstance(data, dict) and LEGACY_VERDICT_KEY in data:
            return {key: value for key, value in data.items() if key != LEGACY_VERDICT_KEY}
        return data

    @model_serializer(mode="wrap")
    def _omit_implied_tuning(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave out a ``tuning`` that was not given but implied (an entry file from before the record).

        Such a file is written back as it was, and its claims digest, hence its verdict, stays the same.
        """
        data = handler(self)
        if "tuning" not in self.model_fields_set:
            data.pop("tuning", None)
        return data


def claims_digest(entry: Entry) -> str:
    """sha256 of the entry's claims: its canonical JSON (sorted keys, no whitespace), which holds no verdict.

    The name of the entry's verdict file; any change to the entry's content changes it.
    """
    canonical = json.dumps(entry.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


VerifyMode = Literal["identical", "fresh-seeds"]
"""``identical``: the suite's seeds, every run bit for bit; ``fresh-seeds``: a two-sample test per metric."""


class Verdict(BaseModel):
    """The outcome of re-training an entry to verify it, stored in the suite's verdict store."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    claims: str = Field(description="claims_digest of the entry verified; the verdict file's name")
    method: str = Field(description="the entry's name (its method)")
    accepted: bool
    mode: VerifyMode
    rule: str = Field(description="the acceptance rule applied, in words")
    software: str = Field(description="the entry's software against the verifier's, and what that implied")
    seeds: list[int] = Field(description="the data seeds re-trained on (fresh ones are secret until the end)")
    details: list[str] = Field(default_factory=list)
    by: str
    at: datetime
    sbbench_version: str
    torch_version: str


@dataclass(frozen=True)
class LoadedEntry:
    """An entry with where it lives, whether its suite hash is out of date and its verdict, if any."""

    entry: Entry
    path: Path
    stale: bool
    verdict: Verdict | None = None
    """The verdict of the verdict store for the entry's current claims (never one from the entry file)."""
