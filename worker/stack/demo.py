"""``dispatch up --demo``: an account wired to the simulator, and the spec's examples sent."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from rich.console import Console

from worker.config import Settings
from worker.models import ContactBody, Scope
from worker.services.provisioning import (
    configure_apns,
    configure_fcm,
    configure_whatsapp,
    sync_templates,
)
from worker.sim import credentials as sim_credentials
from worker.sim.credentials import ApnsKey, ServiceAccount
from worker.store import accounts, channels, contacts

ACCOUNT = "demo"
PHONE_NUMBER_ID = "100000000000001"
WABA_ID = "200000000000001"
CONTACT_ID = "cct_abc123"
CONTACT_PHONE = "+919876543210"

TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "order_confirmation",
        "language": "en",
        "category": "UTILITY",
        "body_text": "Your order {{1}} is confirmed. Total: {{2}}. Thank you for shopping with us!",
    },
    {
        "name": "shipping_update",
        "language": "en",
        "category": "UTILITY",
        "body_text": "Good news: order {{1}} has shipped.",
    },
    {
        "name": "welcome",
        "language": "en_US",
        "category": "MARKETING",
        "body_text": "Welcome aboard! Reply to this message to chat with us.",
    },
]

PROJECT_ID = "dispatch-demo"
APNS_TOPIC = "com.example.app"
DEMO_FCM_TOKEN = "fXDtJ9kS:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx7dPqnZ01demo"  # noqa: S105
DEMO_APNS_TOKEN = "a8b2cd3e" * 8

# The spec's example bodies, verbatim.
SPEC_BODY: dict[str, Any] = {
    "to": "+919876543210",
    "contact_id": "cct_abc123",
    "template_name": "order_confirmation",
    "parameters": [
        {"type": "text", "text": "ORD-98765"},
        {"type": "text", "text": "$49.99"},
    ],
}


SPEC_PUSH_BODY: dict[str, Any] = {
    "contact_id": "cct_abc123",
    "title": "Your order has shipped!",
    "message": "Order #ORD-98765 is on its way.",
    "url": "https://yourapp.com/orders/98765",
    "icon": "https://yourapp.com/icons/shipping.png",
}

EXAMPLES: list[tuple[str, str, dict[str, Any]]] = [
    ("WhatsApp", "/api/v1/channels/whatsapp/send", SPEC_BODY),
    ("push", "/api/v1/channels/push/send", SPEC_PUSH_BODY),
]


def demo_env_path(settings: Settings) -> Path:
    return settings.data_dir / "demo.env"


def wait_http(url: str, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer at {url} within {timeout_s:.0f}s ({last})")


async def _demo_key(redis: Redis, settings: Settings) -> str:
    """Reuse the key in .data/demo.env while it is valid, so the curl line stays the same."""
    path = demo_env_path(settings)
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if name.strip() == "DISPATCH_API_KEY":
                record = await accounts.resolve_key(redis, value.strip())
                if record and record.account == ACCOUNT and record.revoked_at is None:
                    return value.strip()
    secret, _ = await accounts.create_key(redis, ACCOUNT, list(Scope))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"DISPATCH_API_KEY={secret}\n")
    os.chmod(path, 0o600)
    return secret


async def provision(redis: Redis, settings: Settings) -> str:
    """Set up the demo account against the simulator; returns its API key."""
    if not await accounts.account_exists(redis, ACCOUNT):
        await accounts.create_account(redis, ACCOUNT)
    existing = await channels.load_whatsapp(redis, ACCOUNT)
    access_token = (
        existing.access_token.get_secret_value() if existing else "demo-" + os.urandom(12).hex()
    )
    app_secret = (
        existing.app_secret.get_secret_value()
        if existing and existing.app_secret
        else os.urandom(16).hex()
    )
    # The simulator keeps its state in memory: register the number and templates each run.
    sim = settings.sim_base_url
    async with httpx.AsyncClient(base_url=sim, timeout=5) as client:
        response = await client.put(
            f"/_sim/whatsapp/numbers/{PHONE_NUMBER_ID}",
            json={
                "waba_id": WABA_ID,
                "access_token": access_token,
                "app_secret": app_secret,
                "webhook_url": f"{settings.api_base_url}/webhooks/whatsapp",
                "auto_status": True,
            },
        )
        response.raise_for_status()
        response = await client.post(
            "/_sim/whatsapp/templates", json=[{"waba_id": WABA_ID, **t} for t in TEMPLATES]
        )
        response.raise_for_status()
    await configure_whatsapp(
        redis,
        settings,
        ACCOUNT,
        phone_number_id=PHONE_NUMBER_ID,
        waba_id=WABA_ID,
        access_token=access_token,
        app_secret=app_secret,
        verify_token=existing.verify_token.get_secret_value()
        if existing and existing.verify_token
        else None,
        base_url=sim,
    )
    await sync_templates(redis, settings, ACCOUNT)
    await _provision_push(redis, settings)
    await contacts.upsert(
        redis,
        ACCOUNT,
        CONTACT_ID,
        ContactBody.model_validate(
            {
                "phone": CONTACT_PHONE,
                "name": "Asha Verma",
                "email": "asha@example.com",
                "push_tokens": [
                    {"platform": "fcm", "token": DEMO_FCM_TOKEN},
                    {"platform": "apns", "token": DEMO_APNS_TOKEN},
                ],
            }
        ),
    )
    return await _demo_key(redis, settings)


def _demo_credentials(settings: Settings) -> tuple[ServiceAccount, ApnsKey]:
    """Made once and kept in .data/demo/, so the stored configuration stays valid."""
    folder = settings.data_dir / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    sa_path, key_path = folder / "service-account.json", folder / "apns-key.json"
    token_uri = f"{settings.sim_base_url}/token"
    if sa_path.exists() and key_path.exists():
        sa = ServiceAccount(**json.loads(sa_path.read_text()))
        if json.loads(sa.json).get("token_uri") == token_uri:
            return sa, ApnsKey(**json.loads(key_path.read_text()))
    sa = sim_credentials.service_account(PROJECT_ID, token_uri)
    key = sim_credentials.apns_key()
    for path, value in ((sa_path, sa), (key_path, key)):
        path.write_text(json.dumps(dataclasses.asdict(value)))
        os.chmod(path, 0o600)
    return sa, key


async def _provision_push(redis: Redis, settings: Settings) -> None:
    """FCM and APNs against the simulator's HTTP/2 + TLS port, trusting its CA."""
    sa, key = _demo_credentials(settings)
    async with httpx.AsyncClient(base_url=settings.sim_base_url, timeout=5) as client:
        response = await client.put(
            f"/_sim/fcm/projects/{PROJECT_ID}",
            json={"client_email": sa.client_email, "public_key_pem": sa.public_key_pem},
        )
        response.raise_for_status()
        response = await client.put(
            f"/_sim/apns/keys/{key.key_id}",
            json={
                "team_id": key.team_id,
                "public_key_pem": key.public_key_pem,
                "topics": [APNS_TOPIC],
            },
        )
        response.raise_for_status()
    ca_file = str((settings.sim_ca_dir / "ca.pem").resolve())
    await configure_fcm(
        redis, ACCOUNT, sa.json, endpoint=f"https://{settings.sim_tls_endpoint}", ca_file=ca_file
    )
    await configure_apns(
        redis,
        ACCOUNT,
        key_pem=key.private_key_pem,
        key_id=key.key_id,
        team_id=key.team_id,
        topic=APNS_TOPIC,
        endpoint=settings.sim_tls_endpoint,
        ca_file=ca_file,
    )


def curl_example(settings: Settings, key: str, path: str, body: dict[str, Any]) -> str:
    return (
        f"curl -X POST {settings.api_base_url}{path} \\\n"
        f"-H {shlex.quote('Authorization: Bearer ' + key)} \\\n"
        f'-H "Content-Type: application/json" \\\n'
        f"-d {shlex.quote(json.dumps(body, indent=2))}"
    )


def send_example(
    settings: Settings, key: str, path: str, body: dict[str, Any], console: Console
) -> int:
    response = httpx.post(
        f"{settings.api_base_url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=settings.send_wait_s + 5,
    )
    console.print(f"[bold]HTTP {response.status_code}[/bold]")
    console.print_json(response.text)
    return response.status_code
