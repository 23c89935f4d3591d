"""Push delivery options end to end: API → Redis → worker → firebase-admin / aioapns →
simulator, read on the wire for a single send, a retry and a campaign's devices."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import APNS_TOKEN_1, FCM_TOKEN_1, PushTenant
from tests.support import wait_until
from worker.config import FCM_SENDERS

SPEC_PUSH: dict[str, Any] = {
    "contact_id": "cct_abc123",
    "title": "Your order has shipped!",
    "message": "Order #ORD-98765 is on its way.",
    "url": "https://yourapp.com/orders/98765",
}
IMAGE = "https://yourapp.com/img/parcel.jpg"
OPTIONS: dict[str, Any] = {
    "priority": "high",
    "ttl_s": 3600,
    "badge": 3,
    "sound": "chime.caf",
    "thread_id": "orders",
    "image": IMAGE,
}


@pytest.fixture(params=FCM_SENDERS)
def fcm_sender(request: pytest.FixtureRequest) -> str:
    """Every test here runs with each FCM sender: firebase-admin's, and our transport."""
    return str(request.param)


def _registered(tenant: PushTenant, contact: str = "cct_abc123", **fields: Any) -> None:
    response = tenant.http.patch(
        f"{tenant.api_url}/api/v1/contacts/{contact}",
        json={
            "push_tokens": [
                {"platform": "fcm", "token": fields.pop("fcm", FCM_TOKEN_1)},
                {"platform": "apns", "token": fields.pop("apns", APNS_TOKEN_1)},
            ],
            **fields,
        },
        headers=tenant.auth(),
    )
    assert response.status_code in (200, 201), response.text


def _assert_fcm_options(request: dict[str, Any], collapse_id: str) -> None:
    message = request["body"]["message"]
    assert message["notification"]["image"] == IMAGE
    assert message["android"] == {
        "collapse_key": collapse_id,
        "priority": "high",
        "ttl": "3600s",
        "notification": {"tag": collapse_id, "sound": "chime.caf"},
    }
    headers = message["apns"]["headers"]
    assert headers["apns-collapse-id"] == collapse_id
    assert headers["apns-priority"] == "10"
    # now + ttl_s, counted when the worker sent it (the simulator stamps its arrival)
    assert 0 <= int(request["at"]) + 3600 - int(headers["apns-expiration"]) <= 2
    assert message["apns"]["payload"] == {
        "aps": {"badge": 3, "sound": "chime.caf", "thread-id": "orders", "mutable-content": 1}
    }
    assert message["webpush"]["headers"] == {"Urgency": "high", "TTL": "3600"}


def _assert_apns_options(request: dict[str, Any], collapse_id: str) -> None:
    assert request["priority"] == "10"
    assert 0 <= int(request["at"]) + 3600 - int(request["expiration"]) <= 2
    assert request["collapse_id"] == collapse_id
    aps = request["body"]["aps"]
    assert {k: aps[k] for k in ("badge", "sound", "thread-id", "mutable-content")} == {
        "badge": 3,
        "sound": "chime.caf",
        "thread-id": "orders",
        "mutable-content": 1,
    }
    # What the app's notification service extension downloads.
    assert request["body"]["image"] == IMAGE


def test_each_option_reaches_both_platforms_in_its_own_field(push_tenant: PushTenant) -> None:
    _registered(push_tenant)

    response = push_tenant.push({**SPEC_PUSH, **OPTIONS})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["delivered"] == 2
    [fcm] = push_tenant.push_requests("fcm")
    assert fcm["status"] == 200
    _assert_fcm_options(fcm, body["id"])
    [apns] = push_tenant.push_requests("apns")
    assert apns["status"] == 200
    _assert_apns_options(apns, body["id"])
    # The message shows the options it was sent with.
    detail = push_tenant.get(f"/api/v1/messages/{body['id']}").json()
    assert {k: detail[k] for k in OPTIONS} == OPTIONS


def test_ttl_zero_is_now_or_never_and_normal_priority_is_5(push_tenant: PushTenant) -> None:
    _registered(push_tenant)

    response = push_tenant.push({**SPEC_PUSH, "ttl_s": 0, "priority": "normal", "badge": 0})

    assert response.json()["delivered"] == 2, response.text
    [fcm] = push_tenant.push_requests("fcm")
    message = fcm["body"]["message"]
    assert (message["android"]["ttl"], message["android"]["priority"]) == ("0s", "normal")
    assert message["apns"]["headers"]["apns-expiration"] == "0"
    assert message["apns"]["headers"]["apns-priority"] == "5"
    assert message["apns"]["payload"] == {"aps": {"badge": 0}}
    assert message["webpush"]["headers"] == {"Urgency": "normal", "TTL": "0"}
    [apns] = push_tenant.push_requests("apns")
    # Apple's 0: deliver once, never store; not the current second.
    assert (apns["expiration"], apns["priority"]) == ("0", "5")
    assert apns["body"]["aps"]["badge"] == 0
    assert apns["body"]["aps"]["sound"] == "default"  # none given: as before


def test_without_options_nothing_new_is_sent(push_tenant: PushTenant) -> None:
    _registered(push_tenant)
    response = push_tenant.push(SPEC_PUSH)
    assert response.json()["delivered"] == 2, response.text
    [fcm] = push_tenant.push_requests("fcm")
    message = fcm["body"]["message"]
    assert "image" not in message["notification"]
    assert set(message["android"]) == {"collapse_key", "notification"}
    assert message["apns"] == {"headers": {"apns-collapse-id": response.json()["id"]}}
    assert "headers" not in message["webpush"]
    [apns] = push_tenant.push_requests("apns")
    assert (apns["priority"], apns["expiration"]) == (None, None)


def test_a_retried_device_is_sent_the_same_options(push_tenant: PushTenant) -> None:
    _registered(push_tenant)
    push_tenant.push_fault("fcm", code="UNAVAILABLE", count=1)
    push_tenant.push_fault("apns", code="ServiceUnavailable", count=1)

    body = push_tenant.push({**SPEC_PUSH, **OPTIONS}).json()

    assert body["delivered"] == 2, body
    fcm = push_tenant.push_requests("fcm")
    apns = push_tenant.push_requests("apns")
    assert [r["status"] for r in fcm] == [503, 200]
    assert [r["status"] for r in apns] == [503, 200]
    for request in fcm:
        _assert_fcm_options(request, body["id"])
    for request in apns:
        _assert_apns_options(request, body["id"])


def _campaign(tenant: PushTenant, content: dict[str, Any], contacts: list[str]) -> str:
    created = tenant.http.post(
        f"{tenant.api_url}/api/v1/campaigns",
        json={
            "name": "options",
            "channel": "push",
            "content": content,
            "audience": {"contact_ids": contacts},
        },
        headers=tenant.auth(),
    )
    assert created.status_code == 201, created.text
    campaign_id: str = created.json()["campaign"]["id"]
    # The content shows the options as given.
    assert {k: created.json()["campaign"]["content"][k] for k in OPTIONS} == OPTIONS
    sent = tenant.http.post(
        f"{tenant.api_url}/api/v1/campaigns/{campaign_id}/send", headers=tenant.auth()
    )
    assert sent.status_code == 202, sent.text

    def completed() -> dict[str, Any] | None:
        shown = tenant.get(f"/api/v1/campaigns/{campaign_id}").json()["campaign"]
        return shown if shown["status"] == "completed" else None

    stats = wait_until(completed, 30, f"campaign {campaign_id} completed")["stats"]
    assert (stats["sent"], stats["failed"]) == (2 * len(contacts), 0)
    return campaign_id


@pytest.mark.parametrize("templated", [True, False], ids=["per-contact texts", "shared texts"])
def test_a_campaign_sends_its_options_to_every_device(
    push_tenant: PushTenant, templated: bool
) -> None:
    contacts = {f"opt{i}": f"Name{i}" for i in range(3)}
    for i, (contact, name) in enumerate(contacts.items()):
        _registered(
            push_tenant,
            contact,
            name=name,
            fcm=f"fcm{i:05d}:APA91b-options-{push_tenant.name}",
            apns=f"{i + 1:064x}",
        )
    title = "Hi {{name}}" if templated else "Hi"
    content = {"title": title, "message": "Parcel on its way", **OPTIONS}

    _campaign(push_tenant, content, list(contacts))

    fcm = [r for r in push_tenant.push_requests("fcm") if r["status"] == 200]
    apns = [r for r in push_tenant.push_requests("apns") if r["status"] == 200]
    assert (len(fcm), len(apns)) == (3, 3)
    # One batch message: every device has the batch's collapse id and the same options.
    collapse_id = fcm[0]["body"]["message"]["android"]["collapse_key"]
    assert collapse_id.startswith("cmp_")
    for request in fcm:
        _assert_fcm_options(request, collapse_id)
    for request in apns:
        _assert_apns_options(request, collapse_id)
    titles = {r["body"]["message"]["notification"]["title"] for r in fcm}
    titles |= {r["body"]["aps"]["alert"]["title"] for r in apns}
    expected = {f"Hi {name}" for name in contacts.values()} if templated else {"Hi"}
    assert titles == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", "urgent"),
        ("ttl_s", 2_419_201),
        ("ttl_s", "60"),
        ("badge", -1),
        ("badge", 1.5),
        ("sound", ""),
        ("thread_id", "t" * 65),
        ("image", "http://yourapp.com/img/parcel.jpg"),
    ],
)
def test_a_bad_option_is_400_naming_it_and_nothing_is_sent(
    push_tenant: PushTenant, field: str, value: Any
) -> None:
    _registered(push_tenant)

    response = push_tenant.push({**SPEC_PUSH, field: value})

    assert response.status_code == 400, response.text
    error = response.json()
    assert (error["success"], error["code"], error["field"]) == (False, "invalid_request", field)
    assert error["error"].startswith(f"{field}: ")
    campaign = push_tenant.http.post(
        f"{push_tenant.api_url}/api/v1/campaigns",
        json={
            "name": "bad",
            "channel": "push",
            "content": {"title": "t", "message": "m", field: value},
            "audience": {"all": True},
        },
        headers=push_tenant.auth(),
    )
    assert campaign.status_code == 400, campaign.text
    assert campaign.json()["field"].endswith(field)
    assert push_tenant.push_requests() == []
