"""Idempotency keys: the first request with a key does the work; every later request with
the same key and body gets the first one's answer, and never sends again."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from worker.store import keys, scripts
from worker.store.client import fields

TTL_S = 24 * 3600


@dataclass(frozen=True)
class Record:
    body_hash: str
    message_id: str
    status_code: int | None = None
    response: dict[str, Any] | None = None


def _key(account_id: str, idempotency_key: str) -> str:
    return keys.idempotency(account_id, hashlib.sha256(idempotency_key.encode()).hexdigest())


def body_hash(route: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{route}\n{canonical}".encode()).hexdigest()


def _record(raw: dict[str, str]) -> Record:
    return Record(
        body_hash=raw["body_hash"],
        message_id=raw["message_id"],
        status_code=int(raw["status_code"]) if raw.get("status_code") else None,
        response=json.loads(raw["response"]) if raw.get("response") else None,
    )


async def claim(
    redis: Redis, account_id: str, idempotency_key: str, body_hash_: str, message_id: str
) -> Record | None:
    """None if this request is the first with the key (it does the work); otherwise the
    first request's record. Racing requests: exactly one gets None."""
    flat = await scripts.IDEM_CLAIM.run(
        redis,
        keys={"record": _key(account_id, idempotency_key)},
        args={
            "body_hash": body_hash_,
            "message_id": message_id,
            "now": repr(time.time()),
            "ttl_s": TTL_S,
        },
    )
    if not flat:
        return None
    return _record(dict(zip(flat[::2], flat[1::2], strict=True)))


async def answer(
    redis: Redis,
    account_id: str,
    idempotency_key: str,
    status_code: int,
    response: dict[str, Any],
) -> None:
    await redis.hset(
        _key(account_id, idempotency_key),
        mapping=fields({"status_code": status_code, "response": json.dumps(response)}),
    )


async def release(redis: Redis, account_id: str, idempotency_key: str) -> None:
    """The first request failed before doing anything: let the key be used again."""
    await redis.delete(_key(account_id, idempotency_key))


async def wait_answer(
    redis: Redis, account_id: str, idempotency_key: str, timeout_s: float
) -> Record | None:
    """Poll for the first request's answer (followers of a race wait for the leader)."""
    key = _key(account_id, idempotency_key)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw = cast(dict[str, str], await redis.hgetall(key))
        if not raw:
            return None
        if raw.get("response"):
            return _record(raw)
        await asyncio.sleep(0.02)
    return None
