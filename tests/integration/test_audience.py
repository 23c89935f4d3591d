"""Audience control end to end: a recipient's opt-outs (the API's, an inbound STOP), what
they refuse (a marketing send: 422, nothing stored or sent) and what they never touch (a
transactional one, unless its caller asks), and a campaign skipping them by reason."""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

import pytest

from tests.integration.conftest import PushTenant, Tenant
from tests.integration.test_campaigns import call, create, import_contacts, wait_status
from tests.support import wait_until
from worker.models import iso

TEMPLATE = {
    "template_name": "order_confirmation",
    "parameters": [{"type": "text", "text": "A"}] * 2,
}


def _contact(tenant: Tenant, contact_id: str) -> dict[str, Any]:
    response = tenant.get(f"/api/v1/contacts/{contact_id}")
    assert response.status_code == 200, response.text
    contact: dict[str, Any] = response.json()["contact"]
    return contact


def _patch(tenant: Tenant, contact_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = tenant.http.patch(
        f"{tenant.api_url}/api/v1/contacts/{contact_id}", json=body, headers=tenant.auth()
    )
    assert response.status_code in (200, 201), response.text
    contact: dict[str, Any] = response.json()["contact"]
    return contact


def _sent_to(tenant: Tenant) -> list[str]:
    """The numbers the simulator got sends for, in E.164 (Graph API bodies drop the +)."""
    return [
        "+" + r["body"]["to"].lstrip("+")
        for r in tenant.sim_requests()
        if "to" in r.get("body", {})
    ]


def test_an_inbound_stop_skips_marketing_while_an_otp_still_goes_and_start_reverses_it(
    tenant: Tenant,
) -> None:
    people = [
        {"id": f"aud{i}", "name": f"P{i}", "phone": f"+9198761{i:05d}", "tags": ["aud"]}
        for i in range(5)
    ]
    import_contacts(tenant, people)
    stopper = people[2]["phone"]

    assert tenant.inbound(stopper, "  stop ")["webhook_status"] == 200
    shown = _contact(tenant, "aud2")["preferences"]["opted_out"]
    assert [(p["channel"], p["category"], p["source"]) for p in shown] == [
        ("whatsapp", "marketing", "inbound:STOP")
    ]

    # A marketing send to the number: refused whole, nothing stored, nothing sent.
    before = len(tenant.sim_requests())
    refused = tenant.send({"to": stopper, **TEMPLATE, "category": "marketing"})
    assert refused.status_code == 422, refused.text
    error = refused.json()
    assert error["code"] == "recipient_opted_out"
    assert error["field"] == "category"
    assert error["opted_out"] == {"channel": "whatsapp", "category": "marketing"}
    assert "opted out of whatsapp marketing" in error["error"]
    # The OTP (transactional, the default) still goes.
    otp = tenant.send({"to": stopper, **TEMPLATE})
    assert otp.status_code == 200, otp.text
    assert otp.json()["status"] == "sent"
    assert len(tenant.sim_requests()) == before + 1

    # The campaign (marketing by default) skips the number that wrote STOP.
    campaign = _draft(tenant, "promo", "aud")
    assert campaign["category"] == "marketing"
    assert call(tenant, "POST", f"/{campaign['id']}/send").status_code == 202
    done = wait_status(tenant, campaign["id"], "completed", 30)
    assert done["stats"]["sent"] == 4
    assert done["stats"]["skipped_by_reason"] == {"opted_out": 1}
    assert stopper not in _sent_to(tenant)[-4:]

    # START: the number's marketing goes again.
    tenant.inbound(stopper, "START")
    assert _contact(tenant, "aud2")["preferences"]["opted_out"] == []
    again = tenant.send({"to": stopper, **TEMPLATE, "category": "marketing"})
    assert again.status_code == 200, again.text


def test_preferences_through_the_api_refuse_what_they_name_and_nothing_else(
    push_tenant: PushTenant,
) -> None:
    tenant = push_tenant
    contact = _patch(
        tenant,
        "pref1",
        {
            "phone": "+919876200001",
            "push_tokens": [{"platform": "fcm", "token": "fcm-pref1:APA91b-audience-test"}],
            "preferences": {"opt_out": [{"channel": "push", "category": "marketing"}]},
        },
    )
    [only] = contact["preferences"]["opted_out"]
    assert (only["channel"], only["category"], only["source"]) == ("push", "marketing", "api")
    assert only["at"].endswith("Z")

    push = {"contact_id": "pref1", "title": "Sale", "message": "Half off"}
    before = len(tenant.push_requests("fcm"))
    refused = tenant.push({**push, "category": "marketing"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "recipient_opted_out"
    # Another category, the other channel, and a transactional push all go.
    assert tenant.push({**push, "category": "newsletter"}).status_code == 200
    assert tenant.push(push).status_code == 200
    whatsapp = tenant.send(
        {"to": "+919876200001", "contact_id": "pref1", **TEMPLATE, "category": "marketing"}
    )
    assert whatsapp.status_code == 200, whatsapp.text
    wait_until(lambda: len(tenant.push_requests("fcm")) == before + 2, 15, "two pushes")

    # Opted out of everything: a transactional send goes unless its caller asks.
    _patch(tenant, "pref1", {"preferences": {"opt_out": [{}]}})
    assert tenant.push(push).status_code == 200
    asked = tenant.push({**push, "respect_preferences": True})
    assert asked.status_code == 422, asked.text
    assert asked.json()["opted_out"] == {"channel": None, "category": None}

    # Opting back in lifts exactly what it names.
    contact = _patch(
        tenant,
        "pref1",
        {"preferences": {"opt_in": [{}, {"channel": "push", "category": "marketing"}]}},
    )
    assert contact["preferences"]["opted_out"] == []
    assert tenant.push({**push, "category": "marketing"}).status_code == 200


def test_a_bad_category_or_preference_is_a_clear_400(tenant: Tenant) -> None:
    bad = tenant.send({"to": "+919876200002", **TEMPLATE, "category": "Not A Name"})
    assert bad.status_code == 400, bad.text
    assert "category" in bad.json()["error"]
    response = tenant.http.patch(
        f"{tenant.api_url}/api/v1/contacts/pref2",
        json={"preferences": {"opt_out": [{"channel": "sms"}]}},
        headers=tenant.auth(),
    )
    assert response.status_code == 400, response.text
    assert tenant.get("/api/v1/contacts/pref2").status_code == 404  # nothing stored


def test_an_otp_past_its_ttl_ends_expired_and_is_never_sent_late(tenant: Tenant) -> None:
    # The provider's throughput error asks to come back in 3 s; the OTP is worth 1 s.
    tenant.fault(kind="error", code=130429, retry_after_s=3, count=1)
    try:
        response = tenant.send(
            {"to": "+919876200003", **TEMPLATE, "ttl_s": 1}, Prefer="respond-async"
        )
        assert response.status_code == 202, response.text
        message_id = response.json()["id"]

        def ended() -> dict[str, Any] | None:
            detail: dict[str, Any] = tenant.get(f"/api/v1/messages/{message_id}").json()
            return detail if detail["status"] == "failed" else None

        detail = wait_until(ended, 15, "the OTP to end")
    finally:
        tenant.http.delete(f"{tenant.sim_url}/_sim/faults")
    assert detail["code"] == "expired"
    assert "Expired at" in detail["error"]
    assert detail["expires_at"] is not None
    # One attempt (the refused one), none after the expiry: never delivered late.
    assert [a["outcome"] for a in detail["attempts"]] == ["retry", "failed"]
    assert len([r for r in tenant.sim_requests() if r["body"].get("to") == "919876200003"]) == 1
    # Counted as failed, not a dead letter: its sender asked for it to end so.
    letters = tenant.get("/api/v1/dead-letters").json()
    assert message_id not in [
        d["id"] for d in letters.get("dead_letters", letters.get("items", []))
    ]


def test_an_expiry_is_checked_as_given(tenant: Tenant) -> None:
    both = tenant.send(
        {"to": "+919876200004", **TEMPLATE, "ttl_s": 5, "expires_at": "2099-01-01T00:00:00Z"}
    )
    assert both.status_code == 400, both.text
    past = tenant.send({"to": "+919876200004", **TEMPLATE, "expires_at": "2020-01-01T00:00:00Z"})
    assert past.status_code == 400, past.text
    assert "past" in past.json()["error"]
    assert tenant.send({"to": "+919876200004", **TEMPLATE, "ttl_s": "5"}).status_code == 400


def _draft(tenant: Tenant, name: str, tag: str, **extra: Any) -> dict[str, Any]:
    """A WhatsApp campaign's draft to the tag, of shipping_update with the contact's name."""
    return create(
        tenant,
        {
            "name": name,
            "channel": "whatsapp",
            "content": {"template_name": "shipping_update", "parameters": ["{{name}}"]},
            "audience": {"segment": {"tag": tag}},
            **extra,
        },
    )


def _campaign(tenant: Tenant, name: str, tag: str, **extra: Any) -> dict[str, Any]:
    campaign = _draft(tenant, name, tag, **extra)
    assert call(tenant, "POST", f"/{campaign['id']}/send").status_code == 202
    return wait_status(tenant, campaign["id"], "completed", 30)


def test_a_cap_of_one_a_day_holds_across_two_campaigns(tenant: Tenant) -> None:
    people = [
        {"id": f"cap{i}", "name": f"C{i}", "phone": f"+9198762{i:05d}", "tags": ["capped"]}
        for i in range(3)
    ]
    import_contacts(tenant, people)
    caps_url = f"{tenant.api_url}/api/v1/settings/frequency_caps"
    put = tenant.http.put(
        caps_url, json={"whatsapp": {"max": 1, "window_s": 86400}}, headers=tenant.auth()
    )
    assert put.status_code == 200, put.text
    assert put.json()["frequency_caps"] == {
        "whatsapp": {"max": 1, "window_s": 86400},
        "push": None,
    }

    first = _campaign(tenant, "monday", "capped")
    assert first["stats"]["sent"] == 3
    second = _campaign(tenant, "monday again", "capped")
    assert second["stats"]["sent"] == 0
    assert second["stats"]["skipped_by_reason"] == {"frequency_cap": 3}
    # A transactional campaign and an OTP are not capped.
    otp = tenant.send({"to": people[0]["phone"], **TEMPLATE})
    assert otp.status_code == 200, otp.text
    receipts = _campaign(tenant, "receipts", "capped", category="transactional")
    assert receipts["stats"]["sent"] == 3

    # Removing the cap lets marketing through again.
    tenant.http.put(caps_url, json={"whatsapp": None}, headers=tenant.auth()).raise_for_status()
    assert _campaign(tenant, "tuesday", "capped")["stats"]["sent"] == 3
    bad = tenant.http.put(
        caps_url, json={"push": {"max": 0, "window_s": 10}}, headers=tenant.auth()
    )
    assert bad.status_code == 400, bad.text


def test_a_push_past_its_ttl_ends_expired_on_the_devices_still_to_do(
    push_tenant: PushTenant,
) -> None:
    tenant = push_tenant
    _patch(
        tenant,
        "exp1",
        {"push_tokens": [{"platform": "fcm", "token": "fcm-exp1:APA91b-audience-expiry"}]},
    )
    tenant.push_fault("fcm", code="QUOTA_EXCEEDED", retry_after_s=3, count=1)
    response = tenant.push(
        {"contact_id": "exp1", "title": "Code", "message": "123456", "ttl_s": 1},
        Prefer="respond-async",
    )
    assert response.status_code == 202, response.text
    message_id = response.json()["id"]

    def ended() -> dict[str, Any] | None:
        detail: dict[str, Any] = tenant.get(f"/api/v1/messages/{message_id}").json()
        return detail if detail["status"] == "failed" else None

    detail = wait_until(ended, 15, "the push to end")
    [device] = detail["results"]
    assert device["code"] == "expired", device
    assert [r["status"] for r in tenant.push_requests("fcm")] == [429]  # nothing late
    letters = tenant.get("/api/v1/dead-letters").json()["dead_letters"]
    assert message_id not in [d["id"] for d in letters]


# --- quiet hours and local send times -------------------------------------------------

# The contact's zone: UTC+5 all year (the Etc zones' sign is POSIX's, inverted).
PLUS_FIVE = "Etc/GMT-5"


def _clock(at: float, offset_h: int) -> str:
    """``at`` as a wall-clock time HH:MM:SS at UTC+offset_h."""
    return time.strftime("%H:%M:%S", time.gmtime(at + offset_h * 3600))


def _put(tenant: Tenant, path: str, body: Any) -> dict[str, Any]:
    response = tenant.http.put(
        f"{tenant.api_url}/api/v1/settings/{path}", json=body, headers=tenant.auth()
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_quiet_hours_put_a_marketing_send_off_to_the_window_end_in_the_contacts_zone(
    tenant: Tenant,
) -> None:
    people = [
        {
            "id": "night",
            "name": "N",
            "phone": "+919876300001",
            "tags": ["quiet"],
            "attributes": {"timezone": PLUS_FIVE},
        },
        {"id": "day", "name": "D", "phone": "+919876300002", "tags": ["quiet"]},
        {
            "id": "changed-mind",
            "name": "C",
            "phone": "+919876300003",
            "tags": ["quiet"],
            "attributes": {"timezone": PLUS_FIVE},
        },
    ]
    import_contacts(tenant, people)
    # A window that holds now at UTC+5 and ends 8 s from now; at UTC (the account's zone,
    # the other contact's) it is hours away.
    end = math.ceil(time.time()) + 8
    window = {"start": _clock(end - 120, 5), "end": _clock(end, 5), "timezone": "UTC"}
    assert _put(tenant, "quiet_hours", window)["quiet_hours"] == window

    # An OTP goes at once; a marketing send to the same contact waits for the window's end.
    otp = tenant.send({"to": "+919876300001", "contact_id": "night", **TEMPLATE})
    assert otp.status_code == 200, otp.text
    held = tenant.send(
        {"to": "+919876300001", "contact_id": "night", **TEMPLATE, "category": "marketing"}
    )
    assert held.status_code == 202, held.text
    assert held.json()["deferred_until"] == iso(end)

    campaign = _draft(tenant, "night sale", "quiet")
    assert call(tenant, "POST", f"/{campaign['id']}/send").status_code == 202

    def day_sent() -> dict[str, Any] | None:
        shown: dict[str, Any] = call(tenant, "GET", f"/{campaign['id']}").json()["campaign"]
        return shown if shown["stats"]["sent"] >= 1 else None

    during = wait_until(day_sent, 5, "the daytime contact's send")
    assert time.time() < end, "the test's window ended before it could look"
    stats = during["stats"]
    assert during["status"] == "sending"
    assert (stats["sent"], stats["deferred"], stats["pending"]) == (1, 2, 2)
    assert stats["deferred_by_reason"] == {"quiet_hours": 2}
    assert stats["deferred_until"] == iso(end)
    assert stats["eta_s"] >= end - time.time() - 1  # the ETA waits for the window's end
    assert _sent_to(tenant).count("+919876300001") == 1  # the OTP only
    # One of the put-off contacts opts out meanwhile: checked again when its time comes.
    _patch(tenant, "changed-mind", {"preferences": {"opt_out": [{"category": "marketing"}]}})

    done = wait_status(tenant, campaign["id"], "completed", 30)
    assert time.time() >= end
    stats = done["stats"]
    assert (stats["sent"], stats["failed"], stats["deferred"]) == (2, 1, 2)
    assert "+919876300003" not in _sent_to(tenant)
    # The held single send went too, after the window: the OTP and the two marketing sends.
    wait_until(lambda: _sent_to(tenant).count("+919876300001") == 3, 10, "the held send")
    detail = tenant.get(f"/api/v1/messages/{held.json()['id']}").json()
    assert detail["status"] == "sent"
    assert detail["deferred_until"] == iso(end)
    assert detail["attempts"][0]["at"] >= iso(end)

    # A campaign may bring its own quiet hours, or none (`false`).
    free = _draft(tenant, "no quiet", "quiet", quiet_hours=False)
    assert free["quiet_hours"] is False


def test_a_local_send_time_sends_each_zone_at_its_own_time_and_a_cancel_ends_the_rest(
    tenant: Tenant,
) -> None:
    people = [
        {
            "id": "east",
            "name": "E",
            "phone": "+919876300011",
            "tags": ["local"],
            "attributes": {"timezone": PLUS_FIVE},
        },
        {"id": "west", "name": "W", "phone": "+919876300012", "tags": ["local"]},
    ]
    import_contacts(tenant, people)
    at = math.ceil(time.time()) + 4
    campaign = _draft(tenant, "good morning", "local", send_at_local=_clock(at, 5))
    assert campaign["send_at_local"] == _clock(at, 5)
    assert call(tenant, "POST", f"/{campaign['id']}/send").status_code == 202

    def east_sent() -> dict[str, Any] | None:
        shown: dict[str, Any] = call(tenant, "GET", f"/{campaign['id']}").json()["campaign"]
        return shown if shown["stats"]["sent"] >= 1 else None

    shown = wait_until(east_sent, 15, "UTC+5's send at its local time")
    assert time.time() >= at
    assert "+919876300011" in _sent_to(tenant)
    assert "+919876300012" not in _sent_to(tenant)  # UTC's time is 5 hours away
    assert shown["stats"]["deferred_by_reason"] == {"local_time": 2}
    assert shown["stats"]["eta_s"] > 4 * 3600

    # Cancelling ends the put-off send now, not in five hours.
    assert call(tenant, "POST", f"/{campaign['id']}/cancel").status_code == 200
    wait_status(tenant, campaign["id"], "cancelled", 15)

    def finished() -> dict[str, Any] | None:
        shown: dict[str, Any] = call(tenant, "GET", f"/{campaign['id']}").json()["campaign"]
        return shown if shown["finished_at"] else None

    done = wait_until(finished, 15, "the cancelled campaign to finish")
    assert (done["stats"]["sent"], done["stats"]["cancelled"]) == (1, 1)
    assert "+919876300012" not in _sent_to(tenant)


def test_audience_settings_refuse_what_they_cannot_mean(tenant: Tenant) -> None:
    url = f"{tenant.api_url}/api/v1/settings"
    for path, body in [
        ("quiet_hours", {"start": "21:00", "end": "21:00"}),
        ("quiet_hours", {"start": "21:00", "end": "08:00", "timezone": "../../etc/passwd"}),
        ("quiet_hours", {"start": "25:00", "end": "08:00"}),
        ("keywords", {"opt_out": ["START"]}),
        ("keywords", {"opt_out": ["x" * 31]}),
        ("expiry", {"default_ttl_s": {"marketing": 0}}),
        ("expiry", {"default_ttl_s": {"Bad Name": 60}}),
    ]:
        response = tenant.http.put(f"{url}/{path}", json=body, headers=tenant.auth())
        assert response.status_code == 400, (path, body, response.text)
        assert response.json()["success"] is False
    assert tenant.get("/api/v1/settings/quiet_hours").json()["quiet_hours"] is None
    bad_zone = call(
        tenant,
        "POST",
        "",
        json={
            "name": "x",
            "channel": "whatsapp",
            "content": {"template_name": "shipping_update", "parameters": ["a"]},
            "audience": {"all": True},
            "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Mars/Base"},
        },
    )
    assert bad_zone.status_code == 400, bad_zone.text
    assert "Mars/Base" in bad_zone.json()["error"]


def test_an_accounts_own_keywords_and_default_expiry(tenant: Tenant) -> None:
    words = _put(tenant, "keywords", {"opt_out": ["arrêt", " Baja "], "opt_in": ["Reprendre"]})
    assert words["keywords"]["opt_out"] == ["ARRÊT", "BAJA"]
    assert words["keywords"]["built_in"]["opt_out"] == ["STOP", "UNSUBSCRIBE"]
    number = "+919876300021"
    marketing = {"to": number, **TEMPLATE, "category": "marketing"}
    tenant.inbound(number, "Arrêt")
    refused = tenant.send(marketing)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "recipient_opted_out"
    tenant.inbound(number, "reprendre")
    assert tenant.send(marketing).status_code == 200

    # A category's default expiry applies to a send that gives none of its own.
    expiry = _put(tenant, "expiry", {"default_ttl_s": {"transactional": 600}})
    assert expiry["expiry"] == {"default_ttl_s": {"transactional": 600}}
    time.sleep(1.1)  # the API reads an account's settings at most once a second
    sent = tenant.send({"to": number, **TEMPLATE})
    detail = tenant.get(f"/api/v1/messages/{sent.json()['id']}").json()
    created = datetime.fromisoformat(detail["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(detail["expires_at"].replace("Z", "+00:00"))
    assert (expires - created).total_seconds() == pytest.approx(600, abs=0.01)
    own = tenant.send({"to": number, **TEMPLATE, "ttl_s": 30})
    detail = tenant.get(f"/api/v1/messages/{own.json()['id']}").json()
    expires = datetime.fromisoformat(detail["expires_at"].replace("Z", "+00:00"))
    created = datetime.fromisoformat(detail["created_at"].replace("Z", "+00:00"))
    assert (expires - created).total_seconds() == pytest.approx(30, abs=0.01)


def test_automation_steps_keep_opt_outs_quiet_hours_and_caps(tenant: Tenant) -> None:
    """A send step is marketing unless it says otherwise: an opted-out contact's step is
    skipped and the run goes on; inside quiet hours the run waits at the step."""
    created = tenant.http.post(
        f"{tenant.api_url}/api/v1/automations",
        json={
            "name": "nurture",
            "trigger": {"type": "event.tracked", "filters": {"event": "signed_up"}},
            "steps": [
                {
                    "type": "send_whatsapp",
                    "template_name": "shipping_update",
                    "parameters": ["now"],
                    "quiet_hours": False,  # this step's own: none
                },
                {"type": "send_whatsapp", "template_name": "shipping_update", "parameters": ["m"]},
                {
                    "type": "send_whatsapp",
                    "template_name": "shipping_update",
                    "parameters": ["t"],
                    "category": "transactional",
                },
            ],
        },
        headers=tenant.auth(),
    )
    assert created.status_code == 201, created.text
    automation = created.json()["automation"]
    assert [s["category"] for s in automation["steps"]] == [
        "marketing",
        "marketing",
        "transactional",
    ]
    tenant.http.patch(
        f"{tenant.api_url}/api/v1/automations/{automation['id']}/activate",
        json={"active": True},
        headers=tenant.auth(),
    ).raise_for_status()
    _patch(
        tenant,
        "au-out",
        {
            "phone": "+919876300031",
            "preferences": {"opt_out": [{"channel": "whatsapp", "category": "marketing"}]},
        },
    )
    _patch(tenant, "au-late", {"phone": "+919876300032", "attributes": {"timezone": PLUS_FIVE}})
    end = math.ceil(time.time()) + 6
    _put(tenant, "quiet_hours", {"start": _clock(end - 60, 5), "end": _clock(end, 5)})
    time.sleep(1.1)  # the workers read an account's settings at most once a second

    def track(contact_id: str) -> None:
        response = tenant.http.post(
            f"{tenant.api_url}/api/v1/track/event",
            json={"contact_id": contact_id, "event": "signed_up"},
            headers=tenant.auth(),
        )
        assert response.status_code == 202, response.text

    def run_of(contact_id: str, status: str) -> dict[str, Any] | None:
        listed = tenant.get(f"/api/v1/automations/{automation['id']}/runs?limit=50").json()
        for run in listed["runs"]:
            if run["contact_id"] == contact_id and run["status"] == status:
                return tenant.get(f"/api/v1/automation-runs/{run['id']}").json()["run"]  # type: ignore[no-any-return]
        return None

    track("au-out")
    track("au-late")
    out = wait_until(lambda: run_of("au-out", "done"), 15, "the opted-out contact's run")
    steps = {s["step"]: s for s in out["timeline"]}
    assert [steps[i]["status"] for i in range(3)] == ["skipped", "skipped", "done"]
    assert steps[0]["reason"] == steps[1]["reason"] == "opted_out"
    # The transactional step only (a step is done when its message is accepted).
    wait_until(lambda: _sent_to(tenant).count("+919876300031") == 1, 10, "the step's send")

    waiting = wait_until(lambda: run_of("au-late", "waiting"), 10, "the run to wait")
    assert time.time() < end
    # The step without quiet hours went; the next one waits for the window's end.
    wait_until(lambda: _sent_to(tenant).count("+919876300032") == 1, 5, "the first step")
    held = {s["step"]: s for s in waiting["timeline"]}[1]
    assert (held["status"], held["reason"], held["until"]) == ("waiting", "quiet_hours", end)
    wait_until(lambda: run_of("au-late", "done"), 20, "the run after quiet hours")
    assert time.time() >= end
    # A send step is done when its message is accepted; the simulator gets it just after.
    wait_until(lambda: _sent_to(tenant).count("+919876300032") == 3, 10, "the steps' sends")


def test_a_contacts_locale_picks_the_template_language_when_only_the_template_is_named(
    tenant: Tenant,
) -> None:
    people = [
        {
            "id": "lc-br",
            "phone": "+919876300041",
            "tags": ["lc"],
            "attributes": {"locale": "pt-BR"},
        },
        {
            "id": "lc-mx",
            "phone": "+919876300042",
            "tags": ["lc"],
            "attributes": {"locale": "es_MX"},
        },
        {"id": "lc-fr", "phone": "+919876300043", "tags": ["lc"], "attributes": {"locale": "fr"}},
        {"id": "lc-none", "phone": "+919876300044", "tags": ["lc"]},
    ]
    import_contacts(tenant, people)

    def languages() -> dict[str, str]:
        return {
            "+" + r["body"]["to"]: r["body"]["template"]["language"]["code"]
            for r in tenant.sim_requests()
            if r["body"].get("template")
        }

    # A single send naming only the template: pt_BR for the Brazilian contact; a language
    # given wins over the locale.
    only = {"template_name": "shipping_update", "parameters": [{"type": "text", "text": "A1"}]}
    sent = tenant.send({"to": "+919876300041", "contact_id": "lc-br", **only})
    assert sent.status_code == 200, sent.text
    assert languages()["+919876300041"] == "pt_BR"
    given = tenant.send({"to": "+919876300042", "contact_id": "lc-mx", **only, "language": "en"})
    assert given.status_code == 200, given.text
    assert languages()["+919876300042"] == "en"

    campaign = create(
        tenant,
        {
            "name": "locales",
            "channel": "whatsapp",
            "content": {"template_name": "shipping_update", "parameters": ["{{name|you}}"]},
            "audience": {"segment": {"tag": "lc"}},
            "category": "transactional",
        },
    )
    assert "language" not in campaign["content"]
    assert call(tenant, "POST", f"/{campaign['id']}/send").status_code == 202
    done = wait_status(tenant, campaign["id"], "completed", 30)
    assert done["stats"]["sent"] == 4
    # The locale, its language alone, then en (fr has no translation; no locale: en).
    assert languages() == {
        "+919876300041": "pt_BR",
        "+919876300042": "es",
        "+919876300043": "en",
        "+919876300044": "en",
    }


def test_over_the_cap_a_campaign_may_defer_to_the_next_window(tenant: Tenant) -> None:
    people = [
        {"id": f"dfr{i}", "name": f"D{i}", "phone": f"+9198763005{i:02d}", "tags": ["dfr"]}
        for i in range(3)
    ]
    import_contacts(tenant, people)
    caps = _put(
        tenant, "frequency_caps", {"whatsapp": {"max": 1, "window_s": 86400}, "over_cap": "defer"}
    )
    assert caps["over_cap"] == "defer"
    time.sleep(1.1)  # the workers read an account's settings at most once a second
    assert _campaign(tenant, "first", "dfr")["stats"]["sent"] == 3

    second = _draft(tenant, "second", "dfr")
    assert call(tenant, "POST", f"/{second['id']}/send").status_code == 202

    def walked() -> dict[str, Any] | None:
        shown: dict[str, Any] = call(tenant, "GET", f"/{second['id']}").json()["campaign"]
        return shown if shown["stats"]["deferred"] == 3 else None

    stats = wait_until(walked, 10, "the walk")["stats"]
    tomorrow = (int(time.time()) // 86400 + 1) * 86400
    assert stats["deferred_by_reason"] == {"frequency_cap": 3}
    assert stats["deferred_until"] == iso(tomorrow)
    assert (stats["sent"], stats["skipped"], stats["pending"]) == (0, 0, 3)
    # The next window's places are taken: a third campaign today is skipped there too.
    third = _campaign(tenant, "third", "dfr")["stats"]
    assert third["skipped_by_reason"] == {"frequency_cap": 3}
    assert call(tenant, "POST", f"/{second['id']}/cancel").status_code == 200
    back = _put(tenant, "frequency_caps", {"whatsapp": None, "over_cap": "skip"})
    assert back["over_cap"] == "skip"


def test_a_put_off_push_checks_opt_outs_again_when_its_time_comes(
    push_tenant: PushTenant,
) -> None:
    tenant = push_tenant
    token = "fcm-later1:APA91b-audience-put-off"
    _patch(tenant, "later1", {"push_tokens": [{"platform": "fcm", "token": token}]})
    end = math.ceil(time.time()) + 4
    _put(tenant, "quiet_hours", {"start": _clock(end - 60, 0), "end": _clock(end, 0)})
    time.sleep(1.1)  # the API reads an account's settings at most once a second
    held = tenant.push(
        {"contact_id": "later1", "title": "Sale", "message": "Tonight", "category": "marketing"}
    )
    assert held.status_code == 202, held.text
    assert held.json()["deferred_until"] == iso(end)
    _patch(tenant, "later1", {"preferences": {"opt_out": [{"channel": "push"}]}})

    def ended() -> dict[str, Any] | None:
        detail: dict[str, Any] = tenant.get(f"/api/v1/messages/{held.json()['id']}").json()
        return detail if detail["status"] == "failed" else None

    detail = wait_until(ended, 15, "the put-off push to end")
    assert time.time() >= end
    [device] = detail["results"]
    assert device["code"] == "recipient_opted_out", device
    assert tenant.push_requests("fcm") == []  # nothing reached the provider
