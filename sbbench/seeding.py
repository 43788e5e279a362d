"""Seeds of independent random streams: the one place where a job seed is split into named streams."""

from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, key: int | str) -> int:
    """Seed of an independent random stream named ``key`` under the non-negative ``seed``.

    Computed with ``numpy.random.SeedSequence([seed, key])`` (a string key enters as its
    CRC-32), so each key gets its own stream and adding a key leaves the other streams as
    they were. Returns an integer in ``[0, 2**32)``.
    """
    if isinstance(key, str):
        key = zlib.crc32(key.encode())
    return int(np.random.SeedSequence([seed, key]).generate_state(1)[0])
