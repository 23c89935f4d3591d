"""The webhook outbox: an event is written in the same transaction as the result it
reports, so a crash between the two cannot lose it (or report what did not happen).

Only accounts with an active endpoint write events: each process reads that set again
every ``DISPATCH_WEBHOOK_SUBSCRIBERS_REFRESH_S`` (2 s; one SMEMBERS), so an endpoint created
a moment ago may miss the events of its first seconds, and a result of an account without
webhooks costs nothing.
The beat moves events from here to each subscribed endpoint's queue
(``worker.delivery.webhooks.dispatch_outbox``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from worker.config import get_settings
from worker.store import keys


class _Subscribed:
    """This process's copy of the accounts with an active endpoint."""

    def __init__(self) -> None:
        self.accounts: frozenset[str] = frozenset()
        self.read_at = float("-inf")
        self.refresh_s: float | None = None

    async def get(self, redis: Redis) -> frozenset[str]:
        if self.refresh_s is None:
            self.refresh_s = get_settings().webhook_subscribers_refresh_s
        now = time.monotonic()
        if now - self.read_at >= self.refresh_s:
            members = await redis.smembers(keys.webhook_accounts())
            self.accounts = frozenset(
                m.decode() if isinstance(m, bytes) else str(m) for m in members
            )
            self.read_at = now
        return self.accounts


_subscribed = _Subscribed()


async def wanted(redis: Redis, account: str) -> bool:
    """Whether the account's results should write events now."""
    return account in await _subscribed.get(redis)


Event = tuple[str, dict[str, Any]]


def emit(pipe: Pipeline, account: str, batch: list[Event], at: float) -> None:
    """Add the events (type, data) to the caller's transaction: one outbox entry for
    all of them (a push slice's devices are one entry, not one per device)."""
    if batch:
        pipe.xadd(
            keys.webhook_events(),
            {"a": account, "at": repr(at), "e": json.dumps(batch, separators=(",", ":"))},
        )
