"""Submission folders: ``submission.toml`` (metadata) plus ``method.py`` (the Method class).

``submission.toml``::

    name = "my-method"                 # registry name: lowercase letters, digits, '-', '_'
    display_name = "My method"
    authors = ["Ada Lovelace"]
    paper = "https://arxiv.org/abs/..."  # optional
    description = "One paragraph."
    track = "T0"                       # T0, T1, T2 or oracle; must match the class
    class_name = "MyMethod"            # optional when method.py defines one Method subclass

    [hparams]                          # optional defaults overriding the class's own
    lam = 0.1
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from sbbench.methods.base import Method, Track


class SubmissionError(ValueError):
    """A submission folder is malformed; the message names the file and the problem."""


class SubmissionMeta(BaseModel):
    """The validated contents of ``submission.toml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    display_name: str = ""
    authors: list[str] = Field(default_factory=list)
    paper: str | None = None
    description: str = ""
    track: Track = Track.T0
    class_name: str | None = None
    hparams: dict[str, Any] = Field(default_factory=dict)


def read_meta(path: Path) -> SubmissionMeta:
    """Parse and validate ``submission.toml``.

    The file is read as bytes and decoded as UTF-8, as TOML requires. Reading it as text would
    apply Python's universal newlines, which turn a lone carriage return (CR not followed by LF:
    not a newline in TOML 1.0, and not allowed in comments or strings) into LF, so that a file of
    lines ended by lone CRs would be accepted; and it would decode with the locale's encoding.
    """
    try:
        raw = tomllib.loads(_read_utf8(path))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SubmissionError(f"{path}: not valid TOML: {error}") from error
    try:
        return SubmissionMeta.model_validate(raw)
    except ValidationError as error:
        raise SubmissionError(f"{path}: {_first_problem(error)}") from error


def _read_utf8(path: Path) -> str:
    """The file's exact characters: UTF-8, with no newline translation (a CR stays a CR)."""
    return path.read_bytes().decode("utf-8")


def load_submission(folder: Path) -> tuple[SubmissionMeta, type[Method]]:
    """Read a submission folder and import its Method class.

    The class's ``name`` and ``track`` are set from the metadata; hyperparameter defaults in
    the TOML are validated against the class's ``HParams`` here, so a wrong type fails early.
    """
    meta = read_meta(folder / "submission.toml")
    module_path = folder / "method.py"
    if not module_path.is_file():
        raise SubmissionError(f"{module_path}: missing (a submission needs method.py next to submission.toml)")
    cls = _method_class(_import_file(module_path, f"sbbench_submissions.{meta.name.replace('-', '_')}"), meta,
                        module_path)
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise SubmissionError(f"{module_path}: class {cls.__name__} does not implement {missing} "
                              "(a Method must define fit(self, ctx))")
    try:
        track = Track(getattr(cls, "track", Track.T0))
    except ValueError:
        raise SubmissionError(f"{module_path}: class {cls.__name__} has track {cls.track!r}; "
                              f"use one of {', '.join(t.value for t in Track)}") from None
    if track != meta.track:
        raise SubmissionError(f"{module_path}: class {cls.__name__} declares track {track.value!r} "
                              f"but submission.toml says {meta.track.value!r}")
    try:
        defaults = cls.HParams.model_validate(meta.hparams)
    except ValidationError as error:
        raise SubmissionError(f"{folder / 'submission.toml'}: [hparams] {_first_problem(error)}") from error
    submitted = type(cls.__name__, (cls,), {"name": meta.name, "track": track, "__module__": cls.__module__,
                                            "default_hparams": defaults})
    return meta, submitted


def _import_file(path: Path, module_name: str) -> Any:
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise SubmissionError(f"{path}: importing it raised {type(error).__name__}: {error}") from error
    return module


def _method_class(module: Any, meta: SubmissionMeta, path: Path) -> type[Method]:
    if meta.class_name is not None:
        cls = getattr(module, meta.class_name, None)
        if cls is None:
            raise SubmissionError(f"{path}: no class named {meta.class_name!r} (class_name in submission.toml)")
        if not (inspect.isclass(cls) and issubclass(cls, Method)):
            raise SubmissionError(f"{path}: {meta.class_name} is not a subclass of sbbench.methods.Method")
        return cls
    candidates = [obj for obj in vars(module).values()
                  if inspect.isclass(obj) and issubclass(obj, Method) and obj.__module__ == module.__name__]
    if len(candidates) != 1:
        found = ", ".join(c.__name__ for c in candidates) or "none"
        raise SubmissionError(f"{path}: expected exactly one Method subclass, found {found}; "
                              "set class_name in submission.toml")
    return candidates[0]


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
    return f"{where}: {problem['msg']}"
