"""What the service shows, and to whom: no tenant's names on operator surfaces, no
internals in errors, no secret or whole token read back, no guessable Flower login, and
no account name or id that reaches another record."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.conftest import SPEC_BODY, PushTenant, Tenant
from tests.security.conftest import ApiFactory
from tests.support import dispatch
from worker.masking import mask_token
from worker.stack.processes import free_port


def test_an_account_named_like_the_services_own_records_is_refused(
    stack: dict[str, Any], service_env: dict[str, str], api_url: str
) -> None:
    for name in ("workers", "apikey", "rl", "delayed", "unstarted"):
        created = dispatch(service_env, "accounts", "create", name)
        assert created.returncode != 0, name
        assert "reserved" in created.stderr
    assert httpx.get(f"{api_url}/readyz", timeout=5).status_code == 200


def test_an_id_of_another_shape_is_404_never_500(tenant: Tenant) -> None:
    assert tenant.send(SPEC_BODY).status_code == 200
    for path in (
        "/api/v1/messages/x:attempts",
        "/api/v1/messages/msg_x:attempts",
        "/api/v1/messages/..%2F..%2Fapikey",
    ):
        response = tenant.get(path)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["success"] is False
    redriven = tenant.http.post(
        f"{tenant.api_url}/api/v1/dead-letters/x:attempts/redrive", headers=tenant.auth()
    )
    assert redriven.status_code == 404


def test_a_webhook_steps_secret_is_write_only(tenant: Tenant) -> None:
    created = tenant.http.post(
        f"{tenant.api_url}/api/v1/automations",
        json={
            "name": "hook",
            "trigger": {"type": "manual"},
            "steps": [
                {"type": "webhook", "url": "https://example.com/h", "secret": "whsec-TOPSECRET1"}
            ],
        },
        headers=tenant.auth(),
    )
    assert created.status_code == 201, created.text
    listed = tenant.get("/api/v1/automations")
    one = tenant.get(f"/api/v1/automations/{created.json()['automation']['id']}")
    for response in (created, listed, one):
        assert "whsec-TOPSECRET1" not in response.text
    assert one.json()["automation"]["steps"][0]["secret_set"] is True


def test_push_tokens_are_masked_in_every_view(push_tenant: PushTenant) -> None:
    token = "fXDtJ9kS:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx7dPqnZ01"
    registered = push_tenant.register("cct_abc123", ("fcm", token))
    sent = push_tenant.push({"contact_id": "cct_abc123", "title": "t", "message": "m"})
    detail = push_tenant.get(f"/api/v1/messages/{sent.json()['id']}")
    contact = push_tenant.get("/api/v1/contacts/cct_abc123")
    for response in (registered, sent, detail, contact):
        assert token not in response.text
    assert mask_token(token) in contact.text


def test_metrics_name_no_tenant_unless_asked_and_can_need_a_token(
    tenant: Tenant, api_url: str, api_process: ApiFactory
) -> None:
    assert tenant.send(SPEC_BODY).status_code == 200
    scraped = httpx.get(f"{api_url}/metrics", timeout=10).text
    assert "dispatch_dead_letters" in scraped
    assert tenant.name not in scraped
    assert 'account="' not in scraped
    guarded = api_process(
        DISPATCH_METRICS_TOKEN="scrape-token-123456", DISPATCH_METRICS_TENANT_LABELS="true"
    )
    assert httpx.get(f"{guarded}/metrics", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.get(f"{guarded}/metrics", headers=wrong, timeout=10).status_code == 401
    right = {"Authorization": "Bearer scrape-token-123456"}
    allowed = httpx.get(f"{guarded}/metrics", headers=right, timeout=10)
    assert allowed.status_code == 200
    assert "dispatch_queue_depth" in allowed.text


def test_docs_only_when_asked_for(api_url: str, api_process: ApiFactory) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(f"{api_url}{path}", timeout=10).status_code == 404
    with_docs = api_process(DISPATCH_API_DOCS="true")
    assert httpx.get(f"{with_docs}/docs", timeout=10).status_code == 200
    assert "/api/v1/channels/whatsapp/send" in httpx.get(f"{with_docs}/openapi.json").text


def test_readyz_and_the_cli_keep_redis_internals_to_themselves(
    api_process: ApiFactory, service_env: dict[str, str]
) -> None:
    dead = f"redis://:hunter2-redis-password@127.0.0.1:{free_port()}/0"
    api = api_process(wait_path="/healthz", DISPATCH_REDIS_URL=dead)
    ready = httpx.get(f"{api}/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["reasons"] == ["Redis unreachable"]
    assert "hunter2" not in ready.text
    assert "127.0.0.1" not in ready.text
    listed = dispatch({**service_env, "DISPATCH_REDIS_URL": dead}, "accounts", "list")
    assert listed.returncode == 1
    assert "cannot reach Redis" in listed.stderr
    assert "hunter2" not in listed.stderr + listed.stdout
    assert ":***@" in listed.stderr


def test_flower_refuses_a_weak_or_example_password(service_env: dict[str, str]) -> None:
    for auth in ("ops:short", "ops:change-me", "ops:"):
        done = dispatch({**service_env, "DISPATCH_FLOWER_BASIC_AUTH": auth}, "flower", timeout_s=30)
        assert done.returncode == 2, (auth, done.stderr)
        assert "secrets.token_urlsafe" in done.stderr


def test_a_contact_id_in_a_body_that_names_another_record_is_400(tenant: Tenant) -> None:
    """'cct_abc123:tags' would address the contact's tag set under the contact's key."""
    for path, body in (
        ("/api/v1/track/event", {"contact_id": "cct_abc123:tags", "event": "e"}),
        ("/api/v1/contacts", {"id": "cct_abc123:tags"}),
    ):
        response = tenant.http.post(f"{tenant.api_url}{path}", json=body, headers=tenant.auth())
        assert response.status_code == 400, (path, response.text)
        assert response.json()["field"] in ("contact_id", "id")
