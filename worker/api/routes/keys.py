"""API keys (scope ``admin``): the paths the platform's SDK calls (``keys.list/create/
get/delete``). A secret is shown once, when the key is made; only its hash is stored.
Deleting a key revokes it: its record stays (listed with ``revoked_at``), and every API
process refuses it from its next request (the key is read from Redis on each request, or
re-checked by the send script: ``worker.api.deps``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from worker.api.deps import AdminKey, RedisDep
from worker.codes import Code
from worker.errors import Rejected
from worker.models import ApiKeyRecord, KeyCreate, iso
from worker.store import accounts

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])
# What new_id("key") makes; anything else is a 404 without a lookup.
KeyIdPath = Annotated[str, Path(pattern=r"^key_[0-9a-z]{1,64}$")]


def view(
    record: ApiKeyRecord, last_used: float | None, secret: str | None = None
) -> dict[str, Any]:
    """A key as the API shows it; its secret only in the answer that made it."""
    shown: dict[str, Any] = {
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "scopes": [s.value for s in record.scopes],
        "created_at": iso(record.created_at),
        # Written at most once a minute per key and API process (worker.api.last_use).
        "last_used_at": iso(last_used),
        "revoked_at": iso(record.revoked_at),
    }
    if secret is not None:
        shown["secret"] = secret
    return shown


async def _own(redis: RedisDep, account: str, key_id: str) -> ApiKeyRecord:
    record = await accounts.get_key(redis, key_id)
    # Another account's key is as unknown as a key that never existed.
    if record is None or record.account != account:
        raise Rejected(Code.KEY_NOT_FOUND, f"API key '{key_id}' not found")
    return record


@router.get("")
async def list_keys(key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    """The account's keys, oldest first, revoked ones included."""
    records = await accounts.list_keys(redis, key.account)
    used = await accounts.last_used(redis, [r.id for r in records])
    return {
        "success": True,
        "keys": [view(r, used.get(r.id)) for r in records],
        "total": len(records),
    }


@router.post("")
async def create_key(body: KeyCreate, key: AdminKey, redis: RedisDep) -> JSONResponse:
    secret, record = await accounts.create_key(redis, key.account, body.scopes, name=body.name)
    return JSONResponse({"success": True, "key": view(record, None, secret)}, 201)


@router.get("/{key_id}")
async def get_key(key_id: KeyIdPath, key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    record = await _own(redis, key.account, key_id)
    used = await accounts.last_used(redis, [record.id])
    return {"success": True, "key": view(record, used.get(record.id))}


@router.delete("/{key_id}")
async def delete_key(key_id: KeyIdPath, key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    """Revoke the key (an admin key may revoke itself); a key already revoked answers the
    same, with when it was revoked."""
    await _own(redis, key.account, key_id)
    record = await accounts.revoke_key(redis, key_id)
    if record is None:  # pragma: no cover (keys are revoked, never deleted)
        raise Rejected(Code.KEY_NOT_FOUND, f"API key '{key_id}' not found")
    return {
        "success": True,
        "id": record.id,
        "revoked": True,
        "revoked_at": iso(record.revoked_at),
    }
