"""Credentials shaped like the real ones, for a simulated provider.

A Google service-account JSON (RSA key, ``token_uri`` at the simulator) and an
APNs ``.p8`` auth key (EC P-256): the client libraries sign with them exactly as
they would for Google and Apple, and the simulator checks the signatures.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass(frozen=True)
class ServiceAccount:
    project_id: str
    client_email: str
    json: str
    public_key_pem: str


@dataclass(frozen=True)
class ApnsKey:
    key_id: str
    team_id: str
    private_key_pem: str
    public_key_pem: str


def service_account(project_id: str, token_uri: str) -> ServiceAccount:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": _private_pem(key),
        "client_email": email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return ServiceAccount(project_id, email, json.dumps(info, indent=2), _public_pem(key))


def apns_key(team_id: str = "TEAM123456") -> ApnsKey:
    key = ec.generate_private_key(ec.SECP256R1())
    key_id = secrets.token_hex(5).upper()
    return ApnsKey(key_id, team_id, _private_pem(key), _public_pem(key))
