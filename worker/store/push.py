"""A push message's devices: one result per ``platform:token``, and the per-token counters.

Everything one attempt changes (device results, token counters, pruned tokens,
the message's totals and state, the attempt, the outcome signal) is written in
one MULTI: a crash never leaves the counters disagreeing with the message.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal, cast

from redis.asyncio import Redis

from worker.models import Attempt, MessageStatus
from worker.store import keys
from worker.store.client import fields
from worker.store.messages import Message, create, queue_outcome
from worker.store.tokens import split

DeviceStatus = Literal["pending", "delivered", "failed", "retrying"]
FINAL: set[str] = {"delivered", "failed"}


@dataclass
class Device:
    platform: str
    token: str
    status: DeviceStatus = "pending"
    error: str | None = None
    code: str | None = None
    provider_code: str | None = None
    provider_id: str | None = None
    attempts: int = 0
    at: float | None = None
    pruned: bool = False

    @property
    def member(self) -> str:
        return f"{self.platform}:{self.token}"


@dataclass
class DeviceOutcome:
    """What one attempt did to one device."""

    device: Device
    # Counted on the token's delivered/failed counters (final outcomes of a real send).
    counted: bool
    # The token is dead: remove it from the contact and record why.
    prune: bool = False


def _encode(device: Device) -> str:
    data = asdict(device)
    del data["platform"], data["token"]
    return json.dumps({k: v for k, v in data.items() if v not in (None, False)})


def _decode(member: str, raw: str) -> Device:
    platform, token = split(member)
    return Device(platform=platform, token=token, **json.loads(raw))


async def create_push(redis: Redis, message: Message, members: list[str], ttl_s: int) -> None:
    devices_key = keys.message_devices(message.account, message.id)
    pending = {m: _encode(Device(*split(m))) for m in members}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(devices_key, mapping=fields(pending))
        pipe.expire(devices_key, ttl_s)
        await pipe.execute()
    await create(redis, message, ttl_s)


async def load_devices(redis: Redis, account_id: str, message_id: str) -> list[Device]:
    raw = cast(dict[str, str], await redis.hgetall(keys.message_devices(account_id, message_id)))
    return sorted((_decode(m, v) for m, v in raw.items()), key=lambda d: (d.platform, d.token))


async def record_attempt(
    redis: Redis,
    message: Message,
    attempt: Attempt,
    outcomes: list[DeviceOutcome],
    status: MessageStatus,
    ttl_s: int,
) -> None:
    account = message.account
    delivered = sum(1 for o in outcomes if o.device.status == "delivered")
    failed = sum(1 for o in outcomes if o.device.status == "failed")
    async with redis.pipeline(transaction=True) as pipe:
        if outcomes:
            pipe.hset(
                keys.message_devices(account, message.id),
                mapping=fields({o.device.member: _encode(o.device) for o in outcomes}),
            )
        for o in outcomes:
            token_key = keys.push_token(account, o.device.member)
            at = o.device.at or attempt.at
            if o.device.status == "delivered":
                if o.counted:
                    pipe.hincrby(token_key, "delivered", 1)
                pipe.hset(token_key, "last_success_at", at)
            else:
                if o.counted and o.device.status == "failed":
                    pipe.hincrby(token_key, "failed", 1)
                pipe.hset(
                    token_key,
                    mapping=fields({"last_failure_at": at, "last_error": o.device.error or ""}),
                )
            if o.prune and message.contact_id:
                pipe.srem(keys.contact_push_tokens(account, message.contact_id), o.device.member)
                pipe.hset(
                    token_key,
                    mapping=fields({"pruned_at": at, "prune_reason": o.device.error or ""}),
                )
        message_key = keys.message(account, message.id)
        if delivered:
            pipe.hincrby(message_key, "delivered", delivered)
        if failed:
            pipe.hincrby(message_key, "failed", failed)
        pipe.hset(message_key, mapping=fields({"status": status.value, "updated_at": attempt.at}))
        attempts_key = keys.message_attempts(account, message.id)
        pipe.rpush(attempts_key, attempt.model_dump_json(exclude_none=True))
        pipe.expire(attempts_key, ttl_s)
        if status.is_final:
            queue_outcome(pipe, message, status)
        await pipe.execute()
