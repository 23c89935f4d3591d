"""Accounts and their API keys. Keys are stored as SHA-256 hashes, never in clear."""

from __future__ import annotations

import hashlib
import time
from typing import cast

from redis.asyncio import Redis

from worker.ids import new_api_key, new_id
from worker.models import ACCOUNT_ID_RE, SCOPES_VERSION, ApiKeyRecord, Scope
from worker.store import keys
from worker.store.client import fields, get_str, smembers_str


class AccountExistsError(Exception):
    pass


class UnknownAccountError(Exception):
    pass


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def validate_account_id(account_id: str) -> str:
    if not ACCOUNT_ID_RE.fullmatch(account_id):
        raise ValueError(
            f"account name {account_id!r} must be 1-63 characters of a-z, 0-9, '_' or '-', "
            "starting with a letter or digit"
        )
    if account_id in keys.GLOBAL_SEGMENTS:
        raise ValueError(
            f"account name {account_id!r} is reserved (the service's own records use it); "
            "choose another"
        )
    return account_id


async def create_account(redis: Redis, account_id: str) -> None:
    validate_account_id(account_id)
    added = await redis.sadd(keys.accounts(), account_id)
    if not added:
        raise AccountExistsError(account_id)
    await redis.hset(
        keys.account(account_id), mapping=fields({"id": account_id, "created_at": time.time()})
    )


async def account_exists(redis: Redis, account_id: str) -> bool:
    return bool(await redis.sismember(keys.accounts(), account_id))


async def require_account(redis: Redis, account_id: str) -> None:
    if not await account_exists(redis, account_id):
        raise UnknownAccountError(account_id)


async def list_accounts(redis: Redis) -> list[str]:
    return sorted(await smembers_str(redis, keys.accounts()))


async def create_key(
    redis: Redis, account_id: str, scopes: list[Scope], name: str | None = None
) -> tuple[str, ApiKeyRecord]:
    """Create a key; the secret is returned once and only its hash is stored."""
    await require_account(redis, account_id)
    secret = new_api_key()
    key_hash = hash_key(secret)
    record = ApiKeyRecord(
        id=new_id("key"),
        account=account_id,
        scopes=sorted(set(scopes)),
        prefix=secret[:8],
        created_at=time.time(),
        name=name,
        scopes_version=SCOPES_VERSION,
    )
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.api_key(key_hash), record.model_dump_json())
        pipe.set(keys.api_key_id(record.id), key_hash)
        pipe.sadd(keys.account_keys(account_id), record.id)
        await pipe.execute()
    return secret, record


async def resolve_key(redis: Redis, secret: str) -> ApiKeyRecord | None:
    raw = await get_str(redis, keys.api_key(hash_key(secret)))
    return ApiKeyRecord.model_validate_json(raw) if raw else None


async def list_keys(redis: Redis, account_id: str | None = None) -> list[ApiKeyRecord]:
    """Oldest first; revoked keys included."""
    accounts = [account_id] if account_id else await list_accounts(redis)
    records: list[ApiKeyRecord] = []
    for acc in accounts:
        records += await _records(redis, sorted(await smembers_str(redis, keys.account_keys(acc))))
    return sorted(records, key=lambda r: r.created_at)


async def _records(redis: Redis, key_ids: list[str]) -> list[ApiKeyRecord]:
    # Two round trips for any number of keys (id → hash, then hash → record), rather
    # than two per key.
    if not key_ids:
        return []
    hashes = cast(list[str | None], await redis.mget([keys.api_key_id(k) for k in key_ids]))
    found = [h for h in hashes if h]
    raws = cast(
        list[str | None], await redis.mget([keys.api_key(h) for h in found]) if found else []
    )
    return [ApiKeyRecord.model_validate_json(raw) for raw in raws if raw]


async def get_key(redis: Redis, key_id: str) -> ApiKeyRecord | None:
    found = await _records(redis, [key_id])
    return found[0] if found else None


async def note_used(redis: Redis, key_id: str, at: float) -> None:
    """Record that the key was used at ``at`` (the API calls this at most once a minute
    per key: ``worker.api.last_use``)."""
    await redis.hset(keys.api_key_last_used(), key_id, str(at))


async def last_used(redis: Redis, key_ids: list[str]) -> dict[str, float]:
    """key id → when it was last used, for those of ``key_ids`` ever used."""
    if not key_ids:
        return {}
    values = cast(list[str | None], await redis.hmget(keys.api_key_last_used(), key_ids))
    return {k: float(v) for k, v in zip(key_ids, values, strict=True) if v is not None}


async def revoke_key(redis: Redis, key_id: str) -> ApiKeyRecord | None:
    key_hash = await get_str(redis, keys.api_key_id(key_id))
    raw = await get_str(redis, keys.api_key(key_hash)) if key_hash else None
    if not key_hash or not raw:
        return None
    record = ApiKeyRecord.model_validate_json(raw)
    if record.revoked_at is None:
        record.revoked_at = time.time()
        await redis.set(keys.api_key(key_hash), record.model_dump_json())
    return record
