"""The hash-to-[0, 1) split rule (temporary copy in this branch: helper A owns this module)."""

from __future__ import annotations

import hashlib


def hash_unit(text: str, salt: str = "") -> float:
    """``blake2b(salt + text, digest_size=8)`` read little-endian, over 2**64: a number in [0, 1) fixed
    by ``text`` and ``salt`` alone."""
    digest = hashlib.blake2b((salt + text).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64
