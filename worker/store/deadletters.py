"""Dead letters: sends that ran out of attempts or of age, kept for an operator to look
at and to send again (redrive)."""

from __future__ import annotations

import json
import time
from typing import cast

from redis.asyncio import Redis

from worker.models import Channel, MessageStatus
from worker.store import keys
from worker.store.client import fields
from worker.store.messages import Message, load, load_many, task_member
from worker.store.push import load_devices


async def page(redis: Redis, account_id: str, start: int, limit: int) -> tuple[list[Message], int]:
    """Newest first."""
    ids = cast(
        list[str],
        await redis.zrevrange(keys.dead_letters(account_id), start, start + limit - 1),
    )
    total = int(await redis.zcard(keys.dead_letters(account_id)))
    return await load_many(redis, account_id, ids), total


async def is_dead(redis: Redis, account_id: str, message_id: str) -> bool:
    return await redis.zscore(keys.dead_letters(account_id), message_id) is not None


async def redrive(redis: Redis, account_id: str, message_id: str) -> Message | None:
    """Make a dead letter sendable again with a fresh budget; the caller enqueues it.

    Attempts and age start over; for a push, only the devices that ran out of
    retries are sent again (delivered, pruned or refused devices stay as they are)."""
    if not await is_dead(redis, account_id, message_id):
        return None
    message = await load(redis, account_id, message_id)
    if message is None:
        await redis.zrem(keys.dead_letters(account_id), message_id)
        return None
    now = time.time()
    revived: dict[str, dict[str, object]] = {}
    if message.channel is Channel.PUSH:
        for device in await load_devices(redis, account_id, message_id):
            if device.status == "failed" and device.exhausted:
                revived[device.member] = {"attempts": 0, "status": "pending"}
    message_key = keys.message(account_id, message_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            message_key,
            mapping=fields(
                {
                    "status": MessageStatus.QUEUED.value,
                    "attempt_base": message.attempts,
                    "redriven_at": now,
                    "updated_at": now,
                }
            ),
        )
        pipe.hdel(message_key, "dead_lettered_at", "not_before")
        if revived:
            # The results list exists (these devices' failures are in it) and keeps its TTL.
            pipe.rpush(keys.message_results(account_id, message_id), json.dumps(revived))
            pipe.hincrby(message_key, "failed", -len(revived))
        pipe.zrem(keys.dead_letters(account_id), message_id)
        pipe.zadd(keys.unstarted(), {task_member(message): now})
        pipe.delete(keys.message_outcome(account_id, message_id))
        await pipe.execute()
    return await load(redis, account_id, message_id)
