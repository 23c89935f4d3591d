"""Event webhook endpoints through the API (real API process, real Valkey): the SDK's
``webhooks.list/create/get/update/delete/test``, scopes, URL checks, the secret shown
once, and a signed test event verified with the Standard Webhooks library by a real
HTTP receiver started here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import RECEIVER_HOST
from tests.integration.conftest import Tenant
from tests.support import EventReceiver
from worker.models import Scope

PATH = "/api/v1/webhooks"


@pytest.fixture
def events() -> Iterator[EventReceiver]:
    receiver = EventReceiver(RECEIVER_HOST)
    yield receiver
    receiver.close()


@pytest.fixture
def receiver(events: EventReceiver) -> str:
    return events.url


def _create(tenant: Tenant, body: dict[str, Any], key: str | None = None) -> Any:
    return tenant.http.post(f"{tenant.api_url}{PATH}", json=body, headers=tenant.auth(key))


def test_create_list_get_update_delete(tenant: Tenant, receiver: str) -> None:
    created = _create(tenant, {"url": receiver, "description": "orders"})
    assert created.status_code == 201, created.text
    hook = created.json()["webhook"]
    assert hook["secret"].startswith("whsec_")
    assert hook["events"] == ["*"]
    assert hook["active"] is True
    hook_id = hook["id"]

    shown = tenant.get(f"{PATH}/{hook_id}").json()["webhook"]
    assert "secret" not in shown  # shown once, at creation
    assert shown["description"] == "orders"
    listed = tenant.get(PATH).json()
    assert [w["id"] for w in listed["webhooks"]] == [hook_id]
    assert listed["total"] == 1

    patched = tenant.http.patch(
        f"{tenant.api_url}{PATH}/{hook_id}",
        json={"events": ["message.failed", "push.failed"], "active": False},
        headers=tenant.auth(),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["webhook"]["events"] == ["message.failed", "push.failed"]
    assert patched.json()["webhook"]["active"] is False
    assert "secret" not in patched.json()["webhook"]

    by_put = tenant.http.put(
        f"{tenant.api_url}{PATH}/{hook_id}", json={"description": "put"}, headers=tenant.auth()
    )
    assert by_put.status_code == 200
    assert by_put.json()["webhook"]["description"] == "put"
    assert by_put.json()["webhook"]["events"] == ["message.failed", "push.failed"]

    rotated = tenant.http.patch(
        f"{tenant.api_url}{PATH}/{hook_id}", json={"rotate_secret": True}, headers=tenant.auth()
    ).json()["webhook"]
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != hook["secret"]

    deleted = tenant.http.delete(f"{tenant.api_url}{PATH}/{hook_id}", headers=tenant.auth())
    assert deleted.json() == {"success": True, "id": hook_id, "deleted": True}
    gone = tenant.get(f"{PATH}/{hook_id}")
    assert gone.status_code == 404
    assert gone.json()["code"] == "webhook_not_found"
    assert tenant.get(PATH).json()["webhooks"] == []


def test_a_test_event_is_signed_and_verifies(
    tenant: Tenant, receiver: str, events: EventReceiver
) -> None:
    hook = _create(tenant, {"url": receiver}).json()["webhook"]
    answer = tenant.http.post(f"{tenant.api_url}{PATH}/{hook['id']}/test", headers=tenant.auth())
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["delivered"] is True
    assert result["status"] == 200
    assert result["latency_ms"] >= 0
    assert result["error"] is None
    [(headers, body)] = events.accepted
    event = Webhook(hook["secret"]).verify(body, headers)
    assert event["type"] == "webhook.test"
    assert event["id"] == result["event_id"]
    assert headers["webhook-id"] == result["event_id"]
    assert event["data"] == {"endpoint_id": hook["id"], "account": tenant.name}
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "A" * 32).verify(body, headers)


def test_a_failing_receiver_is_reported_not_an_error(
    tenant: Tenant, receiver: str, events: EventReceiver
) -> None:
    events.answer = 503
    hook = _create(tenant, {"url": receiver}).json()["webhook"]
    result = tenant.http.post(
        f"{tenant.api_url}{PATH}/{hook['id']}/test", headers=tenant.auth()
    ).json()
    assert result["success"] is True
    assert result["delivered"] is False
    assert result["status"] == 503
    assert result["error"] == "the endpoint answered 503"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9/hook", "private"),
        ("http://169.254.169.254/latest", "private"),
        ("http://localhost:8000/x", "loopback"),
        ("ftp://example.com/x", "http"),
        ("https://user:pw@example.com/x", "credentials"),
    ],
)
def test_urls_that_may_not_be_called_are_refused(tenant: Tenant, url: str, reason: str) -> None:
    refused = _create(tenant, {"url": url})
    assert refused.status_code == 400
    assert refused.json()["code"] == "url_not_allowed"
    assert refused.json()["field"] == "url"
    assert reason in refused.json()["error"]
    assert tenant.get(PATH).json()["webhooks"] == []


def test_scopes(tenant: Tenant, receiver: str) -> None:
    send_only = tenant.new_key(Scope.SEND)
    refused = tenant.get(PATH, key=send_only)
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_scope"
    # A key with `webhooks` and `send` may subscribe to message events, not campaign ones.
    hooks_key = tenant.new_key(Scope.WEBHOOKS, Scope.SEND)
    ok = _create(tenant, {"url": receiver, "events": ["message.failed"]}, key=hooks_key)
    assert ok.status_code == 201, ok.text
    too_much = _create(tenant, {"url": receiver, "events": ["campaign.completed"]}, key=hooks_key)
    assert too_much.status_code == 403
    assert too_much.json()["code"] == "insufficient_scope"
    assert "campaigns" in too_much.json()["error"]


def test_bad_bodies(tenant: Tenant, receiver: str) -> None:
    unknown = _create(tenant, {"url": receiver, "events": ["message.exploded"]})
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "invalid_request"
    assert unknown.json()["field"] == "events"
    long = _create(tenant, {"url": receiver, "description": "x" * 501})
    assert long.status_code == 400
    assert long.json()["field"] == "description"
    missing = tenant.get(f"{PATH}/wh_doesnotexist")
    assert missing.status_code == 404
    assert missing.json()["code"] == "webhook_not_found"


def test_an_account_has_at_most_20_endpoints(other_tenant: Tenant, receiver: str) -> None:
    for _ in range(20):
        assert _create(other_tenant, {"url": receiver}).status_code == 201
    over = _create(other_tenant, {"url": receiver})
    assert over.status_code == 409
    assert over.json()["code"] == "webhook_limit_reached"
    assert other_tenant.get(PATH).json()["total"] == 20


def test_another_account_cannot_see_or_touch_an_endpoint(
    tenant: Tenant, other_tenant: Tenant, receiver: str
) -> None:
    hook = _create(tenant, {"url": receiver}).json()["webhook"]
    assert other_tenant.get(f"{PATH}/{hook['id']}").status_code == 404
    assert (
        other_tenant.http.delete(
            f"{other_tenant.api_url}{PATH}/{hook['id']}", headers=other_tenant.auth()
        ).status_code
        == 404
    )
    assert tenant.get(f"{PATH}/{hook['id']}").status_code == 200
