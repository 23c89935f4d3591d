"""Identifiers: a prefix, a millisecond timestamp and randomness, so ids sort by time."""

from __future__ import annotations

import re
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


# What our ids look like (``new_id``): a path or body naming something else is a 404 or
# a 400, never a lookup under an unexpected key.
MESSAGE_ID_RE = re.compile(r"^msg_[0-9a-z]{1,64}$")
# Any of our message ids (a send's ``msg_…``, a campaign's ``cmp_…_<batch>_<n>``): what a
# status webhook's biz_opaque_callback_data must look like to be looked up.
CALLBACK_ID_RE = re.compile(r"^[a-z]{2,4}_[0-9a-z_]{1,120}$")
# A WhatsApp message id (wamid) as Meta writes it: what a status report must carry for it
# to be kept under one of our messages.
WAMID_RE = re.compile(r"^wamid\.[A-Za-z0-9+/=_-]{1,200}$")
