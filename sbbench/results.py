"""The record of one (method, task, seed) job: the unit the runner caches and entries collect."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RunResult(BaseModel):
    """One finished job. ``status == "failed"`` carries the error and no metrics."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    method: str
    method_version: str
    track: str
    code_hash: str = Field(description="sha256 of the method's source files")
    hparams: dict[str, Any]
    task: str
    task_hash: str
    seed: int
    status: Literal["ok", "failed"]
    error: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    profiles: dict[str, list[float]] = Field(default_factory=dict)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
