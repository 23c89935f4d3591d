"""Event webhook endpoints: one hash per endpoint (its record and its sealed signing
secret), and the account's endpoints by creation time."""

from __future__ import annotations

import base64
import os
import time

from redis.asyncio import Redis

from worker.models.webhooks import MAX_ENDPOINTS_PER_ACCOUNT, Endpoint

__all__ = [
    "MAX_ENDPOINTS_PER_ACCOUNT",
    "TooManyEndpoints",
    "create",
    "delete",
    "list_all",
    "load",
    "load_secret",
    "new_secret",
    "save",
]
from worker.store import keys, secrets
from worker.store import webhook_deliveries as deliveries
from worker.store.client import fields

# Standard Webhooks' secret form: "whsec_" and the base64 of the key's bytes (24 random
# bytes: 192 bits, as the reference implementations generate).
SECRET_PREFIX = "whsec_"  # noqa: S105 (a format, not a secret)


class TooManyEndpoints(Exception):
    pass


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(24)).decode()


async def create(redis: Redis, endpoint: Endpoint) -> str:
    """Store a new endpoint with a fresh secret; returns the secret (shown once).
    ``TooManyEndpoints`` past the account's limit (counted after adding, so that two
    creations racing cannot both slip under it)."""
    secret = new_secret()
    index = keys.webhooks(endpoint.account)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.webhook(endpoint.account, endpoint.id),
            mapping={"record": endpoint.model_dump_json(), "secret": secrets.box().seal(secret)},
        )
        pipe.zadd(index, {endpoint.id: endpoint.created_at})
        pipe.zcard(index)
        *_, count = await pipe.execute()
    if count > MAX_ENDPOINTS_PER_ACCOUNT:
        await delete(redis, endpoint.account, endpoint.id)
        raise TooManyEndpoints(endpoint.account)
    await refresh_account(redis, endpoint.account)
    return secret


async def load(redis: Redis, account: str, endpoint_id: str) -> Endpoint | None:
    raw = await redis.hget(keys.webhook(account, endpoint_id), "record")
    return Endpoint.model_validate_json(raw) if raw else None


async def load_secret(redis: Redis, account: str, endpoint_id: str) -> str | None:
    sealed = await redis.hget(keys.webhook(account, endpoint_id), "secret")
    if sealed is None:
        return None
    text = sealed.decode() if isinstance(sealed, bytes) else str(sealed)
    return secrets.box().open(text)


async def list_all(redis: Redis, account: str) -> list[Endpoint]:
    ids = [
        i.decode() if isinstance(i, bytes) else str(i)
        for i in await redis.zrange(keys.webhooks(account), 0, -1)
    ]
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for endpoint_id in ids:
            pipe.hget(keys.webhook(account, endpoint_id), "record")
        raws = await pipe.execute()
    return [Endpoint.model_validate_json(raw) for raw in raws if raw]


async def save(redis: Redis, endpoint: Endpoint, *, rotate_secret: bool = False) -> str | None:
    """Write the endpoint's record back (``updated_at`` set now); with ``rotate_secret``, a
    new secret replaces the old one and is returned."""
    endpoint.updated_at = time.time()
    mapping = {"record": endpoint.model_dump_json()}
    secret = new_secret() if rotate_secret else None
    if secret is not None:
        mapping["secret"] = secrets.box().seal(secret)
    await redis.hset(keys.webhook(endpoint.account, endpoint.id), mapping=fields(mapping))
    await refresh_account(redis, endpoint.account)
    if endpoint.active:
        # Deliveries left waiting while it was off are due again.
        await deliveries.set_work(redis, endpoint.account, endpoint.id, endpoint.updated_at)
    return secret


async def delete(redis: Redis, account: str, endpoint_id: str) -> bool:
    """The endpoint and what its deliveries keep (their own records expire)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.webhook(account, endpoint_id))
        pipe.zrem(keys.webhooks(account), endpoint_id)
        deliveries.forget_endpoint(pipe, account, endpoint_id)
        deleted, *_ = await pipe.execute()
    await refresh_account(redis, account)
    return bool(deleted)


async def refresh_account(redis: Redis, account: str) -> None:
    """Keep the account among those whose results write events iff it has an active
    endpoint (workers read that set every few seconds: ``worker.store.events``)."""
    if any(e.active for e in await list_all(redis, account)):
        await redis.sadd(keys.webhook_accounts(), account)
    else:
        await redis.srem(keys.webhook_accounts(), account)
