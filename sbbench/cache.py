"""The on-disk result cache and the atomic file writes every writer of results uses.

Finished job results live under ``<root>/<key[:2]>/<key>.json`` with a checksum of their
JSON, written atomically, so a score that is interrupted and started again recomputes only
the jobs that are missing, and a damaged file is recomputed rather than trusted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from sbbench.results import RunResult

CACHE_ENV = "SBBENCH_CACHE"


class CachedResult(BaseModel):
    """On-disk form of a cached job: the result plus a checksum of its JSON."""

    model_config = ConfigDict(extra="forbid")

    checksum: str
    result: RunResult


def _checksum(result: RunResult) -> str:
    return hashlib.sha256(result.model_dump_json().encode()).hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new file, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class ResultCache:
    """Finished job results under ``root/<key[:2]>/<key>.json``, checksummed.

    A file that does not parse or whose checksum does not match, or anything else sitting at
    the path (a folder), is treated as missing (and removed), so a job is recomputed rather
    than trusted; ``warn`` gets one line saying so (default: printed to stderr).
    """

    def __init__(self, root: Path, warn: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.warn = warn or _print_warning

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def load(self, key: str) -> RunResult | None:
        path = self.path(key)
        try:
            cached = CachedResult.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError, ValueError) as error:
            self._discard(path, "a folder" if path.is_dir() else f"unreadable ({type(error).__name__})")
            return None
        if cached.checksum != _checksum(cached.result):
            self._discard(path, "its checksum does not match")
            return None
        return cached.result

    def store(self, key: str, result: RunResult) -> None:
        record = CachedResult(checksum=_checksum(result), result=result)
        path = self.path(key)
        if path.is_dir() and not path.is_symlink():
            self._discard(path, "a folder")
        atomic_write_text(path, record.model_dump_json())

    def _discard(self, path: Path, why: str) -> None:
        """Remove a damaged cache entry, whatever sits at its path (a file, a link or a folder), and say so."""
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        self.warn(f"warning: damaged cache entry {path} ({why}) removed; its job is computed again")


def _print_warning(message: str) -> None:
    print(message, file=sys.stderr)


def default_cache_dir() -> Path:
    """``$SBBENCH_CACHE`` or ``.sbbench/cache`` under the working directory."""
    return Path(os.environ.get(CACHE_ENV, ".sbbench/cache"))
