"""Audience control end to end: a recipient's opt-outs (the API's, an inbound STOP), what
they refuse (a marketing send: 422, nothing stored or sent) and what they never touch (a
transactional one, unless its caller asks), and a campaign skipping them by reason."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import PushTenant, Tenant
from tests.integration.test_campaigns import call, create, import_contacts, wait_status
from tests.support import wait_until

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
    return [r["body"]["to"] for r in tenant.sim_requests() if "to" in r.get("body", {})]


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
    campaign = create(
        tenant,
        {
            "name": "promo",
            "channel": "whatsapp",
            "content": {"template_name": "shipping_update", "parameters": ["{{name}}"]},
            "audience": {"segment": {"tag": "aud"}},
        },
    )
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
