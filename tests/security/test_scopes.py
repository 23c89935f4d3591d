"""A scope grants what its name says: the send key a web app holds sends and reads where
its sends stand, nothing more."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from tests.integration.conftest import SPEC_BODY, Tenant
from tests.support import dispatch, run_async
from worker.models import ApiKeyRecord, Scope
from worker.store import accounts, keys

CAMPAIGN = {
    "name": "everyone",
    "channel": "whatsapp",
    "content": {"template_name": "shipping_update", "parameters": ["X-1"]},
    "audience": {"all": True},
}


def _post(tenant: Tenant, path: str, key: str, body: Any = None) -> Any:
    return tenant.http.post(f"{tenant.api_url}{path}", json=body, headers=tenant.auth(key))


def test_a_send_key_cannot_touch_campaigns_contacts_or_automations(tenant: Tenant) -> None:
    send = tenant.new_key(Scope.SEND)
    created = _post(tenant, "/api/v1/campaigns", send, CAMPAIGN)
    assert created.status_code == 403, created.text
    assert created.json()["code"] == "insufficient_scope"
    campaign = _post(tenant, "/api/v1/campaigns", tenant.key, CAMPAIGN).json()["campaign"]
    for method, path in (
        ("POST", f"/api/v1/campaigns/{campaign['id']}/send"),
        ("POST", f"/api/v1/campaigns/{campaign['id']}/cancel"),
        ("DELETE", f"/api/v1/campaigns/{campaign['id']}"),
        ("GET", f"/api/v1/campaigns/{campaign['id']}"),
        ("GET", "/api/v1/campaigns"),
        ("GET", "/api/v1/contacts/cct_abc123"),
        ("GET", "/api/v1/automations"),
        ("GET", "/api/v1/dead-letters"),
        ("GET", "/api/v1/keys"),
        ("POST", "/api/v1/keys"),
    ):
        response = tenant.http.request(method, f"{tenant.api_url}{path}", headers=tenant.auth(send))
        assert response.status_code == 403, (method, path, response.text)
    assert tenant.get(f"/api/v1/campaigns/{campaign['id']}").json()["campaign"]["status"] == "draft"
    campaigns_key = tenant.new_key(Scope.CAMPAIGNS)
    assert _post(tenant, "/api/v1/campaigns", campaigns_key, CAMPAIGN).status_code == 201


def test_a_send_key_reads_where_its_send_stands_but_not_what_it_said(tenant: Tenant) -> None:
    send = tenant.new_key(Scope.SEND)
    sent = tenant.send(SPEC_BODY, key=send)
    assert sent.status_code == 200, sent.text
    seen = tenant.get(f"/api/v1/messages/{sent.json()['id']}", key=send)
    assert seen.status_code == 200
    body = seen.json()
    assert (body["status"], body["channel"]) == ("sent", "whatsapp")
    assert "ORD-98765" not in seen.text  # a parameter
    assert "9876543210" not in seen.text  # the recipient
    assert body["to"] == "+91******3210"
    full = tenant.get(f"/api/v1/messages/{sent.json()['id']}").json()
    assert full["parameters"] == ["ORD-98765", "$49.99"]
    assert full["to"] == "+919876543210"


def test_a_key_made_before_the_campaigns_scope_keeps_working(
    tenant: Tenant, service_env: dict[str, str]
) -> None:
    """Migration: a `send` key stored by an earlier version (no scopes_version) may still
    manage campaigns, so no client breaks on upgrade; `dispatch keys list` flags it."""
    secret = tenant.new_key(Scope.SEND)

    async def make_legacy(redis: Redis) -> None:
        key_hash = accounts.hash_key(secret)
        record = ApiKeyRecord.model_validate_json(await redis.get(keys.api_key(key_hash)))
        await redis.set(keys.api_key(key_hash), record.model_dump_json(exclude={"scopes_version"}))

    run_async(make_legacy, tenant.settings)  # before the API ever saw the key
    assert _post(tenant, "/api/v1/campaigns", secret, CAMPAIGN).status_code == 201
    assert tenant.get("/api/v1/contacts/cct_abc123", key=secret).status_code == 403
    listed = dispatch(service_env, "keys", "list", "--account", tenant.name)
    assert "legacy send" in listed.stdout
