"""Deterministic per-key sampling of logged fetches, as Chronon: a key's Avro bytes decide, so every request
with the same key is logged or none is, in every process."""

from __future__ import annotations

import hashlib

_LONG_MIN = -(2**63)


def md5_long(data: bytes) -> int:
    """The first 8 bytes of the MD5 of `data` as a signed big-endian long (Chronon's HashUtils.md5Long)."""
    return int.from_bytes(hashlib.md5(data).digest()[:8], "big", signed=True)


def is_sampled(key_bytes: bytes, sample_percent: float) -> bool:
    """Log iff abs(md5Long(key)) % 100000 <= sample_percent * 1000 (with Java's abs and remainder)."""
    if sample_percent <= 0:
        return False
    value = md5_long(key_bytes)
    magnitude = value if value == _LONG_MIN else abs(value)  # Java: abs(Long.MIN_VALUE) stays negative
    remainder = abs(magnitude) % 100_000
    if magnitude < 0:
        remainder = -remainder  # Java's % keeps the dividend's sign
    return remainder <= sample_percent * 1000
