"""Contacts API: the paths the client SDK calls, against the real API and Valkey."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.conftest import Tenant
from worker.masking import mask_token
from worker.models import Scope

APNS = "a8b2c3d4" * 8
FCM = "fXDtJ9kS:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"


def call(
    tenant: Tenant, method: str, path: str, key: str | None = None, **kwargs: Any
) -> httpx.Response:
    return tenant.http.request(
        method, f"{tenant.api_url}/api/v1/contacts{path}", headers=tenant.auth(key), **kwargs
    )


def test_create_get_update_list_delete(tenant: Tenant) -> None:
    created = call(
        tenant,
        "POST",
        "",
        json={"phone": "+14155552671", "name": "Lee", "attributes": {"plan": "gold", "score": 3}},
    )
    assert created.status_code == 201, created.text
    contact = created.json()["contact"]
    assert contact["id"].startswith("cct_")
    assert contact["attributes"] == {"plan": "gold", "score": 3}

    patched = call(
        tenant,
        "PATCH",
        f"/{contact['id']}",
        json={"email": "lee@example.com", "attributes": {"plan": None, "city": "Oslo"}},
    )
    assert patched.status_code == 200
    after = patched.json()["contact"]
    # PATCH merges: fields not sent stay, a null attribute is removed.
    assert after["name"] == "Lee"
    assert after["phone"] == "+14155552671"
    assert after["email"] == "lee@example.com"
    assert after["attributes"] == {"score": 3, "city": "Oslo"}

    listing = call(tenant, "GET", "", params={"page": 1, "limit": 1}).json()
    assert listing["total"] == 2  # cct_abc123 from the fixture, and Lee
    assert len(listing["contacts"]) == 1
    page2 = call(tenant, "GET", "", params={"page": 2, "limit": 1}).json()
    assert {listing["contacts"][0]["id"], page2["contacts"][0]["id"]} == {
        "cct_abc123",
        contact["id"],
    }

    deleted = call(tenant, "DELETE", f"/{contact['id']}")
    assert deleted.json() == {"success": True, "id": contact["id"], "deleted": True}
    assert call(tenant, "GET", f"/{contact['id']}").status_code == 404
    assert call(tenant, "DELETE", f"/{contact['id']}").status_code == 404


def test_post_with_an_existing_id_is_409(tenant: Tenant) -> None:
    response = call(tenant, "POST", "", json={"id": "cct_abc123", "name": "Dup"})
    assert response.status_code == 409
    assert response.json()["code"] == "contact_exists"
    assert call(tenant, "GET", "/cct_abc123").json()["contact"]["name"] == "Asha"


def test_patch_creates_and_merges_push_tokens(tenant: Tenant) -> None:
    first = call(
        tenant,
        "PATCH",
        "/cct_new",
        json={
            "push_tokens": [{"platform": "fcm", "token": FCM}, {"platform": "apns", "token": APNS}],
        },
    )
    assert first.status_code == 201
    assert first.json()["created"] is True
    again = call(
        tenant,
        "PATCH",
        "/cct_new",
        json={
            "push_tokens": [{"platform": "fcm", "token": FCM}],
        },
    )
    assert again.status_code == 200
    tokens = again.json()["contact"]["push_tokens"]
    # Masked like in every view: the full token is never read back.
    assert [(t["platform"], t["token"]) for t in tokens] == [
        ("apns", mask_token(APNS)),
        ("fcm", mask_token(FCM)),
    ]
    assert FCM not in again.text
    assert APNS not in again.text
    assert all(t["delivered"] == 0 and t["failed"] == 0 for t in tokens)


def test_a_bad_push_token_is_400_naming_the_item_and_stores_nothing(tenant: Tenant) -> None:
    response = call(
        tenant,
        "PATCH",
        "/cct_abc123",
        json={
            "name": "Changed",
            "push_tokens": [
                {"platform": "fcm", "token": FCM},
                {"platform": "apns", "token": "xyz"},
            ],
        },
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_push_token"
    assert body["field"] == "push_tokens[1]"
    assert body["error"].startswith("push_tokens[1]: An APNs token is hexadecimal")
    contact = call(tenant, "GET", "/cct_abc123").json()["contact"]
    assert contact["name"] == "Asha"
    assert contact["push_tokens"] == []


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"phone": "12345"}, "invalid_phone_number", "phone"),
        ({"email": "not-an-email"}, "invalid_request", "email"),
        ({"attributes": ["a", "b"]}, "invalid_request", "attributes"),
    ],
)
def test_bad_contact_fields_are_400(
    tenant: Tenant, body: dict[str, Any], code: str, field: str
) -> None:
    response = call(tenant, "PATCH", "/cct_abc123", json=body)
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == (code, field)


def test_an_invalid_contact_id_in_the_path_is_400(tenant: Tenant) -> None:
    response = call(tenant, "PATCH", "/bad:id", json={"name": "x"})
    assert response.status_code == 400
    assert response.json()["field"] == "contact_id"


def test_contacts_need_the_contacts_scope(tenant: Tenant) -> None:
    send_only = tenant.new_key(Scope.SEND)
    response = call(tenant, "GET", "/cct_abc123", key=send_only)
    assert response.status_code == 403
    assert response.json()["error"] == "This API key lacks the 'contacts' scope"
    contacts_only = tenant.new_key(Scope.CONTACTS)
    assert call(tenant, "GET", "/cct_abc123", key=contacts_only).status_code == 200


def test_unknown_routes_answer_in_the_error_shape(tenant: Tenant) -> None:
    response = tenant.http.get(f"{tenant.api_url}/api/v1/nothing-here", headers=tenant.auth())
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Not Found", "code": "not_found"}


def test_tags_merge_and_leave_their_segments_with_the_contact(tenant: Tenant) -> None:
    from redis import Redis

    from worker.store import keys

    call(tenant, "PATCH", "/cct_tagged", json={"tags": ["vip", "eu"]})
    merged = call(tenant, "PATCH", "/cct_tagged", json={"tags": ["newsletter"]}).json()
    assert merged["contact"]["tags"] == ["eu", "newsletter", "vip"]
    bad = call(tenant, "PATCH", "/cct_tagged", json={"tags": ["has space"]})
    assert (bad.status_code, bad.json()["field"]) == (400, "tags[0]")

    redis = Redis.from_url(tenant.settings.effective_redis_url, decode_responses=True)
    segment = keys.tag_members(tenant.name, "vip")
    assert redis.zrange(segment, 0, -1) == ["cct_tagged"]
    call(tenant, "DELETE", "/cct_tagged")
    assert redis.zrange(segment, 0, -1) == []
    redis.close()
