"""Provider tokens shared by every process that signs with one key (APNs' JWT): one
record per key, replaced by compare-and-swap so that a wave of rejections mints one
new token in the whole deployment, not one per process or per answer."""

from __future__ import annotations

from redis.asyncio import Redis

from worker.store import keys, scripts
from worker.store.client import get_str

# Longer than a token is used (40 minutes), shorter than Apple accepts one (an hour).
TTL_S = 55 * 60


def _parse(record: str) -> tuple[str, float]:
    issued_at, _, token = record.partition(" ")
    return token, float(issued_at)


class RedisProviderTokens:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def load(self, key: str) -> tuple[str, float] | None:
        record = await get_str(self._redis, keys.provider_token(key))
        return _parse(record) if record else None

    async def replace(
        self, key: str, old: str | None, new: str, issued_at: float
    ) -> tuple[str, float]:
        record = await scripts.run(
            self._redis,
            "provider_token_swap",
            [keys.provider_token(key)],
            [old or "", f"{issued_at!r} {new}", TTL_S],
        )
        return _parse(str(record))
