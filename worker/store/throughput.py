"""Sends per second by channel and outcome, for `dispatch status`: a hash per minute (field:
the second), written in the same transaction as the results it counts, gone after 3 minutes."""

from __future__ import annotations

import time
from collections import defaultdict

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from worker.store import keys

CHANNELS = ("whatsapp", "fcm", "apns")
OUTCOMES = ("sent", "failed", "retry")
_KEEP_S = 180


def count(pipe: Pipeline, channel: str, outcome: str, n: int, at: float) -> None:
    if n <= 0:
        return
    second = int(at)
    key = keys.throughput(channel, outcome, second // 60)
    pipe.hincrby(key, str(second), n)
    pipe.expire(key, _KEEP_S)


async def last_minute(redis: Redis, now: float | None = None) -> dict[tuple[str, str], float]:
    """Average sends per second over the last 60 one-second buckets (the current one too,
    so that what was just sent shows)."""
    now = time.time() if now is None else now
    end = int(now) + 1
    start = end - 60
    minutes = sorted({start // 60, (end - 1) // 60})
    async with redis.pipeline(transaction=False) as pipe:
        pairs = [(c, o) for c in CHANNELS for o in OUTCOMES]
        for channel, outcome in pairs:
            for minute in minutes:
                pipe.hgetall(keys.throughput(channel, outcome, minute))
        replies = await pipe.execute()
    rates: dict[tuple[str, str], float] = defaultdict(float)
    i = 0
    for pair in pairs:
        total = 0
        for _ in minutes:
            for second, n in replies[i].items():
                if start <= int(second) < end:
                    total += int(n)
            i += 1
        rates[pair] = total / 60
    return dict(rates)


async def recent(redis: Redis, now: float | None = None, seconds: int = 2) -> float:
    """Sends finished per second (every channel and outcome) over the last ``seconds``
    whole seconds: one pipelined round trip."""
    now = time.time() if now is None else now
    wanted = [int(now) - 1 - i for i in range(seconds)]
    async with redis.pipeline(transaction=False) as pipe:
        for channel in CHANNELS:
            for outcome in OUTCOMES:
                for second in wanted:
                    pipe.hget(keys.throughput(channel, outcome, second // 60), str(second))
        replies = await pipe.execute()
    return sum(int(n) for n in replies if n) / seconds
