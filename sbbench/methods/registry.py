"""Finding methods: built-ins, installed packages (entry points) and submission folders.

Three sources claim method names:

* built-in classes listed in :data:`BUILTIN_METHODS` (``name -> "module:Class"``);
* installed distributions exposing ``module:Class`` under the entry-point group
  ``sbbench.methods`` (the entry point's name must equal the class's ``name``);
* folders ``<submissions>/<name>/`` holding ``method.py`` and ``submission.toml``
  (see :mod:`sbbench.methods.submission`), where ``<submissions>`` is ``$SBBENCH_SUBMISSIONS``
  or the nearest folder named ``submissions`` in the working directory or above it.

Claims are read without importing any method code (built-in keys, entry-point names,
``submission.toml`` files). Resolving a name imports a built-in's class here; an entry point or a
folder is hashed from its files and described by a child process, so submitted code never runs
in the process that scores, verifies or writes results (docs/isolation.md). A name claimed
by two sources blocks only the commands that need that name, with both sources and the fix
named. ``resolve_method`` also accepts the path of a submission folder, which may not take a
name that another source claims.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from sbbench.methods.base import Method, Track
from sbbench.methods.describe import (
    DescribeError,
    Description,
    HParamsOutcome,
    describe_class,
    describe_in_child,
    import_reference,
    load_class,
    validate_with_class,
)
from sbbench.methods.submission import SubmissionError, SubmissionMeta, read_meta

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
    "dfr": "sbbench.methods.dfr:DFR",
    "jtt": "sbbench.methods.jtt:JTT",
    "lff": "sbbench.methods.lff:LfF",
    "group-dro": "sbbench.methods.group_dro:GroupDRO",
}
"""Registry name -> ``module:Class``; each class's ``name`` must equal its key."""

_DEFAULT = object()


class HParamsError(ValueError):
    """Hyperparameters that the method's ``HParams`` refuses; the message names the field and the problem."""


@dataclass(frozen=True)
class MethodInfo:
    """A resolved method, as data: what it declares, where it came from and a hash of its code.

    Only a built-in method (``trusted``) has its class imported in this process; any other
    method was described by a child process (:mod:`sbbench.methods.describe`) and its code runs
    only in fit processes.
    """

    description: Description
    source: str
    code_hash: str
    locator: dict[str, str]
    trusted: bool = False
    meta: SubmissionMeta | None = field(default=None)
    folder: Path | None = field(default=None)
    cls: type[Method] | None = field(default=None, compare=False, repr=False)
    """The class, when it is imported in this process (built-ins; :meth:`of_class`); else ``None``."""

    @classmethod
    def of_class(cls, method: type[Method], source: str = "in-process class") -> MethodInfo:
        """A trusted method from a class already imported here (tests, notebooks); its code hash covers its file."""
        return cls(description=describe_class(method), source=source, trusted=True, cls=method,
                   code_hash=source_hash([Path(inspect.getfile(method))]),
                   locator={"reference": f"{method.__module__}:{method.__qualname__}", "name": method.name})

    @property
    def defaults(self) -> dict[str, Any]:
        """The method's default hyperparameters, validated, as JSON values."""
        return self.description.defaults

    @property
    def name(self) -> str:
        return self.description.name

    @property
    def version(self) -> str:
        return self.description.version

    @property
    def track(self) -> Track:
        return self.description.track

    @property
    def ref(self) -> str:
        """How another process finds the method again: the folder path of a submission, else the name."""
        return str(self.folder) if self.folder is not None else self.name

    def load_class(self) -> type[Method]:
        """The method's class, imported if need be: runs its code (fit processes, ``--executor inline``)."""
        return self.cls if self.cls is not None else load_class(self.locator)

    def configure(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """The defaults updated by ``overrides``, validated by the method's ``HParams`` (JSON values).

        Raises :class:`HParamsError` naming the field and the problem.
        """
        (outcome,) = self.validate([overrides])
        if outcome.error is not None:
            raise HParamsError(outcome.error)
        return outcome.values

    def validate(self, overrides: list[dict[str, Any]]) -> list[HParamsOutcome]:
        """Each override set validated as :meth:`configure` does; in a child unless the method is built in."""
        if self.trusted:
            cls = self.load_class()
            return [validate_with_class(cls, item) for item in overrides]
        return describe_in_child(self.locator, overrides)[1]


@dataclass(frozen=True)
class Claim:
    """One source's claim to a method name, read without importing its code; ``load`` resolves it."""

    name: str
    source: str
    load: Callable[[], MethodInfo]
    folder: Path | None = None


class RegistryError(LookupError):
    """A method could not be found, or two sources claim the same name."""


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


def _load_builtin(name: str, reference: str, source: str) -> MethodInfo:
    """A built-in method: its class is part of sbbench and is imported here."""
    try:
        cls = import_reference(reference)
    except DescribeError as error:
        raise RegistryError(str(error)) from None
    if cls.name != name:
        raise RegistryError(f"{source}: its class is named {cls.name!r}; the two names must match")
    return MethodInfo(description=describe_class(cls), source=source, trusted=True, cls=cls,
                      code_hash=source_hash([Path(inspect.getfile(cls))]),
                      locator={"reference": reference, "name": name})


def _load_entry_point(entry: EntryPoint, source: str) -> MethodInfo:
    """An installed method: hashed from its distribution's file, described by a child process."""
    locator = {"reference": entry.value, "name": entry.name}
    code_hash = source_hash([_module_file(entry)])
    try:
        description = _describe(locator, code_hash)
    except DescribeError as error:
        raise RegistryError(f"{source}: {error}") from None
    return MethodInfo(description=description, source=source, code_hash=code_hash, locator=locator)


def _module_file(entry: EntryPoint) -> Path:
    """The file of an entry point's module, found without importing it.

    First in its distribution's file list; else (an editable install lists only a ``.pth``) by
    locating the top-level package with the import system's finders (``find_spec`` of a
    top-level name runs no package code) and walking the remaining names as folders.
    """
    module = entry.value.partition(":")[0].strip()
    wanted = {module.replace(".", "/") + ".py", module.replace(".", "/") + "/__init__.py"}
    for file in (entry.dist.files or []) if entry.dist else []:
        if file.as_posix() in wanted:
            return Path(entry.dist.locate_file(file))
    found = _locate_module(module)
    if found is None:
        raise RegistryError(f"entry point {entry.name} = {entry.value}: module {module!r} cannot be located "
                            "without importing it, so its code cannot be hashed")
    return found


def _locate_module(module: str) -> Path | None:
    """The source file of ``module`` (``a.b.c``), located without executing any package's code."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for folder in map(Path, spec.submodule_search_locations or []):
        for candidate in (folder.joinpath(*rest).with_suffix(".py"), folder.joinpath(*rest, "__init__.py")):
            if candidate.is_file():
                return candidate
    return None


_DESCRIPTIONS: dict[tuple[str, str], Description] = {}


def _describe(locator: dict[str, str], code_hash: str) -> Description:
    """The method's description from a child process, memoised per code hash in this process."""
    key = (json.dumps(locator, sort_keys=True), code_hash)
    if key not in _DESCRIPTIONS:
        _DESCRIPTIONS[key] = describe_in_child(locator)[0]
    return _DESCRIPTIONS[key]


def _class_claim(name: str, reference: str, source: str) -> Claim:
    return Claim(name=name, source=source, load=lambda: _load_builtin(name, reference, source))


def _entry_point_claim(entry: EntryPoint) -> Claim:
    source = f"entry point {entry.name} = {entry.value} ({entry.dist.name if entry.dist else 'unknown'})"
    return Claim(name=entry.name, source=source, load=lambda: _load_entry_point(entry, source))


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
    every += [_entry_point_claim(entry) for entry in entry_points(group=ENTRY_POINT_GROUP)]
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
    """The method of a submission folder (``method.py`` + ``submission.toml``), described by a child process.

    The code hash covers every ``.py`` file of the folder and ``submission.toml``; nothing of the
    folder is imported here. Raises :class:`SubmissionError` for a malformed folder.
    """
    meta = read_meta(folder / "submission.toml")
    if not (folder / "method.py").is_file():
        raise SubmissionError(f"{folder / 'method.py'}: missing (a submission needs method.py next to "
                              "submission.toml)")
    locator = {"folder": str(folder)}
    code_hash = source_hash(_folder_code(folder))
    try:
        description = _describe(locator, code_hash)
    except DescribeError as error:
        raise SubmissionError(str(error)) from None
    return MethodInfo(description=description, source=f"folder {folder}", code_hash=code_hash, locator=locator,
                      meta=meta, folder=folder)


def _folder_code(folder: Path) -> list[Path]:
    """The files a folder's code hash covers: every ``.py`` file (outside ``__pycache__``) and ``submission.toml``."""
    return [*(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts), folder / "submission.toml"]


def current_code_hash(info: MethodInfo) -> str:
    """The hash of the method's code as it is on disk now (to check that a process runs the code scored)."""
    if info.folder is not None:
        return source_hash(_folder_code(info.folder))
    return source_hash([Path(inspect.getfile(info.load_class()))])


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


__all__ = ["Claim", "HParamsError", "MethodInfo", "RegistryError", "SubmissionError", "claims", "discover",
           "resolve_method"]
