"""Provider credentials encrypted at rest: what Redis (and its append-only file, and any
backup of it) holds of an access token, an app secret, a service account's private key, an
APNs ``.p8`` key or a provider JWT is a Fernet token, readable only with the service's key.

The key: ``DISPATCH_SECRET_KEY`` (comma-separated Fernet keys; the first encrypts, every
one decrypts, so a new key is put first and the old one kept until ``dispatch secrets
rotate`` has re-encrypted everything), else the file ``<data dir>/secret.key`` that
``dispatch up`` (and ``dispatch secrets init``) create. A value stored before encryption
existed (no ``fernet:`` prefix) is still read, and encrypted on its next write or rotation.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from worker.config import Settings, get_settings

PREFIX = "fernet:"


class SecretKeyError(Exception):
    """No key to encrypt with, or none of the keys decrypts a stored value."""


class SecretBox:
    def __init__(self, keys: list[str], where: str) -> None:
        self._where = where
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys]) if keys else None
        except ValueError:
            raise SecretKeyError(
                f"{where} is not a list of Fernet keys (32 url-safe base64-encoded bytes each)"
            ) from None

    def _require(self) -> MultiFernet:
        if self._fernet is None:
            raise SecretKeyError(
                "no key to encrypt provider credentials: set DISPATCH_SECRET_KEY or run "
                f"`dispatch secrets init` ({self._where})"
            )
        return self._fernet

    def seal(self, plaintext: str) -> str:
        return PREFIX + self._require().encrypt(plaintext.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # written before encryption existed
        try:
            return self._require().decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                "a stored credential does not decrypt with the configured key(s): keep the "
                "old key in DISPATCH_SECRET_KEY (after the new one) until `dispatch secrets "
                "rotate` has run"
            ) from None

    def rotate(self, stored: str) -> str:
        """The value encrypted with the first key (plaintext ones included)."""
        return self.seal(self.open(stored))


def key_file(settings: Settings) -> Path:
    return settings.data_dir / "secret.key"


def ensure_key_file(settings: Settings) -> Path:
    """The local key file, made (owner-only) if there is no key yet (``dispatch up``)."""
    path = key_file(settings)
    if settings.secret_key is None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(Fernet.generate_key().decode() + "\n")
    return path


def box_for(settings: Settings) -> SecretBox:
    if settings.secret_key is not None:
        keys = settings.secret_key.get_secret_value().split(",")
        return SecretBox([k for k in keys if k.strip()], "DISPATCH_SECRET_KEY")
    path = key_file(settings)
    if path.exists():
        return SecretBox([line for line in path.read_text().split() if line], str(path))
    return SecretBox([], f"no {path}")


_box: SecretBox | None = None


def use(settings: Settings) -> SecretBox:
    """This process's key, from these settings (a process with settings of its own)."""
    global _box
    _box = box_for(settings)
    return _box


def box() -> SecretBox:
    """This process's key (from its settings, the first time)."""
    return _box if _box is not None else use(get_settings())
