"""Reading and writing entry files and verdicts, and regenerating the tables next to them.

Layout: ``<root>/<suite>-v<version>/entries/<name>.json``, the verdict store
``<root>/<suite>-v<version>/verdicts/<claims digest>.json`` (written only by ``sbbench verify``:
maintainers' files) plus the generated ``leaderboard.csv`` and ``LEADERBOARD.md`` in
``<root>/<suite>-v<version>/``. Every write happens under a file lock on the suite folder and
replaces files atomically, so concurrent scores never corrupt an entry or a table.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
from filelock import FileLock
from pydantic import ValidationError

import sbbench
from sbbench.cache import atomic_write_text
from sbbench.headline import suite_score
from sbbench.leaderboard.entry import (
    ENTRY_SCHEMA_VERSION,
    Entry,
    LoadedEntry,
    MethodCard,
    Provenance,
    SuiteRef,
    Verdict,
    claims_digest,
)
from sbbench.leaderboard.migrations import SchemaError, migrate
from sbbench.leaderboard.render import leaderboard_frame, to_markdown
from sbbench.leaderboard.stats import summarize
from sbbench.methods.registry import MethodInfo
from sbbench.results import RunResult
from sbbench.suite import ALL_SUITES, Suite
from sbbench.tuning import Tuning, implied_tuning


class EntryError(ValueError):
    """An entry file is unreadable or does not match the schema; the message names the file."""


class NewerEntryError(EntryError):
    """An entry file written by a newer sbbench: not damaged, but this sbbench cannot read it (upgrade)."""


def suite_dir(root: Path, suite: Suite) -> Path:
    return root / suite.label


def suites_with_entries(root: Path) -> list[Suite]:
    """The known suites that have an ``entries`` folder under ``root``, in registry order."""
    return [suite for suite in ALL_SUITES if (suite_dir(root, suite) / "entries").is_dir()]


def entry_path(root: Path, suite: Suite, name: str) -> Path:
    return suite_dir(root, suite) / "entries" / f"{name}.json"


def verdict_dir(root: Path, suite: Suite) -> Path:
    """The suite's verdict store: maintainers' files, one per verified claims digest."""
    return suite_dir(root, suite) / "verdicts"


def verdict_path(root: Path, suite: Suite, claims: str) -> Path:
    """Where the verdict on the claims with digest ``claims`` lives."""
    return verdict_dir(root, suite) / f"{claims}.json"


def read_verdict(root: Path, suite: Suite, entry: Entry) -> Verdict | None:
    """The stored verdict on ``entry`` as it is now, or ``None``.

    Only a readable verdict file named by the entry's :func:`~sbbench.leaderboard.entry.claims_digest`
    that names the same digest and method counts; anything else (an entry edited after its
    verdict, a damaged or renamed verdict file) leaves the entry unverified.
    """
    claims = claims_digest(entry)
    try:
        verdict = Verdict.model_validate_json(verdict_path(root, suite, claims).read_bytes())
    except (OSError, ValueError):
        return None
    if verdict.claims != claims or verdict.method != entry.method.name:
        return None
    return verdict


def write_verdict(root: Path, suite: Suite, verdict: Verdict) -> Path:
    """Store ``verdict`` atomically under its claims digest (the caller holds :func:`suite_lock`)."""
    path = verdict_path(root, suite, verdict.claims)
    atomic_write_text(path, verdict.model_dump_json(indent=1) + "\n")
    return path


def provenance(device: str) -> Provenance:
    """This process's software versions, git commit, device and time."""
    return Provenance(sbbench_version=sbbench.__version__, git_commit=_git_commit(), python=sys.version.split()[0],
                      torch=torch.__version__, device=device, platform=platform.platform(),
                      created=datetime.now(timezone.utc))


def build_entry(info: MethodInfo, hparams: dict, hparams_source: str, suite: Suite, results: list[RunResult],
                device: str, *, tuning: Tuning | None = None) -> Entry:
    """Aggregate finished runs (all ``ok``) into an entry.

    ``tuning`` records how ``hparams`` were chosen (a sweep passes its record); without it the
    record follows from ``hparams_source`` (:func:`~sbbench.tuning.implied_tuning`):
    ``default`` for ``"defaults"``, ``given`` for ``sbbench score --hp``'s text. The entry always
    carries the record explicitly.
    """
    aggregates = {
        task.name: {metric: summarize([r.metrics[metric] for r in results if r.task == task.name])
                    for metric in next(r for r in results if r.task == task.name).metrics}
        for task in suite.tasks
    }
    primary = suite_score(suite, results)
    meta = info.meta
    card = MethodCard(
        name=info.name, display_name=(meta.display_name if meta and meta.display_name else info.name),
        version=info.version, track=info.track.value, code_hash=info.code_hash, hparams=hparams,
        hparams_source=hparams_source, source=info.source, authors=list(meta.authors) if meta else [],
        paper=meta.paper if meta else info.description.paper,
        description=meta.description if meta else info.description.summary,
    )
    return Entry(method=card, tuning=tuning if tuning is not None else implied_tuning(hparams_source),
                 provenance=provenance(device),
                 suite=SuiteRef(name=suite.name, version=suite.version, hash=suite.content_hash()),
                 primary_metric=suite.primary_metric, primary_score=primary, aggregates=aggregates,
                 runs=results, wall_seconds=sum(r.train_seconds + r.eval_seconds for r in results))


def read_entry(path: Path) -> Entry:
    """Parse and validate one entry file; an older schema version is migrated in memory or refused."""
    try:
        data = path.read_bytes()
        other_version = _other_schema_version(data)
        if other_version is not None:
            if other_version["schema_version"] > ENTRY_SCHEMA_VERSION:
                try:
                    migrate(other_version)
                except SchemaError as error:
                    raise NewerEntryError(f"{path}: {error}") from error
            return Entry.model_validate(migrate(other_version))
        return Entry.model_validate_json(data)
    except OSError as error:
        raise EntryError(f"{path}: cannot read: {error}") from error
    except SchemaError as error:
        raise EntryError(f"{path}: {error}") from error
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        raise EntryError(f"{path}: not a valid sbbench entry: {where}: {problem['msg']}") from error


def _other_schema_version(data: bytes) -> dict | None:
    """The parsed entry when it declares an integer schema version other than the current one."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version != ENTRY_SCHEMA_VERSION:
        return raw
    return None


def load_entries(root: Path, suite: Suite, problems: list[EntryError] | None = None) -> list[LoadedEntry]:
    """Every entry of ``suite`` under ``root``, each flagged stale when its suite hash differs, with its verdict.

    With a ``problems`` list, an entry file that cannot be read or is invalid (including one
    written by a newer sbbench: :class:`NewerEntryError`) is skipped and its :class:`EntryError`
    appended there, so one broken file does not hide the others; without one, the first such file
    raises its :class:`EntryError`.
    """
    folder = suite_dir(root, suite) / "entries"
    loaded = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            entry = read_entry(path)
        except EntryError as error:
            if problems is None:
                raise
            problems.append(error)
            continue
        loaded.append(loaded_entry(root, suite, entry, path))
    return loaded


def loaded_entry(root: Path, suite: Suite, entry: Entry, path: Path) -> LoadedEntry:
    """``entry``, read from ``path`` under ``root``, flagged stale or not and with its verdict from ``root``."""
    return LoadedEntry(entry=entry, path=path, stale=entry.suite.hash != suite.content_hash(),
                       verdict=read_verdict(root, suite, entry))


def owner_conflict(root: Path, suite: Suite, name: str, source: str) -> str | None:
    """Why an entry of ``source`` may not be written as ``name``, or ``None`` when it may.

    An entry file belongs to the source that wrote it (a built-in, an entry point, a folder):
    another source claiming the same name never replaces it. A file that does not parse is
    no one's and may be replaced.
    """
    path = entry_path(root, suite, name)
    if not path.is_file():
        return None
    try:
        owner = read_entry(path).method.source
    except EntryError:
        return None
    if owner == source:
        return None
    return (f"{path} is the entry of {owner}, and {source} also calls itself {name!r}: rename it (the `name` "
            f"in its submission.toml), write to another --root, or remove {path} first")


def write_entry(root: Path, suite: Suite, entry: Entry, problems: list[EntryError] | None = None) -> Path:
    """Write ``entry`` atomically under the suite's lock, then regenerate the tables.

    The file never holds a verdict (:class:`~sbbench.leaderboard.entry.Entry` has none: a legacy
    ``verification`` object read from an old file is dropped); a verdict on the same claims in the
    verdict store still applies.

    Raises :class:`EntryError` when the file holds another source's entry (:func:`owner_conflict`).
    Other entry files that cannot be read are left out of the tables and, when given, appended to
    ``problems``.
    """
    path = entry_path(root, suite, entry.method.name)
    with suite_lock(root, suite):
        conflict = owner_conflict(root, suite, entry.method.name, entry.method.source)
        if conflict is not None:
            raise EntryError(conflict)
        atomic_write_text(path, entry.model_dump_json(indent=1) + "\n")
        skipped = regenerate_tables(root, suite)
    if problems is not None:
        problems.extend(skipped)
    return path


def suite_lock(root: Path, suite: Suite) -> FileLock:
    """The file lock every writer of the suite's folder holds (creates the folder)."""
    folder = suite_dir(root, suite)
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / ".lock")


def regenerate_tables(root: Path, suite: Suite) -> list[EntryError]:
    """Rewrite ``leaderboard.csv`` and ``LEADERBOARD.md`` from the entry files (caller holds the lock).

    Entry files that cannot be read are left out and returned.
    """
    folder = suite_dir(root, suite)
    skipped: list[EntryError] = []
    frame = leaderboard_frame(load_entries(root, suite, skipped), suite)
    atomic_write_text(folder / "leaderboard.csv", frame.to_csv(index=False))
    atomic_write_text(folder / "LEADERBOARD.md", to_markdown(frame, suite))
    return skipped


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(sbbench.__file__).parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(sbbench.__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
