"""Reading what a method declares without importing its code here: a short-lived child does it.

A submitted method (a submission folder or an installed entry point) is not trusted, so the
process that scores, verifies or writes results never imports it. When it needs the method's
declarations (version, track, paper, hyperparameter schema and defaults) or needs
hyperparameters validated by the method's ``HParams``, it starts a child process that imports the
method and answers in JSON: :func:`describe_in_child`. The child runs in its own process group
under a time and address-space limit, with the submission's own prints sent to stderr; its
answer is parsed as JSON and validated (:class:`Description`), never unpickled.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from sbbench.methods.base import Method, Track
from sbbench.methods.submission import SubmissionError, load_submission

DESCRIBE_SECONDS = 120.0
"""How long the child may take (importing torch and the method, validating)."""

DESCRIBE_MEMORY_GB = 8.0
"""The child's address-space limit."""

_CHILD_COMMAND = "from sbbench.methods.describe import serve; serve()"


class DescribeError(RuntimeError):
    """The method could not be loaded or described; the message is the reason."""


class Description(BaseModel):
    """What a method class declares, as the describing child reports it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str
    track: Track
    paper: str | None = None
    summary: str = ""
    hparams_schema: dict[str, Any]
    defaults: dict[str, Any]


class HParamsOutcome(BaseModel):
    """One hyperparameter set validated by the method's ``HParams``: the full values, or the problem."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    values: dict[str, Any] | None = None
    error: str | None = None


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: Description | None = None
    hparams: list[HParamsOutcome] = []
    error: str | None = None


def import_reference(reference: str) -> type[Method]:
    """Import ``"package.module:Class"`` and check that it is a concrete :class:`Method` subclass."""
    module_name, _, attribute = reference.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise DescribeError(f"cannot import method {reference!r}: {error}") from error
    if not (inspect.isclass(cls) and issubclass(cls, Method)):
        raise DescribeError(f"{reference!r} is not a subclass of sbbench.methods.Method")
    if inspect.isabstract(cls):
        raise DescribeError(f"{reference!r} does not implement {', '.join(sorted(cls.__abstractmethods__))}")
    if not isinstance(getattr(cls, "name", None), str):
        raise DescribeError(f"{reference!r} has no string attribute 'name'")
    return cls


def load_class(locator: dict[str, str]) -> type[Method]:
    """Import a method's class: ``{"folder": path}`` or ``{"reference": "module:Class", "name": name}``.

    This runs the method's code: only fit processes and describing children call it for a
    method that is not built in. Raises :class:`DescribeError` or :class:`SubmissionError`.
    """
    if "folder" in locator:
        return load_submission(Path(locator["folder"]))[1]
    cls = import_reference(locator["reference"])
    if cls.name != locator["name"]:
        raise DescribeError(f"{locator['reference']}: its class is named {cls.name!r}, but it is registered as "
                            f"{locator['name']!r}; the two names must match")
    return cls


def describe_class(cls: type[Method]) -> Description:
    """The declarations of an imported method class."""
    return Description(name=cls.name, version=str(cls.version), track=Track(cls.track), paper=cls.paper,
                       summary=(cls.__doc__ or "").strip().split("\n")[0],
                       hparams_schema=cls.HParams.model_json_schema(), defaults=cls.defaults().model_dump(mode="json"))


def validate_with_class(cls: type[Method], overrides: dict[str, Any]) -> HParamsOutcome:
    """The method's defaults updated by ``overrides``, validated by its ``HParams`` (as JSON values)."""
    try:
        return HParamsOutcome(values=cls.with_overrides(overrides).hparams.model_dump(mode="json"))
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        return HParamsOutcome(error=f"hyperparameter {where} of {cls.name}: {problem['msg']}")


def describe_in_child(locator: dict[str, str], hparams: list[dict[str, Any]] = ()
                      ) -> tuple[Description, list[HParamsOutcome]]:
    """Import the method at ``locator`` in a child process; return its description and the validated ``hparams``.

    ``locator`` is ``{"folder": path}`` for a submission folder or ``{"reference": "module:Class",
    "name": name}`` for an entry point. Raises :class:`DescribeError` with the child's reason.
    """
    request = json.dumps({"locator": locator, "hparams": list(hparams), "sys_path": sys.path, "cwd": os.getcwd()})
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen([sys.executable, "-c", _CHILD_COMMAND, str(write_end)], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(write_end,),
                                   start_new_session=True)
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as answers:
        try:
            _, stderr = process.communicate(request.encode(), timeout=DESCRIBE_SECONDS)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise DescribeError(f"loading the method took longer than {DESCRIBE_SECONDS:g} s") from None
        finally:
            _kill_group(process)
        raw = answers.read(16 * 1024 * 1024)
    try:
        answer = _Answer.model_validate_json(raw)
    except ValidationError:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {process.returncode}"]
        raise DescribeError(f"the process loading the method gave no valid answer ({tail[0][:300]})") from None
    if answer.error is not None or answer.description is None:
        raise DescribeError(answer.error or "the process loading the method described nothing")
    if len(answer.hparams) != len(hparams):
        raise DescribeError("the process loading the method validated the wrong number of hyperparameter sets")
    return answer.description, answer.hparams


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def serve() -> None:
    """The child: read one request from stdin, answer on the file descriptor given as argument."""
    answer_fd = int(sys.argv[1])
    os.dup2(2, 1)  # the method's own prints go to stderr; the answer has its private descriptor
    limit = int(DESCRIBE_MEMORY_GB * 1024**3)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    request = json.loads(sys.stdin.read())
    sys.path[:] = request["sys_path"]
    os.chdir(request["cwd"])
    try:
        cls = load_class(request["locator"])
        answer = _Answer(description=describe_class(cls),
                         hparams=[validate_with_class(cls, overrides) for overrides in request["hparams"]])
    except (DescribeError, SubmissionError) as error:
        answer = _Answer(error=str(error))
    except Exception as error:
        answer = _Answer(error=f"loading the method raised {type(error).__name__}: {error}")
    with os.fdopen(answer_fd, "w") as out:
        out.write(answer.model_dump_json())
