"""The Redis client every process uses (async; the CLI drives it with asyncio.run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlsplit

import redis as sync_redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.sentinel import Sentinel as SyncSentinel
from redis.typing import EncodableT, FieldT

from worker.config import Settings


def create_redis(settings: Settings, *, max_connections: int | None = None) -> Redis:
    options: dict[str, Any] = {
        "max_connections": max_connections or settings.redis_max_connections,
        "decode_responses": True,
        "socket_connect_timeout": 2,
        # redis-py 8 gives every read a 5 s timeout by default, which would cut a BLPOP
        # waiting for a send's outcome short: the read timeout must outlast the wait.
        "socket_timeout": max(settings.redis_socket_timeout_s, settings.send_wait_s + 5),
        "health_check_interval": 30,
        # A pooled connection that died with a Redis restart (or a failover) fails its next
        # command: retry on a fresh one instead of failing the request or the job.
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.02), 3),
    }
    if settings.sentinel_hosts:
        # The sentinels say where the master is; after a failover the pool asks again.
        url = urlsplit(settings.effective_redis_url)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            settings.sentinel_hosts,
            sentinel_kwargs={"socket_connect_timeout": 2, "socket_timeout": 2},
            password=url.password,
            db=int(url.path.strip("/") or 0),
        )
        client: Redis = sentinel.master_for(settings.redis_sentinel_master, **options)
        return client
    # A blocking pool waits for a free connection instead of failing under load;
    # every API request waiting on an outcome holds one connection in BLPOP.
    pool = BlockingConnectionPool.from_url(settings.effective_redis_url, timeout=5, **options)
    # from_pool: the client owns the pool, so aclose() also closes its connections.
    return Redis.from_pool(pool)


def create_sync_redis(settings: Settings) -> sync_redis.Redis:
    """A small synchronous client (a worker's heartbeat, outside any event loop)."""
    options: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 2}
    if settings.sentinel_hosts:
        url = urlsplit(settings.effective_redis_url)
        sentinel = SyncSentinel(  # type: ignore[no-untyped-call]
            settings.sentinel_hosts,
            sentinel_kwargs=options,
            password=url.password,
            db=int(url.path.strip("/") or 0),
        )
        client: sync_redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            settings.redis_sentinel_master, **options
        )
        return client
    return sync_redis.Redis.from_url(settings.effective_redis_url, **options)


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
