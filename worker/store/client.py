"""The Redis client every process uses (async; the CLI drives it with asyncio.run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.typing import EncodableT, FieldT

from worker.config import Settings


def create_redis(settings: Settings, *, max_connections: int | None = None) -> Redis:
    # A blocking pool waits for a free connection instead of failing under load;
    # every API request waiting on an outcome holds one connection in BLPOP.
    pool = BlockingConnectionPool.from_url(
        settings.effective_redis_url,
        max_connections=max_connections or settings.redis_max_connections,
        timeout=5,
        decode_responses=True,
        socket_connect_timeout=2,
        # redis-py 8 gives every read a 5 s timeout by default, which would cut a BLPOP
        # waiting for a send's outcome short: the read timeout must outlast the wait.
        socket_timeout=max(settings.redis_socket_timeout_s, settings.send_wait_s + 5),
        health_check_interval=30,
        # A pooled connection that died with a Redis restart fails its next command:
        # retry on a fresh one instead of failing the request or the job.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 3),
    )
    # from_pool: the client owns the pool, so aclose() also closes its connections.
    return Redis.from_pool(pool)


# The client decodes responses, so every reply is a str; redis-py types them as
# ``bytes | str``. These helpers state it once instead of casting at every call.


async def get_str(redis: Redis, key: str) -> str | None:
    return cast(str | None, await redis.get(key))


async def hgetall_str(redis: Redis, key: str) -> dict[str, str]:
    return cast(dict[str, str], await redis.hgetall(key))


async def smembers_str(redis: Redis, key: str) -> set[str]:
    return cast(set[str], await redis.smembers(key))


def fields(mapping: Mapping[str, str | float | int]) -> Mapping[FieldT, EncodableT]:
    """A field mapping as ``hset`` types it (its Mapping is invariant in the key)."""
    return cast(Mapping[FieldT, EncodableT], mapping)
