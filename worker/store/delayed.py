"""Jobs waiting in Redis for their time, instead of in a worker's memory.

A Celery ``countdown`` on Redis is held unacknowledged by a worker; past the
visibility timeout it would be delivered again and again. Long delays are
written here instead, and ``dispatch beat`` publishes them when due.
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis

from worker.store import keys, scripts


def member(task: str, account_id: str, message_id: str) -> str:
    return f"{task} {account_id} {message_id}"


def parse(member_: str) -> tuple[str, str, str]:
    task, account_id, message_id = member_.split(" ")
    return task, account_id, message_id


def try_parse(member_: str) -> tuple[str, str, str] | None:
    """``parse``, or None for a member none of our code wrote (three words, no more)."""
    parts = member_.split(" ")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


async def schedule(
    redis: Redis, task: str, account_id: str, message_id: str, due_at: float
) -> None:
    """Queue ``task`` for the message at ``due_at`` (a later call moves it)."""
    await redis.zadd(keys.delayed(), {member(task, account_id, message_id): due_at})


async def due(redis: Redis, now: float, limit: int) -> list[str]:
    return cast(
        list[str], await redis.zrangebyscore(keys.delayed(), "-inf", now, start=0, num=limit)
    )


async def take(redis: Redis, now: float, members: list[str]) -> int:
    if not members:
        return 0
    taken = await scripts.DELAYED_TAKE.run(
        redis, keys={"delayed": keys.delayed()}, args={"now": repr(now), "members": members}
    )
    return int(taken)


async def size(redis: Redis) -> int:
    return int(await redis.zcard(keys.delayed()))
