"""Masks for what must never appear whole in logs, task arguments or Flower."""

from __future__ import annotations

import re


def mask_phone(phone: str) -> str:
    """``+919876543210`` → ``+91******3210``."""
    if len(phone) <= 6:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_token(token: str) -> str:
    """A device token or secret: the first and last 4 characters only."""
    if len(token) <= 12:
        return "*" * len(token)
    return f"{token[:4]}…{token[-4:]}"


_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]+)@")


def redacted_url(url: str) -> str:
    """``redis://:s3cret@host:6379/0`` → ``redis://:***@host:6379/0``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def redacted_text(text: str) -> str:
    """Any URL with a password in ``text`` (an exception's message), redacted."""
    return redacted_url(text)
