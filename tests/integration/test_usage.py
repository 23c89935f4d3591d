"""Usage end to end: sends through the API, the worker and the simulator (its status
webhooks included), then GET /api/v1/usage shows exactly what happened, by category and
platform, and a replay (a status webhook again, a job redelivered) changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from redis.asyncio import Redis

from tests.integration.conftest import APNS_TOKEN_1, FCM_TOKEN_1, SPEC_BODY, PushTenant, Tenant
from tests.support import run_async, wait_until
from worker.models import Scope
from worker.store import jobs, keys

FCM_TOKEN_DEAD = "eYq1:APA91bGk7Zq-usage-dead-device-token-0123456789"


def _today() -> date:
    return datetime.now(UTC).date()


def _usage(tenant: Tenant, start: date | str, end: date | str, key: str | None = None) -> Any:
    return tenant.http.get(
        f"{tenant.api_url}/api/v1/usage",
        params={"start_date": str(start), "end_date": str(end)},
        headers=tenant.auth(key),
    )


def _totals(tenant: Tenant, since: date) -> dict[str, Any]:
    """The range's totals since the test began (a test run across midnight UTC still sees
    all of it)."""
    response = _usage(tenant, since, _today())
    assert response.status_code == 200, response.text
    totals: dict[str, Any] = response.json()["totals"]
    return totals


def _status_webhook(tenant: Tenant, wamid: str, status: str) -> httpx.Response:
    """A signed status webhook, as Meta posts it."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": "15550000000",
            "phone_number_id": tenant.phone_number_id,
        },
        "statuses": [
            {
                "id": wamid,
                "status": status,
                "timestamp": str(int(time.time())),
                "recipient_id": "919876543210",
            }
        ],
    }
    raw = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": tenant.waba_id, "changes": [{"field": "messages", "value": value}]}],
        }
    ).encode()
    signature = "sha256=" + hmac.new(tenant.app_secret.encode(), raw, hashlib.sha256).hexdigest()
    return tenant.http.post(
        f"{tenant.api_url}/webhooks/whatsapp",
        content=raw,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
    )


def _redeliver(tenant: Tenant, task: str, message_id: str) -> None:
    """Publish the message's job again, as the broker would after a lost ack, and wait
    until a worker has taken it."""

    async def publish(redis: Redis) -> None:
        await jobs.publish(redis, task, tenant.name, message_id)

    async def queued(redis: Redis) -> bool:
        waiting = await redis.lrange(jobs.queue_for(task), 0, -1)
        return any(message_id in str(job) for job in waiting)

    run_async(publish, tenant.settings)
    wait_until(lambda: not run_async(queued, tenant.settings), 10, "a worker to take the job")
    time.sleep(1)  # and to run it (it finds the message final at once)


def test_whatsapp_sends_are_counted_by_category_once(tenant: Tenant) -> None:
    since = _today()
    tenant.auto_status()
    utility = tenant.send(SPEC_BODY).json()  # order_confirmation: UTILITY (the simulator's)
    marketing = tenant.send(
        {"to": "+919876543210", "template_name": "welcome", "language": "en_US"}
    ).json()
    tenant.inbound("+919876543210")  # opens the 24 h window for a free-form text
    free = tenant.send({"to": "+919876543210", "message": "Your parcel is at the door"}).json()
    tenant.fault(kind="error", code=131026, count=1)  # undeliverable: fails for good
    failed = tenant.send(SPEC_BODY)
    assert [m["status"] for m in (utility, marketing, free)] == ["sent"] * 3
    assert failed.status_code == 422, failed.text

    # The simulator posts "sent" then "delivered" for each accepted message.
    wait_until(lambda: _totals(tenant, since)["whatsapp"]["delivered"] == 3, 10, "three deliveries")
    # A repeated "delivered" is not counted again; the first "read" is, once.
    assert _status_webhook(tenant, utility["message_id"], "delivered").status_code == 200
    assert _status_webhook(tenant, utility["message_id"], "read").status_code == 200
    assert _status_webhook(tenant, utility["message_id"], "read").status_code == 200
    # A job redelivered after its message was final sends and counts nothing.
    _redeliver(tenant, jobs.WHATSAPP_SEND, utility["id"])

    totals = _totals(tenant, since)
    zero = {"sent": 0, "delivered": 0, "read": 0, "failed": 0, "delivery_failed": 0}
    assert totals["whatsapp"] == {
        "sent": 3,
        "delivered": 3,
        "read": 1,
        "failed": 1,
        "delivery_failed": 0,
        "by_category": {
            "AUTHENTICATION": zero,
            "MARKETING": {**zero, "sent": 1, "delivered": 1},
            "UTILITY": {**zero, "sent": 1, "delivered": 1, "read": 1, "failed": 1},
            "free_form": {**zero, "sent": 1, "delivered": 1},
        },
    }
    assert totals["push"]["sent"] == 0
    assert len(tenant.sim_requests()) == 4  # the redelivered job sent nothing


def test_push_devices_are_counted_by_platform(push_tenant: PushTenant) -> None:
    since = _today()
    registered = push_tenant.register(
        "cct_abc123", ("fcm", FCM_TOKEN_1), ("fcm", FCM_TOKEN_DEAD), ("apns", APNS_TOKEN_1)
    )
    assert registered.status_code in (200, 201), registered.text
    push_tenant.push_fault("fcm", code="UNREGISTERED", count=None, match={"token": FCM_TOKEN_DEAD})

    body = push_tenant.push(
        {"contact_id": "cct_abc123", "title": "Shipped", "message": "On its way"}
    ).json()
    assert (body["delivered"], body["failed"]) == (2, 1), body
    _redeliver(push_tenant, jobs.PUSH_SEND, body["id"])

    totals = _totals(push_tenant, since)
    assert totals["push"] == {
        "sent": 1,
        "delivered": 2,
        "failed": 1,
        "by_platform": {
            "fcm": {"delivered": 1, "failed": 1},
            "apns": {"delivered": 1, "failed": 0},
        },
    }
    assert totals["whatsapp"]["sent"] == 0


def test_every_day_of_a_quiet_range_is_there_with_zeros(tenant: Tenant) -> None:
    body = _usage(tenant, "2024-02-27", "2024-03-02").json()

    assert body["success"] is True
    assert (body["start_date"], body["end_date"]) == ("2024-02-27", "2024-03-02")
    assert [d["date"] for d in body["days"]] == [
        "2024-02-27",
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
        "2024-03-02",
    ]
    for summary in [*body["days"], body["totals"]]:
        assert summary["whatsapp"]["sent"] == summary["push"]["delivered"] == 0
        assert summary["whatsapp"]["by_category"]["MARKETING"]["read"] == 0
        assert summary["push"]["by_platform"]["apns"] == {"delivered": 0, "failed": 0}


def test_the_default_range_is_the_last_30_days(tenant: Tenant) -> None:
    body = tenant.get("/api/v1/usage").json()

    today = _today()
    # Around midnight UTC the API's today may be the test's tomorrow.
    assert body["end_date"] in (str(today), str(today + timedelta(days=1)))
    assert len(body["days"]) == 30
    assert body["days"][-1]["date"] == body["end_date"]


def test_bad_ranges_are_400_naming_the_field(tenant: Tenant) -> None:
    cases = [
        ("2026-03-02", "2026-03-01", "start_date"),  # start after end
        ("2026-02-30", "2026-03-01", "start_date"),  # no such day
        ("2026-03-01", "20260302", "end_date"),  # not YYYY-MM-DD
        ("2024-01-01", "2025-01-01", "start_date"),  # 367 days
    ]
    for start, end, field in cases:
        response = _usage(tenant, start, end)
        assert response.status_code == 400, (start, end, response.text)
        assert response.json()["code"] == "invalid_request"
        assert response.json()["field"] == field
    assert _usage(tenant, "2024-01-01", "2024-12-31").status_code == 200  # 366: allowed


def test_usage_needs_the_admin_scope(tenant: Tenant) -> None:
    key = tenant.new_key(Scope.SEND, Scope.CAMPAIGNS, Scope.WEBHOOKS)

    response = _usage(tenant, "2026-01-01", "2026-01-02", key=key)

    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


def test_counters_live_in_one_hash_per_account_day(tenant: Tenant) -> None:
    """No scan to read them: the day's key is known, and it expires after about 400 days."""
    tenant.send(SPEC_BODY).raise_for_status()

    async def ttl(redis: Redis) -> int:
        return int(await redis.ttl(keys.usage(tenant.name, _today().isoformat())))

    assert 399 * 86_400 < run_async(ttl, tenant.settings) <= 400 * 86_400
