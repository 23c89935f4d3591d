"""The WhatsApp send, end to end: API → Redis → Celery worker → simulator → response."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest

from tests.integration.conftest import SPEC_BODY, Tenant
from tests.support import run_async, wait_until
from worker.models import Scope
from worker.store import accounts, keys


def _spec_body(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(SPEC_BODY)
    body.update(changes)
    return body


def _message_keys(tenant: Tenant) -> list[str]:
    async def scan(redis: Any) -> list[str]:
        return [k async for k in redis.scan_iter(match=keys.message(tenant.name, "*"), count=5000)]

    result: list[str] = run_async(scan, tenant.settings)
    return result


def _assert_nothing_sent(tenant: Tenant) -> None:
    assert tenant.sim_requests() == []
    assert _message_keys(tenant) == []


def test_spec_example_is_sent_once_with_the_graph_api_shape(tenant: Tenant) -> None:
    response = tenant.send(SPEC_BODY)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["status"] == "sent"
    assert body["channel"] == "whatsapp"
    assert body["message_id"].startswith("wamid.")
    assert body["id"].startswith("msg_")

    received = tenant.sim_requests()
    assert len(received) == 1
    request = received[0]
    assert request["auth"] == "ok"
    assert request["wamid"] == body["message_id"]
    assert request["body"] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        # Echoed in the message's status webhooks: a send whose answer never came is
        # recognised by its "sent" report instead of being sent again.
        "biz_opaque_callback_data": body["id"],
        "to": "919876543210",
        "type": "template",
        "template": {
            "name": "order_confirmation",
            "language": {"code": "en"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "ORD-98765"},
                        {"type": "text", "text": "$49.99"},
                    ],
                }
            ],
        },
    }

    detail = tenant.get(f"/api/v1/messages/{body['id']}").json()
    assert detail["status"] == "sent"
    assert detail["message_id"] == body["message_id"]
    assert detail["contact_id"] == "cct_abc123"
    assert [a["outcome"] for a in detail["attempts"]] == ["sent"]


@pytest.mark.parametrize("to", ["919876543210", "+91 98765 43210", "+1999", "+19999999999", ""])
def test_bad_phone_number_is_400_and_nothing_is_enqueued(tenant: Tenant, to: str) -> None:
    response = tenant.send(_spec_body(to=to))

    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "error": "Invalid phone number format",
        "code": "invalid_phone_number",
        "field": "to",
    }
    _assert_nothing_sent(tenant)


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({k: v for k, v in SPEC_BODY.items() if k != "to"}, "to", "Field required"),
        (_spec_body(parameters=[{"type": "text"}]), "parameters[0].text", "Field required"),
        (_spec_body(parameters="ORD-1"), "parameters", "list"),
        (_spec_body(parameters=[{"type": "image", "text": "x"}]), "parameters[0].type", "'text'"),
        (_spec_body(language="english please"), "language", "pattern"),
        (_spec_body(message="hello"), "", "Exactly one of 'template_name' or 'message'"),
        (_spec_body(template_name=None), "", "Exactly one of 'template_name' or 'message'"),
    ],
)
def test_malformed_body_is_400_naming_the_field(
    tenant: Tenant, body: dict[str, Any], field: str, fragment: str
) -> None:
    response = tenant.send(body)

    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["success"] is False
    assert payload["code"] == "invalid_request"
    assert fragment in payload["error"]
    assert payload.get("field", "") == field
    if field:
        assert payload["error"].startswith(f"{field}: ")
    _assert_nothing_sent(tenant)


def test_body_that_is_not_json_is_400(tenant: Tenant) -> None:
    response = tenant.http.post(
        f"{tenant.api_url}/api/v1/channels/whatsapp/send",
        content=b"{not json",
        headers={**tenant.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    _assert_nothing_sent(tenant)


@pytest.mark.parametrize(
    ("content_type", "code"),
    [("text/plain", "invalid_request"), ("application/merge-patch+json", None), (None, None)],
)
def test_content_types_as_fastapi_reads_them(
    tenant: Tenant, content_type: str | None, code: str | None
) -> None:
    """The send routes' fast path (``SendFastPath``) reads JSON bodies by content type the way
    FastAPI does: no type or a ``+json`` type is JSON; anything else is refused."""
    body = json.dumps({**SPEC_BODY, "contact_id": None}).encode()
    headers = {**tenant.auth(), "Prefer": "respond-async"}
    if content_type:
        headers["Content-Type"] = content_type
    response = tenant.http.post(
        f"{tenant.api_url}/api/v1/channels/whatsapp/send", content=body, headers=headers
    )
    if code is None:
        assert response.status_code == 202, response.text
    else:
        assert response.status_code == 400, response.text
        assert response.json()["code"] == code
        _assert_nothing_sent(tenant)


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        (None, "Missing API key: send 'Authorization: Bearer msk_…'"),
        ("Bearer msk_not-a-real-key", "Invalid API key"),
        ("Basic dXNlcjpwYXNz", "Malformed Authorization header: expected 'Bearer msk_…'"),
    ],
)
def test_missing_or_unknown_key_is_401(
    tenant: Tenant, authorization: str | None, error: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = tenant.http.post(
        f"{tenant.api_url}/api/v1/channels/whatsapp/send", json=SPEC_BODY, headers=headers
    )
    assert response.status_code == 401
    assert response.json() == {"success": False, "error": error, "code": "unauthorized"}
    _assert_nothing_sent(tenant)


def test_revoked_key_is_401(tenant: Tenant) -> None:
    key = tenant.new_key(Scope.SEND)
    assert tenant.send(SPEC_BODY, key=key).status_code == 200

    async def revoke(redis: Any) -> None:
        record = await accounts.resolve_key(redis, key)
        assert record is not None
        await accounts.revoke_key(redis, record.id)

    run_async(revoke, tenant.settings)
    response = tenant.send(SPEC_BODY, key=key)
    assert response.status_code == 401
    assert response.json()["error"] == "This API key has been revoked"
    assert len(tenant.sim_requests()) == 1


def test_key_without_send_scope_is_403(tenant: Tenant) -> None:
    key = tenant.new_key(Scope.CONTACTS)
    response = tenant.send(SPEC_BODY, key=key)
    assert response.status_code == 403
    assert response.json() == {
        "success": False,
        "error": "This API key lacks the 'send' scope",
        "code": "insufficient_scope",
    }
    _assert_nothing_sent(tenant)


def test_account_without_whatsapp_is_403(
    stack: Any, settings: Any, sim_url: str, api_url: str, http: httpx.Client
) -> None:
    from tests.integration.conftest import make_tenant

    bare = make_tenant(settings, sim_url, api_url, http, whatsapp=False)
    response = bare.send(SPEC_BODY)
    assert response.status_code == 403
    assert response.json() == {
        "success": False,
        "error": "WhatsApp channel not configured for this account",
        "code": "channel_not_configured",
    }
    _assert_nothing_sent(bare)


def test_unknown_contact_is_404(tenant: Tenant) -> None:
    response = tenant.send(_spec_body(contact_id="cct_nobody"))
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "error": "Contact 'cct_nobody' not found",
        "code": "contact_not_found",
    }
    _assert_nothing_sent(tenant)


def test_unknown_template_is_422_naming_it(tenant: Tenant) -> None:
    response = tenant.send(_spec_body(template_name="order_cancelled"))
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "template_not_found"
    assert "'order_cancelled' (language 'en') not found" in body["error"]
    _assert_nothing_sent(tenant)


def test_template_in_another_language_is_422_listing_the_languages(tenant: Tenant) -> None:
    response = tenant.send(_spec_body(template_name="welcome", parameters=[]))
    assert response.status_code == 422
    assert response.json()["error"] == (
        "Template 'welcome' (language 'en') not found; it exists in: en_US"
    )
    _assert_nothing_sent(tenant)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_wrong_parameter_count_is_422_with_the_expected_count(tenant: Tenant, count: int) -> None:
    params = [{"type": "text", "text": f"p{i}"} for i in range(count)]
    response = tenant.send(_spec_body(parameters=params))
    assert response.status_code == 422
    assert response.json() == {
        "success": False,
        "error": f"Template 'order_confirmation' (en) expects 2 parameter(s), got {count}",
        "code": "template_parameter_mismatch",
        "expected_parameters": 2,
    }
    _assert_nothing_sent(tenant)


def test_paused_template_is_422(tenant: Tenant) -> None:
    response = tenant.send(
        _spec_body(template_name="spring_sale", parameters=[{"type": "text", "text": "x"}])
    )
    assert response.status_code == 422
    assert response.json()["code"] == "template_not_approved"
    _assert_nothing_sent(tenant)


def test_free_form_outside_the_window_is_422_template_required(tenant: Tenant) -> None:
    response = tenant.send({"to": "+919876543210", "message": "Your order shipped"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "template_required"
    assert "24 hours" in body["error"]
    _assert_nothing_sent(tenant)


def test_free_form_is_sent_after_a_signed_inbound_webhook(tenant: Tenant) -> None:
    result = tenant.inbound("+919876543210", "Where is my order?")
    assert result["webhook_status"] == 200

    response = tenant.send({"to": "+919876543210", "message": "It ships today."})

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "sent"
    [request] = tenant.sim_requests()
    assert request["body"]["type"] == "text"
    assert request["body"]["text"]["body"] == "It ships today."
    # The window is per customer number: another number still needs a template.
    other = tenant.send({"to": "+14155552671", "message": "Hello"})
    assert other.status_code == 422


def _webhook(tenant: Tenant, **value: Any) -> bytes:
    """A Meta webhook payload for the tenant's number, ``value`` holding messages/statuses."""
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": tenant.waba_id,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550000000",
                                    "phone_number_id": tenant.phone_number_id,
                                },
                                **value,
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


def _post_signed(tenant: Tenant, raw: bytes, secret: str | None = None) -> httpx.Response:
    key = (secret or tenant.app_secret).encode()
    signature = "sha256=" + hmac.new(key, raw, hashlib.sha256).hexdigest()
    return tenant.http.post(
        f"{tenant.api_url}/webhooks/whatsapp",
        content=raw,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
    )


def _inbound_payload(tenant: Tenant, sender: str) -> bytes:
    return _webhook(
        tenant,
        messages=[
            {
                "from": sender,
                "id": "wamid.in1",
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": "hi"},
            }
        ],
    )


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "wrong-secret"])
def test_webhook_with_bad_signature_is_rejected_and_opens_nothing(
    tenant: Tenant, signature: str | None
) -> None:
    raw = _inbound_payload(tenant, "919876543210")
    headers = {"Content-Type": "application/json"}
    if signature == "wrong-secret":
        signature = "sha256=" + hmac.new(b"not-the-secret", raw, hashlib.sha256).hexdigest()
    if signature:
        headers["X-Hub-Signature-256"] = signature

    response = tenant.http.post(f"{tenant.api_url}/webhooks/whatsapp", content=raw, headers=headers)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    after = tenant.send({"to": "+919876543210", "message": "hello"})
    assert after.status_code == 422
    assert after.json()["code"] == "template_required"


def test_webhook_signed_with_the_app_secret_opens_the_window(tenant: Tenant) -> None:
    response = _post_signed(tenant, _inbound_payload(tenant, "14155552671"))
    assert response.status_code == 200
    assert response.json()["messages"] == 1

    sent = tenant.send({"to": "+14155552671", "message": "hello"})

    # Our window is open, so the send reaches the provider. This payload was posted to
    # us directly, so the simulated Meta never saw the customer write, and refuses it
    # with 131047, which comes back as the provider's own reason.
    assert [r["body"]["type"] for r in tenant.sim_requests()] == ["text"]
    assert sent.status_code == 422
    assert sent.json()["code"] == "reengagement_window_closed"
    assert sent.json()["provider_code"] == "131047"


def test_webhook_verification_handshake(tenant: Tenant) -> None:
    url = f"{tenant.api_url}/webhooks/whatsapp"
    ok = tenant.http.get(
        url,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": f"verify-{tenant.name}",
            "hub.challenge": "1158201444",
        },
    )
    assert ok.status_code == 200
    assert ok.text == "1158201444"
    bad = tenant.http.get(
        url, params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
    )
    assert bad.status_code == 403


def test_provider_500_then_success_is_sent_after_a_retry(tenant: Tenant) -> None:
    tenant.fault(kind="http", http_status=500, body="<html>Internal Server Error</html>", count=1)

    response = tenant.send(SPEC_BODY)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "sent"
    received = tenant.sim_requests()
    assert [r["status"] for r in received] == [500, 200]
    detail = tenant.get(f"/api/v1/messages/{response.json()['id']}").json()
    assert [a["outcome"] for a in detail["attempts"]] == ["retry", "sent"]
    assert detail["attempts"][0]["code"] == "provider_unavailable"


def test_rate_limit_429_with_retry_after_is_honoured(tenant: Tenant) -> None:
    tenant.fault(kind="error", code=130429, retry_after_s=1, count=1)

    started = time.monotonic()
    response = tenant.send(SPEC_BODY)

    assert response.status_code == 200, response.text
    received = tenant.sim_requests()
    assert [r["status"] for r in received] == [429, 200]
    assert received[1]["at"] - received[0]["at"] >= 1.0
    assert time.monotonic() - started >= 1.0
    detail = tenant.get(f"/api/v1/messages/{response.json()['id']}").json()
    assert detail["attempts"][0]["provider_code"] == "130429"
    assert detail["attempts"][0]["retry_in_s"] >= 1.0


def test_provider_timeout_is_retried(tenant: Tenant) -> None:
    # The worker gives up after 3 s (DISPATCH_PROVIDER_TIMEOUT_S) and tries again.
    tenant.fault(kind="timeout", delay_s=4, count=1)

    response = tenant.send(SPEC_BODY)

    assert response.status_code == 200, response.text
    detail = tenant.get(f"/api/v1/messages/{response.json()['id']}").json()
    assert [a["code"] for a in detail["attempts"] if a["outcome"] == "retry"] == [
        "provider_timeout"
    ]


def test_a_send_whose_answer_never_came_is_confirmed_by_its_status_report_not_sent_twice(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    tenant.auto_status()
    warm = tenant.send(SPEC_BODY).json()  # the number's status reports reach the API
    wait_until(
        lambda: (
            tenant.get(f"/api/v1/messages/{warm['id']}").json()["delivery_status"] == "delivered"
        ),
        10,
        "the first message's delivered report",
    )
    # The provider takes the next send but answers after the worker gave up on it (3 s).
    tenant.fault(kind="delay", delay_s=4, count=1)
    message_id = tenant.send(SPEC_BODY, Prefer="respond-async").json()["id"]
    # Another account's signed report naming this message changes nothing of it.
    stray = {"id": "wamid.STRAY", "status": "sent", "timestamp": str(int(time.time()))}
    raw = _webhook(other_tenant, statuses=[{**stray, "biz_opaque_callback_data": message_id}])
    assert _post_signed(other_tenant, raw).status_code == 200

    def sent() -> dict[str, Any] | None:
        detail: dict[str, Any] = tenant.get(f"/api/v1/messages/{message_id}").json()
        return detail if detail["status"] == "sent" else None

    detail = wait_until(sent, 30, "the message to be recorded sent")

    def all_answered() -> list[dict[str, Any]] | None:
        requests = tenant.sim_requests()
        return requests if all("status" in r for r in requests) else None

    # Every request the provider got, once answered (the late one included).
    answered = wait_until(all_answered, 10, "the provider to answer every request")
    received = [r for r in answered if r["status"] == 200]
    assert len(received) == 2  # the first message, and this one once: never a second copy
    late = received[1]
    assert late["fault"] == "delay"
    assert late["body"]["biz_opaque_callback_data"] == message_id
    assert detail["message_id"] == late["wamid"]
    attempts = [
        (a["attempt"], a["outcome"], a.get("code"), a.get("confirmed_by"))
        for a in detail["attempts"]
    ]
    assert attempts == [(1, "retry", "provider_timeout", None), (1, "sent", None, "status_report")]
    # The reports held while the wamid was unknown are applied once it is recorded.
    wait_until(
        lambda: (
            tenant.get(f"/api/v1/messages/{message_id}").json()["delivery_status"] == "delivered"
        ),
        10,
        "the late message's delivered report",
    )


def test_undeliverable_recipient_fails_with_the_reason(tenant: Tenant) -> None:
    tenant.fault(kind="error", code=131026, count=None, match={"to": "919876543210"})

    response = tenant.send(SPEC_BODY)

    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False
    assert body["status"] == "failed"
    assert body["code"] == "recipient_undeliverable"
    assert body["provider_code"] == "131026"
    assert "Message undeliverable" in body["error"]
    assert len(tenant.sim_requests()) == 1  # a permanent error is not retried
    tenant.http.delete(f"{tenant.sim_url}/_sim/faults")


def test_retries_exhausted_fails_with_502(tenant: Tenant) -> None:
    tenant.fault(kind="http", http_status=503, count=None)
    try:
        response = tenant.send(SPEC_BODY)
    finally:
        tenant.http.delete(f"{tenant.sim_url}/_sim/faults")

    assert response.status_code == 502
    assert response.json()["code"] == "provider_unavailable"
    assert len(tenant.sim_requests()) == 3  # DISPATCH_WHATSAPP_MAX_ATTEMPTS


def test_provider_rejecting_the_template_is_422(tenant: Tenant) -> None:
    # The template was deleted on Meta's side after our last sync.
    tenant.fault(kind="error", code=132001, count=1)
    response = tenant.send(SPEC_BODY)
    assert response.status_code == 422
    assert response.json()["code"] == "template_not_found"
    assert response.json()["provider_code"] == "132001"


def test_respond_async_answers_202_at_once(tenant: Tenant) -> None:
    tenant.fault(kind="delay", delay_s=1, count=1)

    response = tenant.send(SPEC_BODY, Prefer="respond-async")

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["success"] is True

    def sent() -> dict[str, Any] | None:
        detail: dict[str, Any] = tenant.get(f"/api/v1/messages/{body['id']}").json()
        return detail if detail["status"] == "sent" else None

    detail = wait_until(sent, 10, "the message to be sent")
    assert detail["message_id"].startswith("wamid.")


def test_send_still_pending_after_the_wait_budget_is_202_queued(tenant: Tenant) -> None:
    # The API waits DISPATCH_SEND_WAIT_S (5 s here); the provider asks for 6 s of patience.
    tenant.fault(kind="error", code=130429, retry_after_s=6, count=1)

    started = time.monotonic()
    response = tenant.send(SPEC_BODY)

    assert 4.5 <= time.monotonic() - started < 6
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    message_id = response.json()["id"]
    wait_until(
        lambda: tenant.get(f"/api/v1/messages/{message_id}").json()["status"] == "sent",
        10,
        "the delayed send",
    )


def test_another_accounts_key_cannot_read_or_send_to_this_accounts_contacts(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    tenant.http.patch(
        f"{tenant.api_url}/api/v1/contacts/cct_private",
        json={"phone": "+14155552671", "name": "Private"},
        headers=tenant.auth(),
    ).raise_for_status()
    sent = tenant.send(SPEC_BODY).json()

    assert other_tenant.get("/api/v1/contacts/cct_private").status_code == 404
    response = other_tenant.send(_spec_body(to="+14155552671", contact_id="cct_private"))
    assert response.status_code == 404
    assert response.json()["code"] == "contact_not_found"
    assert other_tenant.get(f"/api/v1/messages/{sent['id']}").status_code == 404
    deleted = other_tenant.http.delete(
        f"{other_tenant.api_url}/api/v1/contacts/cct_private", headers=other_tenant.auth()
    )
    assert deleted.status_code == 404
    # The owner still sees all of it.
    assert tenant.get("/api/v1/contacts/cct_private").json()["contact"]["name"] == "Private"
    assert tenant.get(f"/api/v1/messages/{sent['id']}").status_code == 200
    assert other_tenant.sim_requests() == []


def test_status_webhooks_record_delivery(tenant: Tenant) -> None:
    sent = tenant.send(SPEC_BODY).json()
    wamid = sent["message_id"]

    def post_status(status: str) -> httpx.Response:
        raw = _webhook(
            tenant,
            statuses=[
                {
                    "id": wamid,
                    "status": status,
                    "timestamp": str(int(time.time())),
                    "recipient_id": "919876543210",
                }
            ],
        )
        return _post_signed(tenant, raw)

    assert post_status("delivered").json()["statuses"] == 1
    # Out of order: a late "sent" does not move the message back.
    assert post_status("sent").json()["statuses"] == 0
    assert post_status("read").json()["statuses"] == 1
    detail = tenant.get(f"/api/v1/messages/{sent['id']}").json()
    assert detail["delivery_status"] == "read"


def test_unknown_message_is_404(tenant: Tenant) -> None:
    response = tenant.get("/api/v1/messages/msg_doesnotexist")
    assert response.status_code == 404
    assert response.json()["code"] == "message_not_found"
