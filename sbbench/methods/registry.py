"""Finding methods: built-ins, installed packages (entry points) and submission folders.

Three sources feed one registry; a name claimed by two sources is refused with both named:

* built-in classes listed in :data:`BUILTIN_METHODS` (``module:Class`` strings, imported lazily);
* installed distributions exposing ``module:Class`` under the entry-point group
  ``sbbench.methods``;
* folders ``submissions/<name>/`` holding ``method.py`` and ``submission.toml``
  (see :mod:`sbbench.methods.submission`).

``resolve_method`` also accepts a path to a submission folder that is not under
``submissions/``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from sbbench.methods.base import Method
from sbbench.methods.submission import SubmissionError, SubmissionMeta, load_submission

ENTRY_POINT_GROUP = "sbbench.methods"

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


@dataclass(frozen=True)
class MethodInfo:
    """A resolved method: its class, where it came from, and a hash of its code."""

    cls: type[Method]
    source: str
    code_hash: str
    meta: SubmissionMeta | None = field(default=None)

    @property
    def name(self) -> str:
        return self.cls.name


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


def _class_info(cls: type[Method], source: str) -> MethodInfo:
    return MethodInfo(cls=cls, source=source, code_hash=source_hash([Path(inspect.getfile(cls))]))


def discover(submissions_dir: Path | None = Path("submissions")) -> dict[str, MethodInfo]:
    """Every method by name; raises :class:`RegistryError` on a duplicate name."""
    found: dict[str, MethodInfo] = {}

    def add(info: MethodInfo) -> None:
        if info.name in found:
            raise RegistryError(
                f"method name {info.name!r} is claimed twice: by {found[info.name].source} and by {info.source}"
            )
        found[info.name] = info

    for reference in BUILTIN_METHODS.values():
        add(_class_info(import_reference(reference), f"built-in {reference}"))
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {entry.name} = {entry.value} ({entry.dist.name if entry.dist else 'unknown'})"
        cls = import_reference(entry.value)
        if cls.name != entry.name:
            raise RegistryError(f"{source}: its class is named {cls.name!r}; the two names must match")
        add(_class_info(cls, source))
    if submissions_dir is not None and submissions_dir.is_dir():
        for folder in sorted(p for p in submissions_dir.iterdir() if (p / "submission.toml").is_file()):
            add(load_folder(folder))
    return found


def load_folder(folder: Path) -> MethodInfo:
    """The method of a submission folder (``method.py`` + ``submission.toml``)."""
    meta, cls = load_submission(folder)
    code = [p for p in folder.rglob("*.py") if "__pycache__" not in p.parts] + [folder / "submission.toml"]
    return MethodInfo(cls=cls, source=f"folder {folder}", code_hash=source_hash(code), meta=meta)


def resolve_method(name_or_path: str, submissions_dir: Path | None = Path("submissions")) -> MethodInfo:
    """A method by registered name, or by the path of a submission folder."""
    path = Path(name_or_path)
    if (path / "submission.toml").is_file():
        return load_folder(path)
    methods = discover(submissions_dir)
    if name_or_path not in methods:
        raise RegistryError(f"unknown method {name_or_path!r}; known methods: {', '.join(sorted(methods))}")
    return methods[name_or_path]


__all__ = ["MethodInfo", "RegistryError", "SubmissionError", "discover", "resolve_method"]
