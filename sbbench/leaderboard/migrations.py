"""Upgrading entry files written by older sbbench releases to the current schema.

Every change to :class:`~sbbench.leaderboard.entry.Entry` that old files would fail bumps
``ENTRY_SCHEMA_VERSION`` and registers here a function that turns the raw JSON object of
version ``v`` into version ``v + 1``. Reading an entry applies the chain in memory; the file is
rewritten in the new form only when the entry is next written. Versions without a migration
are refused with a message saying how to recover (score the method again).

A key that old files carry and the schema dropped, where files without it were always valid,
needs no new version: :class:`~sbbench.leaderboard.entry.Entry` discards it when reading. So
goes ``verification``, the verdict that entries once carried and that is never trusted
(verdicts live in the verdict store, ``docs/verification.md``).

Likewise a key added with a default that old files imply needs no new version: ``tuning`` (how
the hyperparameters were chosen, :class:`~sbbench.tuning.Tuning`) is read from a file
without it as :func:`~sbbench.tuning.implied_tuning` of its ``hparams_source``
(``default`` for ``"defaults"``), and such an entry is written back and digested without the key,
so its claims digest, hence its verdict, does not change. An older sbbench refuses a file that
has the key (an unknown key), with the schema's message rather than "written by a newer sbbench".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sbbench.leaderboard.entry import ENTRY_SCHEMA_VERSION

Migration = Callable[[dict[str, Any]], dict[str, Any]]

MIGRATIONS: dict[int, Migration] = {}
"""``MIGRATIONS[v]`` upgrades a version-``v`` entry object to version ``v + 1``. None exist yet:
version 1 is the first published schema."""


class SchemaError(ValueError):
    """An entry's schema version is newer than this sbbench, or older without a migration."""


def migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` upgraded to :data:`ENTRY_SCHEMA_VERSION`; raises :class:`SchemaError` when impossible.

    A missing or non-integer ``schema_version`` is left for schema validation to report.
    """
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version == ENTRY_SCHEMA_VERSION:
        return raw
    if version > ENTRY_SCHEMA_VERSION:
        raise SchemaError(f"written by a newer sbbench (entry schema version {version}; this sbbench reads "
                          f"versions up to {ENTRY_SCHEMA_VERSION}): upgrade sbbench to read it")
    while version < ENTRY_SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise SchemaError(f"entry schema version {version} is older than {ENTRY_SCHEMA_VERSION} and no "
                              f"migration from it exists: score the method again to rewrite the entry")
        raw = MIGRATIONS[version](dict(raw))
        version += 1
        raw["schema_version"] = version
    return raw
