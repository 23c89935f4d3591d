"""Campaigns end to end: API → audience walk → bulk workers → simulator → counters."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.conftest import PushTenant, Tenant, make_tenant
from tests.support import dispatch, wait_until
from worker.config import Settings

N = 1000
NO_PHONE = {i for i in range(N) if i % 10 == 0}
# Token layout by i % 4: 0 FCM only, 1 APNs only, 2 both, 3 none.
BAD_FCM = set(range(0, N, 40))  # i % 4 == 0: their only device is a dead FCM token
BAD_APNS = set(range(1, N, 40))  # i % 4 == 1: a dead APNs token
UNDELIVERABLE = {i for i in range(N) if i % 100 == 5}  # WhatsApp answers 131026


def phone(i: int) -> str:
    return f"+9198765{i:05d}"


def fcm_token(tenant: Tenant, i: int) -> str:
    return f"fcm{i:05d}:APA91b-campaign-{tenant.name}"


def apns_token(i: int) -> str:
    return f"{i:064x}"


def contact(tenant: Tenant, i: int) -> dict[str, Any]:
    tokens = []
    if i % 4 in (0, 2):
        tokens.append({"platform": "fcm", "token": fcm_token(tenant, i)})
    if i % 4 in (1, 2):
        tokens.append({"platform": "apns", "token": apns_token(i)})
    item: dict[str, Any] = {
        "id": f"c{i:04d}",
        "name": f"Name{i}",
        "tags": ["camp"],
        "attributes": {"tier": "gold" if i % 2 else "silver"},
        "push_tokens": tokens,
    }
    if i not in NO_PHONE:
        item["phone"] = phone(i)
    return item


def import_contacts(tenant: Tenant, items: list[dict[str, Any]]) -> None:
    response = tenant.http.post(
        f"{tenant.api_url}/api/v1/contacts/import",
        content=json.dumps(items),
        headers={**tenant.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["skipped"] == 0, response.text


def call(tenant: Tenant, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return tenant.http.request(
        method, f"{tenant.api_url}/api/v1/campaigns{path}", headers=tenant.auth(), **kwargs
    )


def create(tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = call(tenant, "POST", "", json=body)
    assert response.status_code == 201, response.text
    campaign: dict[str, Any] = response.json()["campaign"]
    assert campaign["status"] == "draft"
    return campaign


def show(tenant: Tenant, campaign_id: str) -> dict[str, Any]:
    response = call(tenant, "GET", f"/{campaign_id}")
    assert response.status_code == 200, response.text
    campaign: dict[str, Any] = response.json()["campaign"]
    return campaign


def wait_status(tenant: Tenant, campaign_id: str, status: str, timeout_s: float) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        campaign = show(tenant, campaign_id)
        return campaign if campaign["status"] == status else None

    try:
        return wait_until(check, timeout_s, f"campaign {campaign_id} {status}")
    except AssertionError:
        raise AssertionError(f"campaign now: {show(tenant, campaign_id)}") from None


def wait_stat(
    tenant: Tenant, campaign_id: str, test: Callable[[dict[str, Any]], bool], timeout_s: float
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        stats: dict[str, Any] = show(tenant, campaign_id)["stats"]
        return stats if test(stats) else None

    try:
        return wait_until(check, timeout_s, f"campaign {campaign_id} stats")
    except AssertionError:
        raise AssertionError(f"campaign now: {show(tenant, campaign_id)}") from None


WHATSAPP_CONTENT = {"template_name": "order_confirmation", "parameters": ["{{name}}", "{{tier}}"]}


def shipping(name: str, audience: dict[str, Any]) -> dict[str, Any]:
    """A WhatsApp campaign of the one-parameter shipping template, named for the contact."""
    return {
        "name": name,
        "channel": "whatsapp",
        "content": {"template_name": "shipping_update", "parameters": ["{{name}}"]},
        "audience": audience,
    }


@pytest.fixture
def audience(push_tenant: PushTenant) -> PushTenant:
    """1,000 contacts: some without a phone, some without tokens, some with dead tokens."""
    import_contacts(push_tenant, [contact(push_tenant, i) for i in range(N)])
    # The simulator posts "sent" and "delivered" status webhooks after each message.
    push_tenant.auto_status()
    for i in BAD_FCM:
        push_tenant.push_fault(
            "fcm", code="UNREGISTERED", count=None, match={"token": fcm_token(push_tenant, i)}
        )
    for i in BAD_APNS:
        push_tenant.push_fault(
            "apns", code="Unregistered", count=None, match={"token": apns_token(i)}
        )
    for i in UNDELIVERABLE:
        push_tenant.fault(code=131026, count=None, match={"to": phone(i).lstrip("+")})
    return push_tenant


def test_whatsapp_and_push_campaigns_to_1000_contacts_reach_exact_counts(
    audience: PushTenant,
) -> None:
    tenant = audience
    wa = create(
        tenant,
        {
            "name": "November sale",
            "channel": "whatsapp",
            "content": WHATSAPP_CONTENT,
            "audience": {"segment": {"tag": "camp"}},
        },
    )
    push = create(
        tenant,
        {
            "name": "November sale push",
            "channel": "push",
            "content": {"title": "Hi {{name}}", "message": "Sale for {{tier}} members"},
            "audience": {"segment": {"tag": "camp"}},
        },
    )
    for campaign in (wa, push):
        sent = call(tenant, "POST", f"/{campaign['id']}/send")
        assert sent.status_code == 202, sent.text
        assert sent.json()["campaign"]["status"] in ("sending", "completed")

    wa_done = wait_status(tenant, wa["id"], "completed", 90)["stats"]
    with_phone = N - len(NO_PHONE)
    assert {k: wa_done[k] for k in ("total", "enqueued", "skipped", "recipients")} == {
        "total": N,
        "enqueued": N,
        "skipped": len(NO_PHONE),
        "recipients": with_phone,
    }
    assert (wa_done["sent"], wa_done["failed"], wa_done["pending"]) == (
        with_phone - len(UNDELIVERABLE),
        len(UNDELIVERABLE),
        0,
    )
    assert wa_done["skipped_by_reason"] == {"no_phone": len(NO_PHONE)}
    # The simulator got every number once, with the contact's own fields filled in.
    received = [r for r in tenant.sim_requests() if r.get("status") == 200]
    assert len(received) == with_phone - len(UNDELIVERABLE)
    assert len({r["to"] for r in received}) == len(received)
    seven = next(r for r in received if r["to"] == phone(7).lstrip("+"))
    params = seven["body"]["template"]["components"][0]["parameters"]
    assert [p["text"] for p in params] == ["Name7", "gold"]
    # Status webhooks ("delivered") from the simulator count too.
    wait_stat(tenant, wa["id"], lambda s: s["delivered"] == with_phone - len(UNDELIVERABLE), 30)

    push_done = wait_status(tenant, push["id"], "completed", 90)["stats"]
    with_tokens = [i for i in range(N) if i % 4 != 3]
    devices = sum(2 if i % 4 == 2 else 1 for i in with_tokens)
    dead = len(BAD_FCM) + len(BAD_APNS)
    assert {
        k: push_done[k] for k in ("total", "skipped", "recipients", "sent", "failed", "pending")
    } == {
        "total": N,
        "skipped": N - len(with_tokens),
        "recipients": devices,
        "sent": devices - dead,
        "failed": dead,
        "pending": 0,
    }
    sim = tenant.push_requests()
    ok = [r for r in sim if r.get("status") == 200]
    assert len(ok) == devices - dead
    # Titles rendered per contact; dead tokens pruned from their contacts.
    assert any(r.get("title") == "Hi Name2" or "Hi Name2" in json.dumps(r) for r in ok)
    pruned = tenant.get("/api/v1/contacts/c0000").json()["contact"]
    assert pruned["push_tokens"] == []


def test_invalid_campaigns_get_clear_errors_and_nothing_is_stored(tenant: Tenant) -> None:
    bad_audience = call(
        tenant,
        "POST",
        "",
        json={
            "name": "x",
            "channel": "whatsapp",
            "content": WHATSAPP_CONTENT,
            "audience": {"all": True, "contact_ids": ["a"]},
        },
    )
    assert bad_audience.status_code == 400
    assert bad_audience.json()["code"] == "invalid_request"
    missing = call(
        tenant,
        "POST",
        "",
        json={
            "name": "x",
            "channel": "push",
            "content": {"message": "m"},
            "audience": {"all": True},
        },
    )
    assert (missing.status_code, missing.json()["field"]) == (400, "content.push.title")
    wrong_count = call(
        tenant,
        "POST",
        "",
        json={
            "name": "x",
            "channel": "whatsapp",
            "content": {"template_name": "order_confirmation", "parameters": ["one"]},
            "audience": {"all": True},
        },
    )
    assert (wrong_count.status_code, wrong_count.json()["code"]) == (
        422,
        "template_parameter_mismatch",
    )
    assert call(tenant, "GET", "").json()["total"] == 0
    assert call(tenant, "GET", "/cmp_nope").status_code == 404


def test_draft_edit_then_pause_resume_and_cancel(
    stack: dict[str, Any], settings: Settings, sim_url: str, api_url: str, http: httpx.Client
) -> None:
    # A number capped at 40 messages/s: 300 recipients take several seconds.
    tenant = make_tenant(settings, sim_url, api_url, http, rate_per_s=40)
    import_contacts(
        tenant, [{"id": f"p{i}", "phone": phone(i), "name": f"N{i}"} for i in range(300)]
    )
    campaign = create(tenant, shipping("draft", {"contact_ids": [f"p{i}" for i in range(300)]}))
    cid = campaign["id"]
    edited = call(tenant, "PATCH", f"/{cid}", json={"name": "Shipping wave"})
    assert edited.status_code == 200, edited.text
    assert edited.json()["campaign"]["name"] == "Shipping wave"
    assert call(tenant, "POST", f"/{cid}/pause").status_code == 409  # not sending yet

    assert call(tenant, "POST", f"/{cid}/send").status_code == 202
    assert call(tenant, "PATCH", f"/{cid}", json={"name": "late"}).json()["code"] == (
        "campaign_state_conflict"
    )
    wait_stat(tenant, cid, lambda s: s["sent"] >= 40, 30)
    paused = call(tenant, "POST", f"/{cid}/pause")
    assert paused.status_code == 200
    assert paused.json()["campaign"]["status"] == "paused"
    time.sleep(2)  # what was in flight lands
    at_pause = show(tenant, cid)["stats"]["sent"]
    time.sleep(2)
    assert show(tenant, cid)["stats"]["sent"] == at_pause  # nothing more goes out
    assert at_pause < 300

    assert call(tenant, "POST", f"/{cid}/resume").json()["campaign"]["status"] == "sending"
    done = wait_status(tenant, cid, "completed", 60)["stats"]
    assert (done["sent"], done["failed"], done["cancelled"]) == (300, 0, 0)
    assert len(tenant.sim_requests()) == 300

    second = create(tenant, shipping("to cancel", {"all": True}))
    sid = second["id"]
    assert call(tenant, "POST", f"/{sid}/send").status_code == 202
    wait_stat(tenant, sid, lambda s: s["sent"] >= 40, 30)
    assert call(tenant, "DELETE", f"/{sid}").status_code == 409  # cancel first
    cancelled = call(tenant, "POST", f"/{sid}/cancel")
    assert cancelled.json()["campaign"]["status"] == "cancelled"
    final = wait_until(
        lambda: (c := show(tenant, sid))["finished_at"] and c, 30, "cancelled campaign settles"
    )["stats"]
    audience_size = 301  # the 300 and the tenant's own cct_abc123
    assert final["sent"] < audience_size
    assert final["sent"] + final["cancelled"] == final["recipients"]
    assert len(tenant.sim_requests()) == 300 + final["sent"]
    assert call(tenant, "POST", f"/{sid}/resume").status_code == 409
    assert call(tenant, "DELETE", f"/{sid}").status_code == 200
    assert call(tenant, "GET", f"/{sid}").status_code == 404


def test_send_at_fires_on_time(tenant: Tenant) -> None:
    import_contacts(tenant, [{"id": f"s{i}", "phone": phone(i), "name": "S"} for i in range(5)])
    campaign = create(tenant, shipping("later", {"contact_ids": [f"s{i}" for i in range(5)]}))
    send_at = time.time() + 3
    iso = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(send_at))
        + f".{int(send_at % 1 * 1000):03d}Z"
    )
    scheduled = call(tenant, "POST", f"/{campaign['id']}/send", json={"send_at": iso})
    assert scheduled.status_code == 202, scheduled.text
    assert scheduled.json()["campaign"]["status"] == "scheduled"
    time.sleep(1.5)
    assert tenant.sim_requests() == []
    done = wait_status(tenant, campaign["id"], "completed", 20)
    assert done["stats"]["sent"] == 5
    first = min(r["at"] for r in tenant.sim_requests())
    assert send_at - 0.5 <= first <= send_at + 3


def test_transactional_send_during_a_campaign_stays_within_budget(
    stack: dict[str, Any], settings: Settings, sim_url: str, api_url: str, http: httpx.Client
) -> None:
    tenant = make_tenant(settings, sim_url, api_url, http, rate_per_s=100)
    import_contacts(tenant, [{"id": f"t{i}", "phone": phone(i), "name": "T"} for i in range(800)])
    campaign = create(tenant, shipping("busy", {"all": True}))
    assert call(tenant, "POST", f"/{campaign['id']}/send").status_code == 202
    wait_stat(tenant, campaign["id"], lambda s: s["sent"] >= 100, 30)
    latencies = []
    for _ in range(5):
        started = time.monotonic()
        response = tenant.send(
            {
                "to": "+919876543210",
                "template_name": "order_confirmation",
                "parameters": [{"type": "text", "text": "OTP"}, {"type": "text", "text": "1"}],
            }
        )
        latencies.append(time.monotonic() - started)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "sent"
    assert show(tenant, campaign["id"])["status"] == "sending"  # it was still running
    assert max(latencies) < settings.send_wait_s
    wait_status(tenant, campaign["id"], "completed", 60)


def test_cli_creates_sends_watches_and_lists(tenant: Tenant, service_env: dict[str, str]) -> None:
    import_contacts(
        tenant,
        [{"id": f"v{i}", "phone": phone(i), "name": f"V{i}", "tags": ["vip"]} for i in range(20)],
    )
    created = dispatch(
        service_env,
        "campaigns",
        "create",
        "--account",
        tenant.name,
        "--name",
        "VIP wave",
        "--channel",
        "whatsapp",
        "--template",
        "shipping_update",
        "--param",
        "{{name}}",
        "--tag",
        "vip",
        "--send",
    )
    assert created.returncode == 0, created.stderr
    campaign_id = created.stdout.split()[1]
    assert campaign_id.startswith("cmp_")
    watched = dispatch(service_env, "campaigns", "watch", campaign_id, "--account", tenant.name)
    assert watched.returncode == 0, watched.stderr
    assert "completed" in watched.stdout
    assert show(tenant, campaign_id)["stats"]["sent"] == 20
    listed = dispatch(service_env, "campaigns", "list", "--account", tenant.name)
    assert campaign_id in listed.stdout
    assert "VIP wave" in listed.stdout
    again = dispatch(service_env, "campaigns", "pause", campaign_id, "--account", tenant.name)
    assert again.returncode == 1
    assert "is completed: it cannot be paused" in again.stderr
    bad = dispatch(
        service_env,
        "campaigns",
        "create",
        "--account",
        tenant.name,
        "--name",
        "x",
        "--channel",
        "push",
        "--all",
    )
    assert bad.returncode == 2
    assert "invalid campaign" in bad.stderr
