"""Provider rules end to end, through the real libraries and the strict simulator: what
FCM, APNs and Meta refuse is either sent right or refused by our API before anything is
stored."""

from __future__ import annotations

import time
from typing import Any

from tests.integration.conftest import FCM_TOKEN_1, PushTenant, Tenant
from tests.support import dispatch, run_async, wait_until
from worker.masking import mask_token
from worker.models.push_payload import Notification, apns_payload, apns_wire_bytes
from worker.sim.credentials import apns_key
from worker.store import keys, tokens

FID = "cXDtJ9kSQ0eoKMwt2KZFBa"  # a Firebase installation id: 22 characters
SPEC_PUSH: dict[str, Any] = {
    "contact_id": "cct_abc123",
    "title": "Your order has shipped!",
    "message": "Order #ORD-98765 is on its way.",
}


def _send_whatsapp(tenant: Tenant, *parameters: str) -> Any:
    return tenant.send(
        {
            "to": "+919876543210",
            "template_name": "order_confirmation",
            "parameters": [{"type": "text", "text": p} for p in parameters],
        }
    )


def test_a_registration_token_goes_in_token_and_an_installation_id_in_fid(
    push_tenant: PushTenant,
) -> None:
    assert push_tenant.register("cct_abc123", ("fcm", FCM_TOKEN_1), ("fcm", FID)).is_success

    response = push_tenant.push(SPEC_PUSH)

    assert response.status_code == 200, response.text
    assert (response.json()["delivered"], response.json()["failed"]) == (2, 0)
    targets = {
        (k, r["body"]["message"][k])
        for r in push_tenant.push_requests("fcm")
        for k in ("token", "fid")
        if k in r["body"]["message"]
    }
    assert targets == {("token", FCM_TOKEN_1), ("fid", FID)}
    assert all(r["status"] == 200 for r in push_tenant.push_requests("fcm"))


def test_a_parameter_meta_refuses_is_422_before_anything_is_stored(tenant: Tenant) -> None:
    cases = {
        "ORD\n1": "template_parameter_invalid",
        "ORD\t1": "template_parameter_invalid",
        "ORD     1": "template_parameter_invalid",  # five spaces
        "   ": "template_parameter_invalid",  # empty once trimmed
    }
    for text, code in cases.items():
        response = _send_whatsapp(tenant, text, "$49.99")
        assert response.status_code == 422, (text, response.text)
        assert response.json()["code"] == code
        assert response.json()["field"] == "parameters[0].text"
    # Each parameter fits, the filled-in body does not (1,024 characters).
    response = _send_whatsapp(tenant, "A" * 600, "B" * 600)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "template_body_too_long"
    assert tenant.sim_requests() == []
    # Four spaces are allowed, as Meta allows them.
    assert _send_whatsapp(tenant, "ORD    1", "$49.99").status_code == 200


def test_a_wave_of_expired_provider_token_answers_mints_one_new_token(
    push_tenant: PushTenant,
) -> None:
    """200 streams sent with the same provider token answer 403 ExpiredProviderToken: one
    new token is signed, and Apple (which refuses a key's new token sooner than its
    refresh interval after the last) accepts it; every device is delivered."""
    key_id = push_tenant.key_id
    http, sim = push_tenant.http, push_tenant.sim_url
    tokens = [("apns", f"{i + 1:064x}") for i in range(200)]
    for start in range(0, 200, 100):
        assert push_tenant.register("cct_abc123", *tokens[start : start + 100]).is_success
    first = push_tenant.push(SPEC_PUSH)
    assert first.json()["delivered"] == 200, first.text
    # As if an hour had passed: this key's tokens now expire after 2 s, and a new one is
    # accepted 1 s after the last.
    spec = http.get(f"{sim}/_sim/apns/keys/{key_id}").json()
    spec.update(token_max_age_s=2, token_min_refresh_s=1)
    http.put(f"{sim}/_sim/apns/keys/{key_id}", json=spec).raise_for_status()
    time.sleep(2.5)

    second = push_tenant.push(SPEC_PUSH)

    body = second.json()
    if body["status"] != "sent":  # the retried devices may still be on their way
        wait_until(
            lambda: push_tenant.get(f"/api/v1/messages/{body['id']}").json()["status"] == "sent",
            30,
            "the retried devices",
        )
    detail = push_tenant.get(f"/api/v1/messages/{body['id']}").json()
    assert detail["delivered"] == 200, detail
    expired = [
        r for r in push_tenant.push_requests("apns") if r.get("reason") == "ExpiredProviderToken"
    ]
    assert len(expired) >= 100  # the streams in flight with the old token
    stats = http.get(f"{sim}/_sim/stats").json()
    assert stats["apns_jwts_seen"][key_id] == 2  # the first token and exactly one new one
    assert stats["apns_token_updates_refused"].get(key_id, 0) == 0


def _with_apns_wire_size(size: int) -> dict[str, Any]:
    """The spec's push with a data value padded so aioapns puts ``size`` bytes on the wire."""
    pad = 0
    while True:
        body = {**SPEC_PUSH, "data": {"pad": "x" * pad}}
        note = Notification(body["title"], body["message"], data=body["data"])
        wire = len(apns_wire_bytes(apns_payload(note)))
        if wire >= size:
            assert wire == size
            return body
        pad += size - wire


def test_a_payload_is_measured_as_aioapns_puts_it_on_the_wire(push_tenant: PushTenant) -> None:
    assert push_tenant.register("cct_abc123", ("apns", "a8b2cd3e" * 8)).is_success

    fits = push_tenant.push(_with_apns_wire_size(4090))
    too_big = push_tenant.push(_with_apns_wire_size(4100))

    assert fits.status_code == 200, fits.text
    assert fits.json()["delivered"] == 1
    assert too_big.status_code == 400, too_big.text
    assert too_big.json()["code"] == "payload_too_large"
    assert "APNs 4100 bytes" in too_big.json()["error"]
    assert len(push_tenant.push_requests("apns")) == 1


def test_a_data_key_fcm_reserves_is_400_naming_it(push_tenant: PushTenant) -> None:
    assert push_tenant.register("cct_abc123", ("fcm", FCM_TOKEN_1)).is_success
    for key in ("from", "message_type", "google.c.a.e", "gcm.notification.title"):
        response = push_tenant.push({**SPEC_PUSH, "data": {"order": "1", key: "x"}})
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "reserved_data_key"
        assert response.json()["field"] == "data"
        assert f"'{key}'" in response.json()["error"]
    assert push_tenant.push_requests("fcm") == []


def test_invalid_apns_credentials_stop_the_channel_instead_of_retrying_each_device(
    push_tenant: PushTenant,
) -> None:
    """InvalidProviderToken: the key, key id or team is wrong: like an expired access token
    elsewhere, the account's APNs sends stop (403 with the reason) instead of each device
    being retried."""
    http, sim = push_tenant.http, push_tenant.sim_url
    spec = http.get(f"{sim}/_sim/apns/keys/{push_tenant.key_id}").json()
    spec["public_key_pem"] = apns_key().public_key_pem  # Apple no longer knows our key
    http.put(f"{sim}/_sim/apns/keys/{push_tenant.key_id}", json=spec).raise_for_status()
    assert push_tenant.register("cct_abc123", ("apns", "a8b2cd3e" * 8)).is_success

    first = push_tenant.push(SPEC_PUSH).json()
    assert (first["delivered"], first["failed"], first["status"]) == (0, 1, "failed")
    assert first["results"][0]["code"] == "channel_auth_failed"
    refused = push_tenant.push_requests("apns")
    assert [r["reason"] for r in refused] == ["InvalidProviderToken"]

    again = push_tenant.push(SPEC_PUSH).json()
    assert again["results"][0]["code"] == "channel_suspended"
    assert "APNs refused this account's credentials" in again["results"][0]["error"]
    assert len(push_tenant.push_requests("apns")) == 1  # nothing more was tried
    [device] = push_tenant.get("/api/v1/contacts/cct_abc123").json()["contact"]["push_tokens"]
    assert device["failed"] == 0  # not the device's fault: still registered, nothing counted


def test_tokens_idle_past_the_limit_are_reported_and_no_longer_sent_to(
    push_tenant: PushTenant, service_env: dict[str, str]
) -> None:
    """FCM expires Android tokens inactive for 270 days: a token with no delivery nor
    registration in that long is listed as stale, then no longer sent to."""
    fresh, idle, revived = (
        FCM_TOKEN_1,
        "dEad0000:APA91b-idle-for-three-hundred-days",
        "eBack111:APA91b-registered-again-recently",
    )
    assert push_tenant.register("cct_abc123", ("fcm", fresh), ("fcm", idle), ("fcm", revived))
    day, now = 86400, time.time()

    async def age(redis: Any) -> None:
        for token, fields in (
            (
                idle,
                {
                    "registered_at": now - 400 * day,
                    "last_registered_at": now - 400 * day,
                    "last_success_at": now - 300 * day,
                },
            ),
            (revived, {"registered_at": now - 400 * day, "last_registered_at": now - 10 * day}),
        ):
            await redis.hset(
                keys.push_token(push_tenant.name, tokens.member("fcm", token)), mapping=fields
            )

    run_async(age, push_tenant.settings)
    stale = dispatch(service_env, "tokens", "stats", "--account", push_tenant.name, "--stale")
    assert stale.returncode == 0, stale.stderr
    # Idle: no delivery in 300 days. Revived: registered again 10 days ago, not stale.
    assert "1 stale (idle 30+ days)" in stale.stdout
    assert mask_token(idle) in stale.stdout
    assert mask_token(fresh) not in stale.stdout
    assert mask_token(revived) not in stale.stdout

    expired = dispatch(service_env, "tokens", "expire", "--account", push_tenant.name)
    assert expired.returncode == 0, expired.stderr
    assert "1 token(s) idle too long" in expired.stdout

    response = push_tenant.push(SPEC_PUSH)
    assert (response.json()["delivered"], response.json()["device_count"]) == (2, 2)
    sent_to = {r["body"]["message"]["token"] for r in push_tenant.push_requests("fcm")}
    assert sent_to == {fresh, revived}
    listed = dispatch(service_env, "tokens", "stats", "--account", push_tenant.name)
    assert "pruned: inactive: no delivery in 270 days" in listed.stdout
