"""Identifiers: a prefix, a millisecond timestamp and randomness, so ids sort by time."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, rem = divmod(number, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """``msg_01hx…``: 10 chars of time (ms) and 16 chars (80 bits) of randomness."""
    return f"{prefix}_{_b32(int(time.time() * 1000), 10)}{_b32(secrets.randbits(80), 16)}"


def new_api_key() -> str:
    # 32 random bytes: hashing with SHA-256 (not bcrypt) is enough for secrets this long.
    return "msk_" + secrets.token_urlsafe(32)
