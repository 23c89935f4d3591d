"""An account per test, wired to the simulator exactly as an operator would wire it."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import _http_ok
from tests.support import (
    Service,
    http_client,
    register_push_credentials,
    run_async,
    wait_until,
)
from worker.config import FcmSenderName, Settings
from worker.models import ContactBody, Scope
from worker.services.provisioning import (
    configure_apns,
    configure_fcm,
    configure_whatsapp,
    sync_templates,
)
from worker.sim import credentials as sim_credentials
from worker.stack.processes import free_port
from worker.store import accounts, contacts

_numbers = itertools.count(1)

TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "order_confirmation",
        "language": "en",
        "body_text": "Your order {{1}} is confirmed. Total: {{2}}.",
    },
    {"name": "shipping_update", "language": "en", "body_text": "Order {{1}} has shipped."},
    # Other languages of it: a contact's locale picks among them (test_audience.py).
    {"name": "shipping_update", "language": "pt_BR", "body_text": "Pedido {{1}} enviado."},
    {"name": "shipping_update", "language": "es", "body_text": "Pedido {{1}} enviado."},
    {
        "name": "welcome",
        "language": "en_US",
        "category": "MARKETING",
        "body_text": "Welcome aboard!",
    },
    {"name": "spring_sale", "language": "en", "status": "PAUSED", "body_text": "Sale {{1}}"},
]

SPEC_BODY: dict[str, Any] = {
    "to": "+919876543210",
    "contact_id": "cct_abc123",
    "template_name": "order_confirmation",
    "parameters": [
        {"type": "text", "text": "ORD-98765"},
        {"type": "text", "text": "$49.99"},
    ],
}


@dataclass
class Tenant:
    """One account with WhatsApp configured against the simulator, and an all-scopes key."""

    name: str
    key: str
    phone_number_id: str
    waba_id: str
    access_token: str
    app_secret: str
    api_url: str
    sim_url: str
    settings: Settings
    http: httpx.Client = field(repr=False)

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def send(self, body: Any, key: str | None = None, **headers: str) -> httpx.Response:
        return self.http.post(
            f"{self.api_url}/api/v1/channels/whatsapp/send",
            json=body,
            headers={**self.auth(key), **headers},
        )

    def get(self, path: str, key: str | None = None) -> httpx.Response:
        return self.http.get(f"{self.api_url}{path}", headers=self.auth(key))

    def auto_status(self) -> None:
        """Have the simulator post "sent" then "delivered" status webhooks to the API after
        each accepted message, as Meta does (the number's spec again, with auto_status)."""
        self.http.put(
            f"{self.sim_url}/_sim/whatsapp/numbers/{self.phone_number_id}",
            json={
                "waba_id": self.waba_id,
                "access_token": self.access_token,
                "app_secret": self.app_secret,
                "webhook_url": f"{self.api_url}/webhooks/whatsapp",
                "auto_status": True,
            },
        ).raise_for_status()

    def sim_requests(self) -> list[dict[str, Any]]:
        """What the simulator received for this account's phone number."""
        body = self.http.get(f"{self.sim_url}/_sim/requests", params={"channel": "whatsapp"}).json()
        return [
            r
            for r in body["requests"]
            if r.get("phone_number_id") == self.phone_number_id and r["method"] == "POST"
        ]

    def fault(self, **spec: Any) -> None:
        spec.setdefault("match", {}).setdefault("phone_number_id", self.phone_number_id)
        self.http.post(f"{self.sim_url}/_sim/faults", json=spec).raise_for_status()

    def inbound(self, sender: str, text: str = "Hi there") -> dict[str, Any]:
        response = self.http.post(
            f"{self.sim_url}/_sim/whatsapp/inbound",
            json={"phone_number_id": self.phone_number_id, "from": sender, "text": text},
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def new_key(self, *scopes: Scope) -> str:
        async def create(redis: Redis) -> str:
            secret, _ = await accounts.create_key(redis, self.name, list(scopes))
            return secret

        result: str = run_async(create, self.settings)
        return result


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with http_client() as client:
        yield client


def make_tenant(
    settings: Settings,
    sim_url: str,
    api_url: str,
    http: httpx.Client,
    *,
    whatsapp: bool = True,
    rate_per_s: float | None = None,
) -> Tenant:
    n = next(_numbers)
    name = f"acct{n}-{id(http) % 10000}"
    phone_number_id = f"10{n:013d}"
    waba_id = f"20{n:013d}"
    access_token = f"EAAtest{n}token"
    app_secret = f"appsecret{n}"
    http.put(
        f"{sim_url}/_sim/whatsapp/numbers/{phone_number_id}",
        json={
            "waba_id": waba_id,
            "access_token": access_token,
            "app_secret": app_secret,
            "webhook_url": f"{api_url}/webhooks/whatsapp",
            # A number whose cap is raised is one Meta upgraded (80/s by default).
            **({"throughput_per_s": rate_per_s} if rate_per_s else {}),
        },
    ).raise_for_status()
    http.post(
        f"{sim_url}/_sim/whatsapp/templates",
        json=[{"waba_id": waba_id, **t} for t in TEMPLATES],
    ).raise_for_status()

    async def provision(redis: Redis) -> str:
        await accounts.create_account(redis, name)
        if whatsapp:
            await configure_whatsapp(
                redis,
                settings,
                name,
                phone_number_id=phone_number_id,
                waba_id=waba_id,
                access_token=access_token,
                app_secret=app_secret,
                verify_token=f"verify-{name}",
                base_url=sim_url,
                rate_per_s=rate_per_s,
            )
            await sync_templates(redis, settings, name)
        await contacts.upsert(
            redis, name, "cct_abc123", ContactBody(phone="+919876543210", name="Asha")
        )
        secret, _ = await accounts.create_key(redis, name, list(Scope))
        return secret

    key = run_async(provision, settings)
    return Tenant(
        name,
        key,
        phone_number_id,
        waba_id,
        access_token,
        app_secret,
        api_url,
        sim_url,
        settings,
        http,
    )


@pytest.fixture
def tenant(
    stack: dict[str, Any], settings: Settings, sim_url: str, api_url: str, http: httpx.Client
) -> Tenant:
    return make_tenant(settings, sim_url, api_url, http)


@pytest.fixture
def other_tenant(
    stack: dict[str, Any], settings: Settings, sim_url: str, api_url: str, http: httpx.Client
) -> Tenant:
    return make_tenant(settings, sim_url, api_url, http)


TOPIC = "com.example.app"
FCM_TOKEN_1 = "fXDtJ9kS:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx7dPqnZ01"
APNS_TOKEN_1 = "a8b2cd3e" * 8


@dataclass
class PushTenant(Tenant):
    project_id: str = ""
    key_id: str = ""

    def push(self, body: Any, key: str | None = None, **headers: str) -> httpx.Response:
        return self.http.post(
            f"{self.api_url}/api/v1/channels/push/send",
            json=body,
            headers={**self.auth(key), **headers},
        )

    def register(self, contact_id: str, *tokens: tuple[str, str]) -> httpx.Response:
        return self.http.patch(
            f"{self.api_url}/api/v1/contacts/{contact_id}",
            json={"push_tokens": [{"platform": p, "token": t} for p, t in tokens]},
            headers=self.auth(),
        )

    def push_requests(self, channel: str | None = None) -> list[dict[str, Any]]:
        """FCM and APNs requests the simulator received for this tenant's project/topic."""
        out = []
        for ch in [channel] if channel else ["fcm", "apns"]:
            body = self.http.get(f"{self.sim_url}/_sim/requests", params={"channel": ch}).json()
            out += [
                r
                for r in body["requests"]
                if r.get("project_id") == self.project_id or r.get("topic") == self.topic
            ]
        return sorted(out, key=lambda r: r["seq"])

    @property
    def topic(self) -> str:
        return f"{TOPIC}.{self.name}"

    def push_fault(self, channel: str, **spec: Any) -> None:
        match = spec.setdefault("match", {})
        if channel == "fcm":
            match.setdefault("project_id", self.project_id)
        else:
            match.setdefault("topic", self.topic)
        spec["channel"] = channel
        self.http.post(f"{self.sim_url}/_sim/faults", json=spec).raise_for_status()


def make_push_tenant(
    settings: Settings,
    sim_url: str,
    api_url: str,
    http: httpx.Client,
    tls_port: int,
    ca_file: Path,
    *,
    fcm: bool = True,
    apns: bool = True,
    fcm_sender: FcmSenderName | None = None,
) -> PushTenant:
    base = make_tenant(settings, sim_url, api_url, http)
    project_id = f"proj-{base.name}"
    sa = sim_credentials.service_account(project_id, f"{sim_url}/token")
    key = sim_credentials.apns_key()
    tenant = PushTenant(**{**base.__dict__, "project_id": project_id, "key_id": key.key_id})
    register_push_credentials(http, sim_url, project_id, sa, key, [tenant.topic])

    async def configure(redis: Redis) -> None:
        if fcm:
            await configure_fcm(
                redis,
                base.name,
                sa.json,
                endpoint=f"https://127.0.0.1:{tls_port}",
                ca_file=str(ca_file),
                sender=fcm_sender,
            )
        if apns:
            await configure_apns(
                redis,
                base.name,
                key_pem=key.private_key_pem,
                key_id=key.key_id,
                team_id=key.team_id,
                topic=tenant.topic,
                endpoint=f"127.0.0.1:{tls_port}",
                ca_file=str(ca_file),
            )

    run_async(configure, settings)
    return tenant


@pytest.fixture
def fcm_sender() -> FcmSenderName | None:
    """The FCM sender of the tenants a test makes (None: the workers' DISPATCH_FCM_SENDER).
    The push modules override it to run every test with each sender (``FCM_SENDERS``)."""
    return None


@pytest.fixture
def push_tenant_factory(
    stack: dict[str, Any],
    settings: Settings,
    sim_url: str,
    api_url: str,
    http: httpx.Client,
    sim_tls_port: int,
    sim_ca_file: Path,
    fcm_sender: FcmSenderName | None,
) -> Callable[..., PushTenant]:
    """Make a push tenant with some platforms left out: ``factory(apns=False)``."""

    def factory(**platforms: bool) -> PushTenant:
        return make_push_tenant(
            settings,
            sim_url,
            api_url,
            http,
            sim_tls_port,
            sim_ca_file,
            fcm_sender=fcm_sender,
            **platforms,
        )

    return factory


@pytest.fixture
def push_tenant(push_tenant_factory: Callable[..., PushTenant]) -> PushTenant:
    """A tenant with WhatsApp, FCM and APNs configured against the simulator."""
    return push_tenant_factory()


ApiFactory = Callable[..., str]


@pytest.fixture
def api_process(
    stack: dict[str, Any], service_env: dict[str, str], tmp_path: Path
) -> Iterator[ApiFactory]:
    """``api_process(DISPATCH_X="…")``: another API process on the same store, with
    those settings; its URL."""
    started: list[Service] = []

    def start(wait_path: str = "/healthz", **env: str) -> str:
        port = free_port()
        service = Service(
            f"api-{len(started)}",
            [sys.executable, "-m", "worker.cli", "api", "--port", str(port)],
            {**service_env, **env},
            tmp_path / f"api-{len(started)}.log",
        )
        started.append(service)
        url = f"http://127.0.0.1:{port}"
        wait_until(_http_ok(f"{url}{wait_path}", service), 30, "the extra API")
        return url

    yield start
    for service in started:
        service.stop()
