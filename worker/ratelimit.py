"""Global rate limits: one GCRA schedule per provider credential, kept in Redis.

Celery's own ``rate_limit`` is per worker, so N workers would send N times the
limit. Here every worker on every machine reserves its slot from the same Lua
script on the server's clock. A send waits for its reserved slot (short waits),
or, when the wait would be long, reserves nothing and is rescheduled for when
the slot comes. After a provider 429 the key is slowed down for a while.

Limits are enforced at ``headroom`` (95 %) of the configured rate: a send leaves
the worker a few milliseconds after its slot, and that jitter must not make two
sends land in the same provider second.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from worker.store import keys, scripts

_PENALTY_CAP = 8


@dataclass(frozen=True)
class Slot:
    granted: bool
    wait_s: float
    at: float  # when the slot is, in seconds since the epoch on Redis's clock


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        headroom: float = 0.95,
        max_wait_s: float = 2.0,
        penalty_s: float = 30.0,
    ) -> None:
        self._redis = redis
        self._headroom = headroom
        self._max_wait_ms = max_wait_s * 1000
        self._penalty_ms = int(penalty_s * 1000)

    async def acquire(
        self,
        name: str,
        rate_per_s: float,
        cost: int = 1,
        *,
        burst: int = 1,
        max_wait_s: float | None = None,
    ) -> Slot:
        """Reserve ``cost`` units of ``name``'s rate. ``burst`` units may go at once."""
        interval_ms = 1000.0 / (rate_per_s * self._headroom)
        max_wait_ms = self._max_wait_ms if max_wait_s is None else max_wait_s * 1000
        granted, wait_ms, at_ms = await scripts.run(
            self._redis,
            "gcra",
            [keys.rate_limit(name), keys.rate_limit_penalty(name)],
            [repr(interval_ms), repr(interval_ms * (burst - 1)), cost, repr(max_wait_ms)],
        )
        return Slot(bool(int(granted)), float(wait_ms) / 1000, float(at_ms) / 1000)

    async def penalize(self, name: str) -> float:
        """The provider said 429: halve the key's rate for a while (down to 1/8)."""
        factor = await scripts.run(
            self._redis,
            "penalize",
            [keys.rate_limit_penalty(name)],
            [_PENALTY_CAP, self._penalty_ms],
        )
        return float(factor)
