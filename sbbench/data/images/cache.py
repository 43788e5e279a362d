"""On-disk cache of built image datasets: one uncompressed ``.npz`` per (spec, seed, source).

Building a dominoes dataset decodes thousands of PNG images; the cache keeps the result as
uint8 arrays (about 40 MB per seed for the dominoes tasks), so later runs and worker
processes load it in well under a second. Files live under ``$SBBENCH_DATA_CACHE`` (default
``~/.cache/sbbench``) and are written atomically (temporary file + rename), so concurrent
builders never see a partial file. Each file carries a :class:`CacheHeader`; a file whose
header does not match the request, or that cannot be read, is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

CACHE_ENV = "SBBENCH_DATA_CACHE"


class CacheHeader(BaseModel):
    """What a cache file holds: the generator spec (as JSON), the seed and the image source."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: Literal[1] = 1
    spec: dict[str, Any]
    seed: int
    source: str

    def key(self) -> str:
        """sha256 of the header's canonical JSON: the file name stem."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def default_cache_root() -> Path:
    """``$SBBENCH_DATA_CACHE`` or ``~/.cache/sbbench``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sbbench")


def cache_path(root: Path, header: CacheHeader) -> Path:
    """``<root>/images/<key>.npz``."""
    return root / "images" / f"{header.key()}.npz"


def read_arrays(path: Path, header: CacheHeader) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path`` if its header equals ``header``, else ``None``."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored = CacheHeader.model_validate_json(str(archive["__header__"]))
            if stored != header:
                return None
            return {name: archive[name] for name in archive.files if name != "__header__"}
    except (OSError, KeyError, ValueError, ValidationError, json.JSONDecodeError):
        return None


def write_arrays(path: Path, header: CacheHeader, arrays: dict[str, np.ndarray]) -> None:
    """Store ``arrays`` and ``header`` at ``path`` atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, __header__=np.array(header.model_dump_json()), **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
