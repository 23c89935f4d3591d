"""When each API key was last used, recorded cheaply.

Writing on every request would add a Redis round trip to each one (a send's budget is a
few of them). Each API process instead writes a key's last use at most once per
``every_s`` (a minute): the first request with the key in that minute is the one
written, so ``last_used_at`` is precise to about a minute, and the cost is one HSET per
key per minute per process, on the request that happens to be due.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from worker.store import accounts

log = logging.getLogger(__name__)


class LastUse:
    def __init__(
        self, every_s: float = 60.0, clock: Callable[[], float] = time.time, max_keys: int = 10_000
    ) -> None:
        self.every_s = every_s
        self._clock = clock
        self._max_keys = max_keys
        # key id → when this process last wrote its use.
        self._written: dict[str, float] = {}

    def due(self, key_id: str) -> float | None:
        """The time to write for ``key_id`` now, or None if this process wrote it less
        than ``every_s`` ago. A due key counts as written from here on."""
        now = self._clock()
        last = self._written.get(key_id)
        # A clock set back (now < last) must not silence the key until it catches up.
        if last is not None and 0 <= now - last < self.every_s:
            return None
        if len(self._written) >= self._max_keys:
            self._written.clear()  # at worst, one early write per key
        self._written[key_id] = now
        return now

    async def write(self, redis: Redis, key_id: str, at: float) -> None:
        """Write a due use (``due``'s answer)."""
        try:
            await accounts.note_used(redis, key_id, at)
        except RedisError as exc:
            # A bookkeeping write must not fail the request it rides on (Redis full
            # refuses writes, and a GET may still be served). It is not retried before
            # the next minute: retrying each request would be the round trip avoided.
            log.debug("could not record the last use of key %s: %s", key_id, exc)
