"""Finding methods: built-ins, installed packages (entry points) and submission folders.

Three sources claim method names:

* built-in classes listed in :data:`BUILTIN_METHODS` (``name -> "module:Class"``);
* installed distributions exposing ``module:Class`` under the entry-point group
  ``sbbench.methods`` (the entry point's name must equal the class's ``name``);
* folders ``<submissions>/<name>/`` holding ``method.py`` and ``submission.toml``
  (see :mod:`sbbench.methods.submission`), where ``<submissions>`` is ``$SBBENCH_SUBMISSIONS``
  or the nearest folder named ``submissions`` in the working directory or above it.

Claims are read without importing any method code (built-in keys, entry-point names,
``submission.toml`` files); only the method asked for is imported and hashed. A name claimed
by two sources blocks only the commands that need that name, with both sources and the fix
named. ``resolve_method`` also accepts the path of a submission folder, which may not take a
name that another source claims.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from sbbench.methods.base import Method
from sbbench.methods.submission import SubmissionError, SubmissionMeta, load_submission, read_meta

ENTRY_POINT_GROUP = "sbbench.methods"
SUBMISSIONS_ENV = "SBBENCH_SUBMISSIONS"

BUILTIN_METHODS: dict[str, str] = {
    "erm": "sbbench.methods.erm:ERM",
    "oracle-randomize-s": "sbbench.methods.oracle:OracleRandomizeS",
    "d-bat": "sbbench.methods.dbat:DBAT",
    "divdis": "sbbench.methods.divdis:DivDis",
    "divdis-t2": "sbbench.methods.divdis:DivDisT2",
    "erm-adam": "sbbench.methods.erm_adam:ErmAdam",
    "ensemble": "sbbench.methods.ensemble:DeepEnsemble",
    "adv-train-linf": "sbbench.methods.adversarial_training:AdvTrainLinf",
    "adv-train-l2": "sbbench.methods.adversarial_training:AdvTrainL2",
    "spectral-decoupling": "sbbench.methods.spectral_decoupling:SpectralDecoupling",
    "input-grad-diversity": "sbbench.methods.input_grad_diversity:InputGradientDiversity",
    "sam": "sbbench.methods.sam:SAM",
    "orthop": "sbbench.methods.orthop:OrthoP",
    "cmid": "sbbench.methods.cmid:CMID",
    "sifer": "sbbench.methods.sifer:SiFeR",
}
"""Registry name -> ``module:Class``; each class's ``name`` must equal its key."""

_DEFAULT = object()


@dataclass(frozen=True)
class MethodInfo:
    """A resolved method: its class, where it came from, and a hash of its code."""

    cls: type[Method]
    source: str
    code_hash: str
    meta: SubmissionMeta | None = field(default=None)
    folder: Path | None = field(default=None)

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def ref(self) -> str:
        """How another process finds the method again: the folder path of a submission, else the name."""
        return str(self.folder) if self.folder is not None else self.name

    def make(self, hparams: dict[str, Any]) -> Method:
        """An instance configured with ``hparams`` (validated by the class's ``HParams``)."""
        return self.cls(self.cls.HParams.model_validate(hparams))


@dataclass(frozen=True)
class Claim:
    """One source's claim to a method name, read without importing its code; ``load`` imports it."""

    name: str
    source: str
    load: Callable[[], MethodInfo]
    folder: Path | None = None


class RegistryError(LookupError):
    """A method could not be found, or two sources claim the same name."""


def import_reference(reference: str) -> type[Method]:
    """Import ``"package.module:Class"`` and check that it is a :class:`Method` subclass."""
    module_name, _, attribute = reference.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise RegistryError(f"cannot import method {reference!r}: {error}") from error
    if not (inspect.isclass(cls) and issubclass(cls, Method)):
        raise RegistryError(f"{reference!r} is not a subclass of sbbench.methods.Method")
    if inspect.isabstract(cls):
        raise RegistryError(f"{reference!r} does not implement {', '.join(sorted(cls.__abstractmethods__))}")
    if not isinstance(getattr(cls, "name", None), str):
        raise RegistryError(f"{reference!r} has no string attribute 'name'")
    return cls


def source_hash(paths: list[Path]) -> str:
    """sha256 over the files' names and bytes, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def default_submissions_dir() -> Path | None:
    """``$SBBENCH_SUBMISSIONS``, else the nearest ``submissions`` folder in the working directory or above."""
    if os.environ.get(SUBMISSIONS_ENV):
        return Path(os.environ[SUBMISSIONS_ENV])
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "submissions").is_dir():
            return folder / "submissions" if folder == here else (folder / "submissions").resolve()
    return None


def _load_class(name: str, reference: str, source: str) -> MethodInfo:
    cls = import_reference(reference)
    if cls.name != name:
        raise RegistryError(f"{source}: its class is named {cls.name!r}; the two names must match")
    return MethodInfo(cls=cls, source=source, code_hash=source_hash([Path(inspect.getfile(cls))]))


def _class_claim(name: str, reference: str, source: str) -> Claim:
    return Claim(name=name, source=source, load=lambda: _load_class(name, reference, source))


def _folder_claim(folder: Path) -> Claim:
    try:
        name = read_meta(folder / "submission.toml").name
    except SubmissionError:
        name = folder.name  # malformed: claimed under the folder's name, and loading it reports the problem
    return Claim(name=name, source=f"folder {folder}", load=lambda: load_folder(folder), folder=folder)


def claims(submissions_dir: Path | object | None = _DEFAULT) -> dict[str, list[Claim]]:
    """Every name any source claims, with its claims (more than one: a clash); imports no method code."""
    found: dict[str, list[Claim]] = {}
    every = [_class_claim(name, reference, f"built-in {reference}") for name, reference in BUILTIN_METHODS.items()]
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {entry.name} = {entry.value} ({entry.dist.name if entry.dist else 'unknown'})"
        every.append(_class_claim(entry.name, entry.value, source))
    folder = default_submissions_dir() if submissions_dir is _DEFAULT else submissions_dir
    if folder is not None and folder.is_dir():
        every += [_folder_claim(p) for p in sorted(folder.iterdir()) if (p / "submission.toml").is_file()]
    for claim in every:
        found.setdefault(claim.name, []).append(claim)
    return found


def clash_message(name: str, claimed: list[Claim]) -> str:
    """Why ``name`` cannot be used, naming every source and the fix."""
    sources = " and by ".join(claim.source for claim in claimed)
    return (f"method name {name!r} is claimed twice: by {sources}; rename one of them (the `name` in a "
            "submission.toml, or the entry point's name and its class's `name`), or uninstall the package")


def discover(submissions_dir: Path | object | None = _DEFAULT) -> dict[str, MethodInfo]:
    """Every method by name, imported; raises :class:`RegistryError` on a clash or a source that fails to load."""
    methods = {}
    for name, claimed in claims(submissions_dir).items():
        if len(claimed) > 1:
            raise RegistryError(clash_message(name, claimed))
        methods[name] = claimed[0].load()
    return methods


def load_folder(folder: Path) -> MethodInfo:
    """The method of a submission folder (``method.py`` + ``submission.toml``)."""
    meta, cls = load_submission(folder)
    code = [p for p in folder.rglob("*.py") if "__pycache__" not in p.parts] + [folder / "submission.toml"]
    return MethodInfo(cls=cls, source=f"folder {folder}", code_hash=source_hash(code), meta=meta, folder=folder)


def resolve_method(name_or_path: str, submissions_dir: Path | object | None = _DEFAULT) -> MethodInfo:
    """A method by registered name, or by the path of a submission folder; imports only that method.

    Raises :class:`RegistryError` for an unknown name, a name claimed by two sources, or a folder
    whose name another source claims, and :class:`SubmissionError` for a malformed folder.
    """
    path = Path(name_or_path)
    if (path / "submission.toml").is_file():
        name = read_meta(path / "submission.toml").name
        others = [c for c in claims(submissions_dir).get(name, [])
                  if c.folder is None or c.folder.resolve() != path.resolve()]
        if others:
            raise RegistryError(f"submission folder {path} is named {name!r}, which {others[0].source} already "
                                f"claims: change `name` in {path / 'submission.toml'} (and the class's `name`)")
        return load_folder(path)
    every = claims(submissions_dir)
    claimed = every.get(name_or_path, [])
    if not claimed:
        raise RegistryError(f"unknown method {name_or_path!r}; known methods: {', '.join(sorted(every))}")
    if len(claimed) > 1:
        raise RegistryError(clash_message(name_or_path, claimed))
    return claimed[0].load()


__all__ = ["Claim", "MethodInfo", "RegistryError", "SubmissionError", "claims", "discover", "resolve_method"]
