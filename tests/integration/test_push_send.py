"""Push end to end: API → Redis → Celery worker → firebase-admin / aioapns → simulator."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import (
    APNS_TOKEN_1,
    FCM_TOKEN_1,
    PushTenant,
)
from tests.support import run_async
from worker.config import FCM_SENDERS, Settings
from worker.masking import mask_token
from worker.models import Scope
from worker.providers import fcm_lean
from worker.store import accounts, tokens

SPEC_PUSH: dict[str, Any] = {
    "contact_id": "cct_abc123",
    "title": "Your order has shipped!",
    "message": "Order #ORD-98765 is on its way.",
    "url": "https://yourapp.com/orders/98765",
    "icon": "https://yourapp.com/icons/shipping.png",
}
FCM_TOKEN_2 = "eYq1:APA91bGk7Zq-second-device-token-0123456789"
APNS_TOKEN_2 = "0f" * 32


@pytest.fixture(params=FCM_SENDERS)
def fcm_sender(request: pytest.FixtureRequest) -> str:
    """Every test here runs with each FCM sender: firebase-admin's, and our transport."""
    return str(request.param)


def _push(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(SPEC_PUSH)
    body.update(changes)
    return body


def _registered(tenant: PushTenant, *pairs: tuple[str, str], contact: str = "cct_abc123") -> None:
    response = tenant.register(contact, *pairs)
    assert response.status_code in (200, 201), response.text


def _summary(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in ("success", "delivered", "failed", "device_count", "channel")}


def _contact_tokens(tenant: PushTenant, contact: str = "cct_abc123") -> dict[str, dict[str, Any]]:
    contact_body = tenant.get(f"/api/v1/contacts/{contact}").json()["contact"]
    # Keyed by the full token the test registered (the view shows them masked).
    registered = {mask_token(t): t for t in (FCM_TOKEN_1, FCM_TOKEN_2, APNS_TOKEN_1, APNS_TOKEN_2)}
    return {registered.get(t["token"], t["token"]): t for t in contact_body["push_tokens"]}


def test_spec_push_example_reaches_both_devices_in_their_own_shapes(
    push_tenant: PushTenant, fcm_sender: str
) -> None:
    _registered(push_tenant, ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1))

    response = push_tenant.push(SPEC_PUSH)

    assert response.status_code == 200, response.text
    body = response.json()
    assert _summary(body) == {
        "success": True,
        "delivered": 2,
        "failed": 0,
        "device_count": 2,
        "channel": "push",
    }
    assert body["status"] == "sent"
    assert {(r["platform"], r["status"]) for r in body["results"]} == {
        ("fcm", "delivered"),
        ("apns", "delivered"),
    }
    # Tokens never come back whole in a send's answer.
    assert FCM_TOKEN_1 not in response.text
    assert APNS_TOKEN_1 not in response.text

    [fcm] = push_tenant.push_requests("fcm")
    assert fcm["auth"] == "ok"
    # Posted by the sender under test: firebase-admin's httpx client, or our transport.
    client = {"firebase-admin": "python-httpx/", "lean": fcm_lean.USER_AGENT}[fcm_sender]
    assert fcm["user_agent"].startswith(client)
    assert fcm["body"] == {
        "message": {
            # A registration token goes in `token` (`fid` only takes an installation id).
            "token": FCM_TOKEN_1,
            "notification": {"title": SPEC_PUSH["title"], "body": SPEC_PUSH["message"]},
            "data": {"url": SPEC_PUSH["url"], "icon": SPEC_PUSH["icon"]},
            "webpush": {
                # The message's id as its collapse identity: sent again after a crash, it
                # replaces the notification shown instead of showing a second one.
                "notification": {"icon": SPEC_PUSH["icon"], "tag": body["id"]},
                "fcm_options": {"link": SPEC_PUSH["url"]},
            },
            "android": {"collapse_key": body["id"], "notification": {"tag": body["id"]}},
            "apns": {"headers": {"apns-collapse-id": body["id"]}},
        }
    }
    [apns] = push_tenant.push_requests("apns")
    assert apns["auth"] == "ok"
    assert apns["token"] == APNS_TOKEN_1
    assert apns["topic"] == push_tenant.topic
    assert apns["push_type"] == "alert"
    assert apns["collapse_id"] == body["id"]
    assert apns["body"] == {
        "aps": {
            "alert": {"title": SPEC_PUSH["title"], "body": SPEC_PUSH["message"]},
            "sound": "default",
            "mutable-content": 1,
        },
        "url": SPEC_PUSH["url"],
        "icon": SPEC_PUSH["icon"],
    }

    tokens_after = _contact_tokens(push_tenant)
    assert tokens_after[FCM_TOKEN_1]["delivered"] == 1
    assert tokens_after[APNS_TOKEN_1]["delivered"] == 1
    assert tokens_after[APNS_TOKEN_1]["last_success_at"] is not None

    detail = push_tenant.get(f"/api/v1/messages/{body['id']}").json()
    assert (detail["channel"], detail["status"], detail["delivered"]) == ("push", "sent", 2)
    assert len(detail["results"]) == 2


def test_a_callers_collapse_id_reaches_every_platform_and_a_bad_one_is_400(
    push_tenant: PushTenant,
) -> None:
    _registered(push_tenant, ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1))
    response = push_tenant.push({**SPEC_PUSH, "collapse_id": "order-42.status"})
    assert response.status_code == 200, response.text
    [fcm] = push_tenant.push_requests("fcm")
    assert fcm["body"]["message"]["android"] == {
        "collapse_key": "order-42.status",
        "notification": {"tag": "order-42.status"},
    }
    assert fcm["body"]["message"]["webpush"]["notification"]["tag"] == "order-42.status"
    [apns] = push_tenant.push_requests("apns")
    assert apns["collapse_id"] == "order-42.status"

    for bad in ("x" * 65, "has space", ""):
        refused = push_tenant.push({**SPEC_PUSH, "collapse_id": bad})
        assert refused.status_code == 400, refused.text
        assert "collapse_id" in refused.text
    assert len(push_tenant.push_requests()) == 2  # nothing more was sent


def test_data_values_become_the_same_strings_on_fcm_and_apns(push_tenant: PushTenant) -> None:
    _registered(push_tenant, ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1))
    data = {"order": 98765, "vip": True, "tags": ["a", "b"], "note": "x", "skip": None}

    response = push_tenant.push(_push(data=data, url="myapp://orders/98765", icon=None))

    assert response.json()["delivered"] == 2, response.text
    [fcm] = push_tenant.push_requests("fcm")
    assert fcm["body"]["message"]["data"] == {
        "order": "98765",
        "vip": "true",
        "tags": '["a","b"]',
        "note": "x",
        "url": "myapp://orders/98765",
    }
    # A custom-scheme deep link is not a web push link (the web config has the tag only).
    assert fcm["body"]["message"]["webpush"] == {"notification": {"tag": response.json()["id"]}}
    [apns] = push_tenant.push_requests("apns")
    assert apns["body"]["data"] == {
        "order": "98765",
        "vip": "true",
        "tags": '["a","b"]',
        "note": "x",
    }
    assert apns["body"]["url"] == "myapp://orders/98765"


def test_unknown_contact_or_no_tokens_is_404(push_tenant: PushTenant) -> None:
    for contact in ("cct_nobody", "cct_abc123"):  # cct_abc123 exists but has no tokens
        response = push_tenant.push(_push(contact_id=contact))
        assert response.status_code == 404
        assert response.json() == {
            "success": False,
            "error": "Contact not found or has no push tokens registered",
            "code": "contact_not_found",
        }
    assert push_tenant.push_requests() == []


def test_account_without_push_is_403(push_tenant_factory: Callable[..., PushTenant]) -> None:
    bare = push_tenant_factory(fcm=False, apns=False)
    _registered(bare, ("fcm", FCM_TOKEN_1))
    response = bare.push(SPEC_PUSH)
    assert response.status_code == 403
    assert response.json() == {
        "success": False,
        "error": "Push notifications not enabled for this account",
        "code": "push_not_enabled",
    }


def test_a_key_revoked_after_a_push_is_401(push_tenant: PushTenant) -> None:
    # The API remembers a key it has seen; the push send script checks it is still valid.
    _registered(push_tenant, ("fcm", FCM_TOKEN_1))
    key = push_tenant.new_key(Scope.SEND)
    assert push_tenant.push(SPEC_PUSH, key=key).status_code == 200

    async def revoke(redis: Any) -> None:
        record = await accounts.resolve_key(redis, key)
        assert record is not None
        await accounts.revoke_key(redis, record.id)

    run_async(revoke, push_tenant.settings)
    response = push_tenant.push(SPEC_PUSH, key=key)
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "error": "This API key has been revoked",
        "code": "unauthorized",
    }
    assert len(push_tenant.push_requests()) == 1


def test_push_needs_the_send_scope(push_tenant: PushTenant) -> None:
    _registered(push_tenant, ("fcm", FCM_TOKEN_1))
    response = push_tenant.push(SPEC_PUSH, key=push_tenant.new_key(Scope.CONTACTS))
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


def test_tokens_of_an_unconfigured_platform_fail_with_a_clear_reason(
    push_tenant_factory: Callable[..., PushTenant],
) -> None:
    fcm_only = push_tenant_factory(apns=False)
    _registered(fcm_only, ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1))

    body = fcm_only.push(SPEC_PUSH).json()

    assert _summary(body) == {
        "success": True,
        "delivered": 1,
        "failed": 1,
        "device_count": 2,
        "channel": "push",
    }
    [apns] = [r for r in body["results"] if r["platform"] == "apns"]
    assert apns["error"] == "APNs is not configured for this account"
    assert apns["code"] == "platform_not_configured"
    assert "pruned" not in apns
    # Not the token's fault: its counters and registration are untouched.
    assert _contact_tokens(fcm_only)[APNS_TOKEN_1]["failed"] == 0
    assert fcm_only.push_requests("apns") == []


def test_payload_over_4096_bytes_is_400_and_nothing_is_sent(push_tenant: PushTenant) -> None:
    _registered(push_tenant, ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1))
    response = push_tenant.push(_push(data={"blob": "x" * 4000}))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "payload_too_large"
    assert "exceeds 4096 bytes" in body["error"]
    assert "FCM" in body["error"]
    assert "APNs" in body["error"]
    assert push_tenant.push_requests() == []


def test_dead_tokens_are_pruned_counted_failed_and_dropped_from_the_next_send(
    push_tenant: PushTenant, settings: Settings
) -> None:
    _registered(
        push_tenant,
        ("fcm", FCM_TOKEN_1),
        ("fcm", FCM_TOKEN_2),
        ("apns", APNS_TOKEN_1),
        ("apns", APNS_TOKEN_2),
    )
    push_tenant.push_fault("fcm", code="UNREGISTERED", count=None, match={"token": FCM_TOKEN_2})
    push_tenant.push_fault("apns", code="Unregistered", count=None, match={"token": APNS_TOKEN_2})

    first = push_tenant.push(SPEC_PUSH).json()

    assert _summary(first) == {
        "success": True,
        "delivered": 2,
        "failed": 2,
        "device_count": 4,
        "channel": "push",
    }
    pruned = {r["platform"]: r for r in first["results"] if r.get("pruned")}
    assert pruned["fcm"]["code"] == "token_unregistered"
    assert pruned["apns"]["code"] == "token_unregistered"
    assert "Unregistered" in pruned["apns"]["error"]
    assert set(_contact_tokens(push_tenant)) == {FCM_TOKEN_1, APNS_TOKEN_1}

    async def stats(redis: Any) -> dict[str, tokens.TokenStats]:
        members = await tokens.all_members(redis, push_tenant.name)
        return {s.token: s for s in await tokens.load_many(redis, push_tenant.name, members)}

    by_token = run_async(stats, settings)
    for dead in (FCM_TOKEN_2, APNS_TOKEN_2):
        assert by_token[dead].failed == 1
        assert by_token[dead].pruned_at is not None
        assert by_token[dead].prune_reason
    assert by_token[FCM_TOKEN_1].delivered == 1

    second = push_tenant.push(SPEC_PUSH).json()
    assert _summary(second) == {
        "success": True,
        "delivered": 2,
        "failed": 0,
        "device_count": 2,
        "channel": "push",
    }
    sent_to = {r["token"] for r in push_tenant.push_requests()}
    assert sent_to == {FCM_TOKEN_1, FCM_TOKEN_2, APNS_TOKEN_1, APNS_TOKEN_2}
    assert sum(1 for r in push_tenant.push_requests() if r["token"] == FCM_TOKEN_2) == 1
    push_tenant.http.delete(f"{push_tenant.sim_url}/_sim/faults")


def test_an_invalid_fcm_token_is_pruned_but_a_payload_error_is_not(
    push_tenant: PushTenant,
) -> None:
    _registered(push_tenant, ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1))
    push_tenant.push_fault(
        "fcm",
        code="INVALID_ARGUMENT",
        body="Invalid value at 'message.webpush.fcm_options.link'",
        count=1,
    )
    push_tenant.push_fault("apns", code="PayloadTooLarge", count=1)

    body = push_tenant.push(SPEC_PUSH).json()

    assert _summary(body)["failed"] == 2
    assert {r["code"] for r in body["results"]} == {"invalid_payload"}
    assert not any(r.get("pruned") for r in body["results"])
    assert set(_contact_tokens(push_tenant)) == {FCM_TOKEN_1, APNS_TOKEN_1}

    push_tenant.push_fault("fcm", code="INVALID_ARGUMENT", count=1)  # "not a valid FCM token"
    again = push_tenant.push(SPEC_PUSH).json()
    [fcm] = [r for r in again["results"] if r["platform"] == "fcm"]
    assert (fcm["code"], fcm.get("pruned")) == ("token_invalid", True)
    assert set(_contact_tokens(push_tenant)) == {APNS_TOKEN_1}


def test_quota_exceeded_is_retried_no_earlier_than_retry_after_and_only_that_token(
    push_tenant: PushTenant,
) -> None:
    _registered(push_tenant, ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1))
    push_tenant.push_fault("fcm", code="QUOTA_EXCEEDED", retry_after_s=2, count=1)

    response = push_tenant.push(SPEC_PUSH)

    body = response.json()
    assert _summary(body) == {
        "success": True,
        "delivered": 2,
        "failed": 0,
        "device_count": 2,
        "channel": "push",
    }
    fcm = push_tenant.push_requests("fcm")
    assert [r["status"] for r in fcm] == [429, 200]
    assert fcm[1]["at"] - fcm[0]["at"] >= 2.0
    # APNs delivered the first time and is not sent again.
    assert len(push_tenant.push_requests("apns")) == 1
    detail = push_tenant.get(f"/api/v1/messages/{body['id']}").json()
    first = detail["attempts"][0]
    assert (first["outcome"], first["delivered"], first["retrying"]) == ("retry", 1, 1)
    assert first["retry_in_s"] >= 2.0


def test_a_provider_outage_is_retried_then_delivered(push_tenant: PushTenant) -> None:
    _registered(push_tenant, ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1))
    push_tenant.push_fault("fcm", code="UNAVAILABLE", count=1)
    push_tenant.push_fault("apns", code="ServiceUnavailable", count=1)

    body = push_tenant.push(SPEC_PUSH).json()

    assert _summary(body)["delivered"] == 2
    assert [r["status"] for r in push_tenant.push_requests("apns")] == [503, 200]


def test_fifty_sends_reuse_the_oauth_token_and_the_apns_jwt(
    push_tenant: PushTenant, stack: dict[str, Any]
) -> None:
    _registered(push_tenant, ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1))
    for _ in range(50):
        assert push_tenant.push(SPEC_PUSH).json()["delivered"] == 2

    stats = push_tenant.http.get(f"{push_tenant.sim_url}/_sim/stats").json()
    assert len(push_tenant.push_requests()) == 100
    # One per worker process at most (the test worker runs two), never one per send.
    assert 1 <= stats["oauth_tokens_issued"][push_tenant.project_id] <= 2
    assert 1 <= stats["apns_jwts_seen"][push_tenant.key_id] <= 2


def test_a_hundred_devices_in_one_send(push_tenant: PushTenant) -> None:
    fcm = [f"fcmtoken-{i:04d}:APA91b-bulk-device-{i:04d}" for i in range(60)]
    apns = [f"{i:064x}" for i in range(1, 41)]
    for start in range(0, 100, 50):
        pairs = [("fcm", t) for t in fcm] + [("apns", t) for t in apns]
        _registered(push_tenant, *pairs[start : start + 50])

    started = time.monotonic()
    body = push_tenant.push(SPEC_PUSH).json()

    assert _summary(body) == {
        "success": True,
        "delivered": 100,
        "failed": 0,
        "device_count": 100,
        "channel": "push",
    }
    assert time.monotonic() - started < 10
    assert len(push_tenant.push_requests()) == 100


def test_registration_moves_a_token_between_contacts_and_can_remove_it(
    push_tenant: PushTenant,
) -> None:
    _registered(push_tenant, ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1))
    # The same phone now belongs to someone else: one device, one owner.
    _registered(push_tenant, ("apns", APNS_TOKEN_1), contact="cct_second")

    assert set(_contact_tokens(push_tenant)) == {FCM_TOKEN_1}
    assert set(_contact_tokens(push_tenant, "cct_second")) == {APNS_TOKEN_1}
    assert push_tenant.push(SPEC_PUSH).json()["device_count"] == 1

    url = f"{push_tenant.api_url}/api/v1/contacts/cct_abc123/push_tokens/{FCM_TOKEN_1}"
    removed = push_tenant.http.delete(url, headers=push_tenant.auth())
    assert removed.json() == {
        "success": True,
        "id": "cct_abc123",
        "platform": "fcm",
        "deleted": True,
    }
    again = push_tenant.http.delete(url, headers=push_tenant.auth())
    assert again.status_code == 404
    assert again.json()["code"] == "push_token_not_found"
    assert push_tenant.push(SPEC_PUSH).status_code == 404


def test_the_specs_patch_example_verbatim_names_the_bad_placeholders(
    push_tenant: PushTenant,
) -> None:
    """The example's tokens are placeholders ("fXDtJ9kS...", "a8B2cD3e..."): FCM would
    refuse the first (a dot is not in a token) and APNs the second, so neither is stored."""
    raw = json.dumps(
        {
            "push_tokens": [
                {"platform": "fcm", "token": "fXDtJ9kS..."},
                {"platform": "apns", "token": "a8B2cD3e..."},
            ]
        }
    )
    response = push_tenant.http.patch(
        f"{push_tenant.api_url}/api/v1/contacts/cct_abc123",
        content=raw,
        headers={**push_tenant.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["field"] == "push_tokens[0]"
    assert response.json()["code"] == "invalid_push_token"
    assert _contact_tokens(push_tenant) == {}
    apns_only = raw.replace('{"platform": "fcm", "token": "fXDtJ9kS..."}, ', "")
    response = push_tenant.http.patch(
        f"{push_tenant.api_url}/api/v1/contacts/cct_abc123",
        content=apns_only,
        headers={**push_tenant.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["field"] == "push_tokens[0]"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", ""),
        ("message", None),
        ("url", "not a url"),
        ("icon", "ftp://x/y.png"),
        ("data", ["not", "an", "object"]),
    ],
)
def test_malformed_push_body_is_400_naming_the_field(
    push_tenant: PushTenant, field: str, value: Any
) -> None:
    body = _push(**{field: value})
    if value is None:
        del body[field]
    response = push_tenant.push(body)
    assert response.status_code == 400
    assert response.json()["field"] == field
