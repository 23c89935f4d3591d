"""API keys through the API (real API processes, real Valkey): the SDK's
``keys.list/create/get/delete``, the secret shown once, scopes checked, last use
recorded, and a revoked key refused from its next request in every API process."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.conftest import SPEC_BODY, ApiFactory, Tenant
from worker.models import Scope

PATH = "/api/v1/keys"


def _create(tenant: Tenant, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return tenant.http.post(f"{tenant.api_url}{PATH}", json=body, headers=tenant.auth(key))


def _delete(tenant: Tenant, key_id: str, key: str | None = None) -> httpx.Response:
    return tenant.http.delete(f"{tenant.api_url}{PATH}/{key_id}", headers=tenant.auth(key))


def test_create_use_list_get(tenant: Tenant) -> None:
    created = _create(tenant, {"scopes": ["send"], "name": "checkout web app"})
    assert created.status_code == 201, created.text
    made = created.json()["key"]
    secret = made["secret"]
    assert secret.startswith("msk_")
    assert made["prefix"] == secret[:8]
    assert (made["name"], made["scopes"]) == ("checkout web app", ["send"])
    assert made["last_used_at"] is None
    assert made["revoked_at"] is None
    assert made["created_at"].endswith("Z")

    # The secret works, for what its scope allows.
    sent = tenant.send(SPEC_BODY, key=secret)
    assert sent.status_code == 200, sent.text
    assert tenant.get(f"/api/v1/messages/{sent.json()['id']}", key=secret).status_code == 200
    assert tenant.get("/api/v1/contacts/cct_abc123", key=secret).status_code == 403

    shown = tenant.get(f"{PATH}/{made['id']}")
    assert shown.status_code == 200, shown.text
    key = shown.json()["key"]
    assert "secret" not in key  # shown once, at creation
    assert secret not in shown.text
    assert key["last_used_at"] is not None  # the send above
    assert {k: v for k, v in key.items() if k != "last_used_at"} == {
        k: v for k, v in made.items() if k not in ("secret", "last_used_at")
    }

    listed = tenant.get(PATH)
    assert listed.status_code == 200
    body = listed.json()
    assert secret not in listed.text
    # Oldest first: the tenant's own all-scopes key, then the one made here.
    assert [k["id"] for k in body["keys"]][-1] == made["id"]
    assert body["total"] == len(body["keys"]) == 2
    assert body["keys"][0]["scopes"] == sorted(s.value for s in Scope)
    assert body["keys"][0]["last_used_at"] is not None  # the tenant's key made these calls


def test_scopes_and_name_are_checked(tenant: Tenant) -> None:
    unknown = _create(tenant, {"scopes": ["send", "everything"]})
    assert unknown.status_code == 400, unknown.text
    assert unknown.json()["code"] == "invalid_request"
    assert unknown.json()["field"].startswith("scopes")
    for body in ({"scopes": []}, {}, {"scopes": "send"}):
        refused = _create(tenant, body)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["field"].startswith("scopes"), body
    long = _create(tenant, {"scopes": ["send"], "name": "x" * 101})
    assert long.status_code == 400
    assert long.json()["field"] == "name"
    assert _create(tenant, {"scopes": ["send"], "name": "x" * 100}).status_code == 201
    # Nothing was made by the refused ones.
    assert tenant.get(PATH).json()["total"] == 2


def test_only_an_admin_key_manages_keys(tenant: Tenant) -> None:
    not_admin = tenant.new_key(Scope.SEND, Scope.CAMPAIGNS, Scope.CONTACTS, Scope.WEBHOOKS)
    own_id = tenant.get(PATH).json()["keys"][0]["id"]
    for method, path, body in (
        ("GET", PATH, None),
        ("POST", PATH, {"scopes": ["admin"]}),
        ("GET", f"{PATH}/{own_id}", None),
        ("DELETE", f"{PATH}/{own_id}", None),
    ):
        response = tenant.http.request(
            method, f"{tenant.api_url}{path}", json=body, headers=tenant.auth(not_admin)
        )
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["code"] == "insufficient_scope"
    assert tenant.get(f"{PATH}/{own_id}").json()["key"]["revoked_at"] is None
    assert tenant.get(PATH).json()["total"] == 2  # the admin POST made nothing
    assert tenant.get(PATH, key="msk_nope").status_code == 401


def test_another_accounts_keys_are_invisible(tenant: Tenant, other_tenant: Tenant) -> None:
    theirs = _create(other_tenant, {"scopes": ["send"]}).json()["key"]
    for response in (
        tenant.get(f"{PATH}/{theirs['id']}"),
        _delete(tenant, theirs["id"]),
        tenant.get(f"{PATH}/key_doesnotexist"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "key_not_found"
    assert theirs["id"] not in tenant.get(PATH).text
    # Still usable: the other account's DELETE did nothing.
    assert other_tenant.send(SPEC_BODY, key=theirs["secret"]).status_code == 200


def test_a_deleted_key_is_refused_from_its_next_request(tenant: Tenant) -> None:
    made = _create(tenant, {"scopes": ["send"]}).json()["key"]
    secret = made["secret"]
    # Used first, so the API process remembers the key (the send path's memory).
    sent = tenant.send(SPEC_BODY, key=secret, **{"Idempotency-Key": "order-1"})
    assert sent.status_code == 200, sent.text
    message_path = f"/api/v1/messages/{sent.json()['id']}"
    assert tenant.get(message_path, key=secret).status_code == 200

    deleted = _delete(tenant, made["id"])
    assert deleted.status_code == 200, deleted.text
    answer = deleted.json()
    assert answer["success"] is True
    assert (answer["id"], answer["revoked"]) == (made["id"], True)
    assert answer["revoked_at"].endswith("Z")

    refused = tenant.send(SPEC_BODY, key=secret)
    assert refused.status_code == 401, refused.text
    assert refused.json()["code"] == "unauthorized"
    # Nor does a replay of an earlier send answer it (no send script runs for a replay).
    replay = tenant.send(SPEC_BODY, key=secret, **{"Idempotency-Key": "order-1"})
    assert replay.status_code == 401, replay.text
    assert tenant.get(message_path, key=secret).status_code == 401

    # Idempotent: deleting again answers the same, revoked when it first was.
    again = _delete(tenant, made["id"])
    assert again.status_code == 200
    assert again.json() == answer
    shown = tenant.get(f"{PATH}/{made['id']}").json()["key"]
    assert shown["revoked_at"] == answer["revoked_at"]
    listed = tenant.get(PATH).json()
    assert [k["revoked_at"] for k in listed["keys"] if k["id"] == made["id"]] == [
        answer["revoked_at"]
    ]


def test_revocation_reaches_every_api_process(tenant: Tenant, api_process: ApiFactory) -> None:
    other_api = api_process()
    made = _create(tenant, {"scopes": ["send", "contacts"]}).json()["key"]
    secret = made["secret"]
    auth = tenant.auth(secret)
    # Both processes have seen (and remember) the key.
    for url in (tenant.api_url, other_api):
        sent = tenant.http.post(
            f"{url}/api/v1/channels/whatsapp/send", json=SPEC_BODY, headers=auth
        )
        assert sent.status_code == 200, sent.text
        assert tenant.http.get(f"{url}/api/v1/contacts/cct_abc123", headers=auth).status_code == 200

    assert _delete(tenant, made["id"]).status_code == 200  # through the first process

    for url in (other_api, tenant.api_url):
        sent = tenant.http.post(
            f"{url}/api/v1/channels/whatsapp/send", json=SPEC_BODY, headers=auth
        )
        assert sent.status_code == 401, (url, sent.text)
        read = tenant.http.get(f"{url}/api/v1/contacts/cct_abc123", headers=auth)
        assert read.status_code == 401, (url, read.text)


def test_an_admin_key_may_revoke_itself(tenant: Tenant) -> None:
    made = _create(tenant, {"scopes": ["admin"], "name": "rotate me"}).json()["key"]
    assert tenant.get(PATH, key=made["secret"]).status_code == 200
    assert _delete(tenant, made["id"], key=made["secret"]).status_code == 200
    after = tenant.get(PATH, key=made["secret"])
    assert after.status_code == 401
    assert after.json()["code"] == "unauthorized"
