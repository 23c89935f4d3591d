"""Event webhooks end to end (real API, workers, beat, simulator and Valkey): a result
writes its event in its own transaction, the beat moves it to each subscribed endpoint's
queue, a bulk worker posts it signed; a receiver that fails for a while gets every event
once its retries run, and each event verifies with the Standard Webhooks library."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import RECEIVER_HOST, SUBSCRIBERS_SEEN_S
from tests.integration.conftest import APNS_TOKEN_1, FCM_TOKEN_1, SPEC_BODY, PushTenant, Tenant
from tests.support import EventReceiver, run_async
from worker.masking import mask_token
from worker.models import Scope
from worker.store import keys

# The spec's example without its contact (the tenant has no contact of that id).
TEMPLATE = {**{k: v for k, v in SPEC_BODY.items() if k != "contact_id"}, "to": "+14155550100"}


@pytest.fixture
def events() -> Iterator[EventReceiver]:
    receiver = EventReceiver(RECEIVER_HOST, answer=204)
    yield receiver
    receiver.close()


@pytest.fixture
def receiver(events: EventReceiver) -> str:
    return events.url


def _endpoint(
    tenant: Tenant,
    url: str,
    events: list[str] | None = None,
    *,
    key: str | None = None,
    wait: bool = True,
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = events
    answer = tenant.http.post(
        f"{tenant.api_url}/api/v1/webhooks", json=body, headers=tenant.auth(key)
    )
    assert answer.status_code == 201, answer.text
    hook: dict[str, Any] = answer.json()["webhook"]
    if wait:
        # Workers read which accounts have endpoints every 2 s.
        time.sleep(SUBSCRIBERS_SEEN_S)  # workers re-read which accounts have endpoints
    return hook


def _verified(events: EventReceiver, secret: str) -> list[dict[str, Any]]:
    """The events received so far that this endpoint's secret signed."""
    out = []
    for headers, body in events.accepted:
        # Another endpoint's event (same receiver) does not verify under this secret.
        with contextlib.suppress(WebhookVerificationError):
            out.append(Webhook(secret).verify(body, headers))
    return out


def _events(
    events: EventReceiver,
    secret: str,
    want: int,
    timeout_s: float = 20.0,
    *,
    secret_only: bool = False,
) -> list[dict[str, Any]]:
    """Wait until ``want`` events came, and return them verified (each one must verify,
    unless ``secret_only``: then those of other endpoints on the receiver are left out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = _verified(events, secret) if secret_only else events.accepted
        if len(found) >= want:
            break
        time.sleep(0.1)
    if secret_only:
        return _verified(events, secret)
    return [Webhook(secret).verify(body, headers) for headers, body in events.accepted]


def test_a_sent_message_is_posted_signed(
    tenant: Tenant, receiver: str, events: EventReceiver
) -> None:
    hook = _endpoint(tenant, receiver)
    sent = tenant.send(TEMPLATE)
    assert sent.status_code == 200, sent.text
    message_id = sent.json()["id"]
    [event] = [
        e for e in _events(events, hook["secret"], 1) if e["data"]["message_id"] == message_id
    ]
    assert event["type"] == "message.sent"
    assert event["id"].startswith("evt_")
    assert event["data"]["status"] == "sent"
    assert event["data"]["provider_message_id"] == sent.json()["message_id"]
    assert "to" not in event["data"]  # the recipient's number is not the subscriber's
    assert "+14155550100" not in str(event)


def test_a_receiver_down_for_a_while_gets_every_event(
    tenant: Tenant, receiver: str, events: EventReceiver
) -> None:
    events.refuse_first = 6
    hook = _endpoint(tenant, receiver, ["message.sent"])
    ids = []
    for i in range(5):
        body = {**TEMPLATE, "to": f"+1415555011{i}"}
        answer = tenant.send(body)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["id"])
    got = _events(events, hook["secret"], 5, timeout_s=30)
    assert sorted(e["data"]["message_id"] for e in got) == sorted(ids)
    assert events.calls >= 5 + 6  # the refused attempts were made again
    deliveries = tenant.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()
    assert deliveries["total"] == 5
    assert {d["status"] for d in deliveries["deliveries"]} == {"delivered"}
    assert any(d["attempts"] > 1 for d in deliveries["deliveries"])


def test_an_endpoint_gets_only_the_types_it_asked_for(
    tenant: Tenant, receiver: str, events: EventReceiver
) -> None:
    hook = _endpoint(tenant, receiver, ["message.failed"])
    tenant.fault(code=131026, count=None, match={"to": "14155550177"})
    failed = tenant.send({**TEMPLATE, "to": "+14155550177"})
    assert failed.status_code >= 400
    ok = tenant.send({**TEMPLATE, "to": "+14155550178"})
    assert ok.status_code == 200
    _events(events, hook["secret"], 1)
    time.sleep(1.0)  # a wrongly sent message.sent would have come by now
    got = _events(events, hook["secret"], 1)
    assert [e["type"] for e in got] == ["message.failed"]
    assert got[0]["data"]["message_id"] == failed.json()["id"]
    assert got[0]["data"]["code"] == failed.json()["code"]


FCM_DEAD = "eYq1:APA91bGk7Zq-webhook-dead-device-0123456789"


def test_push_events_per_device_and_a_scope_that_may_not_see_pruning(
    push_tenant: PushTenant, receiver: str, events: EventReceiver
) -> None:
    # Created by a key with `send` (push results) but not `contacts` (token pruning): "*"
    # means every type that key could read, so token.pruned never reaches it.
    key = push_tenant.new_key(Scope.WEBHOOKS, Scope.SEND)
    hook = _endpoint(push_tenant, receiver, key=key, wait=False)
    admin_hook = _endpoint(push_tenant, receiver, ["token.pruned"])
    assert push_tenant.register(
        "c-wh", ("fcm", FCM_TOKEN_1), ("fcm", FCM_DEAD), ("apns", APNS_TOKEN_1)
    ).status_code in (200, 201)
    push_tenant.push_fault("fcm", code="UNREGISTERED", count=None, match={"token": FCM_DEAD})
    sent = push_tenant.push({"contact_id": "c-wh", "title": "Hi", "message": "There"})
    assert sent.status_code == 200, sent.text
    got = _events(events, hook["secret"], 3, secret_only=True)
    assert sorted(e["type"] for e in got) == ["push.delivered", "push.delivered", "push.failed"]
    failed = next(e for e in got if e["type"] == "push.failed")
    assert failed["data"]["message_id"] == sent.json()["id"]
    assert failed["data"]["platform"] == "fcm"
    assert failed["data"]["code"] == "token_unregistered"
    assert FCM_DEAD not in str(got)  # tokens are masked, as the API shows them
    assert failed["data"]["token"] == mask_token(FCM_DEAD)
    # The admin endpoint asked for pruning only, and got it; the other never did.
    [pruned] = _events(events, admin_hook["secret"], 1, secret_only=True)
    assert pruned["type"] == "token.pruned"
    assert pruned["data"]["contact_id"] == "c-wh"
    time.sleep(1.0)
    assert "token.pruned" not in [
        e["type"] for e in _events(events, hook["secret"], 3, secret_only=True)
    ]


def test_campaign_events_carry_the_final_counts(
    push_tenant: PushTenant, receiver: str, events: EventReceiver
) -> None:
    hook = _endpoint(push_tenant, receiver, ["campaign.started", "campaign.completed"])
    for i in range(3):
        push_tenant.register(f"wc{i}", ("fcm", f"{FCM_TOKEN_1[:-2]}{i:02d}"))
        push_tenant.http.patch(
            f"{push_tenant.api_url}/api/v1/contacts/wc{i}",
            json={"tags": ["whc"]},
            headers=push_tenant.auth(),
        )
    created = push_tenant.http.post(
        f"{push_tenant.api_url}/api/v1/campaigns",
        json={
            "name": "wh",
            "channel": "push",
            "content": {"title": "T", "message": "M"},
            "audience": {"segment": {"tag": "whc"}},
        },
        headers=push_tenant.auth(),
    )
    campaign_id = created.json()["campaign"]["id"]
    push_tenant.http.post(
        f"{push_tenant.api_url}/api/v1/campaigns/{campaign_id}/send", headers=push_tenant.auth()
    )
    got = _events(events, hook["secret"], 2, timeout_s=30)
    assert [e["type"] for e in got] == ["campaign.started", "campaign.completed"]
    done = got[1]["data"]
    assert done["campaign_id"] == campaign_id
    assert done["status"] == "completed"
    assert done["channel"] == "push"
    assert done["counts"]["recipients"] == 3
    assert done["counts"]["sent"] == 3


def test_an_automation_run_that_ends_is_an_event(
    tenant: Tenant, receiver: str, events: EventReceiver
) -> None:
    hook = _endpoint(tenant, receiver, ["automation.run.completed", "automation.run.failed"])
    made = tenant.http.post(
        f"{tenant.api_url}/api/v1/automations",
        json={
            "name": "tagger",
            "trigger": {"type": "manual"},
            "steps": [{"type": "add_tag", "tag": "vip"}],
        },
        headers=tenant.auth(),
    )
    assert made.status_code == 201, made.text
    automation_id = made.json()["automation"]["id"]
    tenant.http.patch(
        f"{tenant.api_url}/api/v1/automations/{automation_id}/activate",
        json={"active": True},
        headers=tenant.auth(),
    )
    tenant.http.post(f"{tenant.api_url}/api/v1/contacts", json={"id": "ar1"}, headers=tenant.auth())
    enrolled = tenant.http.post(
        f"{tenant.api_url}/api/v1/automations/{automation_id}/enroll",
        json={"contact_id": "ar1"},
        headers=tenant.auth(),
    )
    assert enrolled.status_code in (200, 201, 202), enrolled.text
    [event] = _events(events, hook["secret"], 1, timeout_s=20)
    assert event["type"] == "automation.run.completed"
    assert event["data"]["automation_id"] == automation_id
    assert event["data"]["contact_id"] == "ar1"
    assert event["data"]["status"] == "done"


def test_a_delivery_retried_by_hand_and_an_endpoint_failing_for_days(
    tenant: Tenant, receiver: str, events: EventReceiver
) -> None:
    events.refuse_first = 1_000  # down for good
    hook = _endpoint(tenant, receiver, ["message.sent"])
    assert tenant.send({**TEMPLATE, "to": "+14155550190"}).status_code == 200
    path = f"/api/v1/webhooks/{hook['id']}/deliveries"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = tenant.get(path).json()
        if listed["deliveries"] and listed["deliveries"][0]["status"] == "failed":
            break
        time.sleep(0.3)
    [delivery] = listed["deliveries"]
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 8  # the test schedule's 7 waits
    assert delivery["last_status"] == 503
    assert listed["counts"]["failed"] == 1
    # Back up: a retry by hand makes it again, with a fresh budget.
    events.refuse_first = 0
    retried = tenant.http.post(
        f"{tenant.api_url}{path}/{delivery['id']}/retry", headers=tenant.auth()
    )
    assert retried.status_code == 202, retried.text
    [event] = _events(events, hook["secret"], 1)
    assert event["id"] == delivery["event_id"]
    again = tenant.get(path).json()["deliveries"][0]
    assert again["status"] == "delivered"
    missing = tenant.http.post(f"{tenant.api_url}{path}/nope/retry", headers=tenant.auth())
    assert missing.status_code == 404
    assert missing.json()["code"] == "delivery_not_found"

    # Failing for days: the streak began long ago (as if), and the next failure disables it.
    events.refuse_first = 10_000

    async def age_streak(redis: Any) -> None:
        await redis.hset(
            keys.webhook_stats(tenant.name, hook["id"]), "failing_since", time.time() - 6 * 86_400
        )

    run_async(age_streak, tenant.settings)
    tenant.send({**TEMPLATE, "to": "+14155550191"})
    deadline = time.monotonic() + 15
    shown = tenant.get(f"/api/v1/webhooks/{hook['id']}").json()["webhook"]
    while shown["active"] and time.monotonic() < deadline:
        time.sleep(0.3)
        shown = tenant.get(f"/api/v1/webhooks/{hook['id']}").json()["webhook"]
    assert shown["active"] is False
    assert "every delivery failed since" in shown["disabled_reason"]
    assert shown["disabled_at"] is not None
