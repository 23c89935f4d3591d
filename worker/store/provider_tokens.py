"""Provider tokens shared by every process that signs with one key (APNs' JWT): one
record per key, replaced by compare-and-swap so that a wave of rejections mints one
new token in the whole deployment, not one per process or per answer."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from worker.store import keys, scripts, secrets
from worker.store.client import get_str

# Longer than a token is used (40 minutes), shorter than Apple accepts one (an hour).
TTL_S = 55 * 60


def _fingerprint(token: str) -> str:
    """What compare-and-swap compares: the token itself is stored encrypted (a new
    ciphertext each time), so its hash stands for it."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def _parse(record: str) -> tuple[str, float]:
    issued_at, _, rest = record.partition(" ")
    _, _, sealed = rest.partition(" ")
    return secrets.box().open(sealed), float(issued_at)


class RedisProviderTokens:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def load(self, key: str) -> tuple[str, float] | None:
        record = await get_str(self._redis, keys.provider_token(key))
        return _parse(record) if record else None

    async def replace(
        self, key: str, old: str | None, new: str, issued_at: float
    ) -> tuple[str, float]:
        sealed = secrets.box().seal(new)
        record = await scripts.PROVIDER_TOKEN_SWAP.run(
            self._redis,
            keys={"record": keys.provider_token(key)},
            args={
                "seen_fingerprint": _fingerprint(old) if old else "",
                "new_record": f"{issued_at!r} {_fingerprint(new)} {sealed}",
                "ttl_s": TTL_S,
            },
        )
        return _parse(str(record))
