"""The record of one (method, task, seed) job: the unit the runner caches and entries collect."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer

DIAGNOSTIC_NAME = re.compile(r"[a-z][a-z0-9_]*")
"""What a training diagnostic may be called: snake_case, starting with a lowercase letter."""

DIAGNOSTIC_NAME_LENGTH = 40
"""The longest name of a training diagnostic."""

MAX_DIAGNOSTICS = 64
"""How many training diagnostics one fit may report."""


class DiagnosticError(ValueError):
    """A training diagnostic with a bad name or a value that is not a finite number, or too many of them."""


def diagnostic_value(name: object, value: object) -> float:
    """``value`` as a float, after checking that ``name`` is a valid diagnostic name and ``value`` a finite number.

    A valid name is short snake_case (:data:`DIAGNOSTIC_NAME`, at most :data:`DIAGNOSTIC_NAME_LENGTH`
    characters); a valid value is a real number (``int``, ``float``, a NumPy scalar or a one-element
    tensor, not a ``bool``) that is finite.

    Raises:
        DiagnosticError: saying which of the two is wrong.
    """
    if not isinstance(name, str) or len(name) > DIAGNOSTIC_NAME_LENGTH or not DIAGNOSTIC_NAME.fullmatch(name):
        raise DiagnosticError(f"a training diagnostic's name must be snake_case (a lowercase letter, then lowercase "
                              f"letters, digits or underscores) of at most {DIAGNOSTIC_NAME_LENGTH} characters, "
                              f"got {name!r}")
    if isinstance(value, (bool, str, bytes)):
        raise DiagnosticError(f"training diagnostic {name!r} must be a number, got {type(value).__name__} {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except Exception:
        raise DiagnosticError(f"training diagnostic {name!r} must be a number (a float, an int or a one-element "
                              f"tensor), got {type(value).__name__}") from None
    if not math.isfinite(number):
        raise DiagnosticError(f"training diagnostic {name!r} must be finite, got {number}")
    return number


def checked_diagnostics(values: Mapping[Any, Any]) -> dict[str, float]:
    """``values`` as a ``name -> float`` dict, every entry checked by :func:`diagnostic_value`.

    Raises:
        DiagnosticError: a bad name or value, or more than :data:`MAX_DIAGNOSTICS` entries.
    """
    if len(values) > MAX_DIAGNOSTICS:
        raise DiagnosticError(f"at most {MAX_DIAGNOSTICS} training diagnostics may be reported, got {len(values)}")
    return {name: diagnostic_value(name, value) for name, value in values.items()}


class RunResult(BaseModel):
    """One finished job. ``status == "failed"`` carries the error and no metrics.

    ``training`` holds what the method reported about its own training through
    :meth:`~sbbench.methods.base.TrainContext.report` (for example ``penalty_steps`` and
    ``penalty_share`` of a regulariser): data, not metrics; empty when the method reported
    nothing. An empty ``training`` is left out of the serialised record, so results written
    before the field existed keep their JSON, checksums and content hashes.
    """

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
    training: dict[str, float] = Field(default_factory=dict,
                                       description="training diagnostics the method reported (name -> finite float)")

    @field_validator("training")
    @classmethod
    def _valid_diagnostics(cls, values: dict[str, float]) -> dict[str, float]:
        return checked_diagnostics(values)

    @model_serializer(mode="wrap")
    def _omit_empty_training(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data = handler(self)
        if not self.training:
            data.pop("training", None)
        return data
