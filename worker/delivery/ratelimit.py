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

import asyncio
import random
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from worker.observe import metrics
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
        burst: float = 1,
        max_wait_s: float | None = None,
    ) -> Slot:
        """Reserve ``cost`` units of ``name``'s rate. ``burst`` units may go at once."""
        interval_ms = 1000.0 / (rate_per_s * self._headroom)
        max_wait_ms = self._max_wait_ms if max_wait_s is None else max_wait_s * 1000
        granted, wait_ms, at_ms = await scripts.GCRA.run(
            self._redis,
            keys={"tat": keys.rate_limit(name), "penalty": keys.rate_limit_penalty(name)},
            args={
                "interval_ms": repr(interval_ms),
                "tolerance_ms": repr(interval_ms * (burst - 1)),
                "cost": cost,
                "max_wait_ms": repr(max_wait_ms),
            },
        )
        return Slot(bool(int(granted)), float(wait_ms) / 1000, float(at_ms) / 1000)

    async def take(self, name: str, rate_per_s: float, cost: int = 1) -> float | None:
        """Wait until a unit of the rate is free *now* and take it; return None when it is
        time to send. When the wait would pass ``max_wait_s``, return how long until a
        slot instead (nothing is reserved).

        The slot is taken at the moment of sending, not booked ahead: a booked send that
        woke up late on a busy CPU would go out crowded with the punctual ones after it,
        and a provider counting per second would see more than the cap."""
        started = time.monotonic()
        deadline = started + self._max_wait_ms / 1000
        kind = name.split(":", 1)[0]
        while True:
            slot = await self.acquire(
                name, rate_per_s, cost, burst=self._burst(rate_per_s), max_wait_s=0
            )
            if slot.granted:
                waited = time.monotonic() - started
                if waited > 0.0005:
                    metrics.RATE_LIMIT_WAITS.labels(kind, "waited").inc()
                    metrics.RATE_LIMIT_WAIT.labels(kind).observe(waited)
                return None
            if time.monotonic() + slot.wait_s > deadline:
                metrics.RATE_LIMIT_WAITS.labels(kind, "deferred").inc()
                return slot.wait_s
            # A millisecond of spread, so that waiters of one key do not all ask at once.
            await asyncio.sleep(slot.wait_s + random.random() / 1000)  # noqa: S311

    def _burst(self, rate_per_s: float) -> float:
        """Up to half an interval of tolerance: a send whose waiter woke a little late
        leaves its successor free to go a little early, so wake-up delays do not waste
        the rate. A second then holds at most ``rate x headroom + burst`` sends, so the
        tolerance never exceeds what the headroom leaves below the cap."""
        slack = rate_per_s * (1 - self._headroom)
        return 1 + max(0.0, min(0.5, slack - 1))

    async def exhaust(self, name: str, rate_per_s: float, burst: int) -> None:
        """The provider says ``name`` is used up: reserve its whole burst, so the next
        send waits an interval and sends after it come at the rate."""
        await self.acquire(name, rate_per_s, burst, burst=burst, max_wait_s=10**9)

    async def penalize(self, name: str) -> float:
        """The provider said 429: halve the key's rate for a while (down to 1/8)."""
        factor = await scripts.PENALIZE.run(
            self._redis,
            keys={"penalty": keys.rate_limit_penalty(name)},
            args={"cap": _PENALTY_CAP, "ttl_ms": self._penalty_ms},
        )
        return float(factor)
