"""Masks for what must never appear whole in logs, task arguments or Flower."""

from __future__ import annotations


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
