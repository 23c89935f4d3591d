"""WhatsApp's 24-hour customer-service window, opened by an inbound message."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from worker.store import keys


async def open_window(
    redis: Redis, account_id: str, phone: str, received_at: float, window_s: int
) -> bool:
    """Open (or extend) the window from ``received_at``; False if it has already closed."""
    remaining_ms = int((received_at + window_s - time.time()) * 1000)
    if remaining_ms <= 0:
        return False
    await redis.set(keys.whatsapp_window(account_id, phone), repr(received_at), px=remaining_ms)
    return True
