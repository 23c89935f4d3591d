"""``dispatch beat``: puts delayed jobs back on the queue when their time comes.

Long retry delays (a provider's ``Retry-After`` of a minute, a rate-limit slot
seconds away) wait in the delayed set in Redis rather than in a worker's memory.
Publishing comes before removal: a beat that dies in between publishes the job
again, and the job's lease makes the second copy a no-op. Running two beats is
safe for the same reason, only wasteful.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from celery import Celery
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.config import Settings
from worker.enqueue import enqueue
from worker.store import delayed
from worker.store.client import create_redis

log = logging.getLogger(__name__)
BATCH = 500


async def pump_once(redis: Redis, celery: Celery, now: float) -> int:
    """Publish every job due by ``now`` (up to a batch); returns how many."""
    members = await delayed.due(redis, now, BATCH)
    for item in members:
        task, account_id, message_id = delayed.parse(item)
        enqueue(celery, task, account_id, message_id)
    await delayed.take(redis, now, members)
    return len(members)


async def run(settings: Settings, celery: Celery) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    redis = create_redis(settings, max_connections=4)
    log.warning("beat: moving due jobs from the delayed set every %.1fs", settings.beat_interval_s)
    try:
        while not stopping.is_set():
            try:
                moved = await pump_once(redis, celery, time.time())
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("beat: Redis unavailable (%s); retrying", exc)
                moved = 0
            if moved:
                log.info("beat: %d delayed job(s) back on the queue", moved)
            if moved < BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), settings.beat_interval_s)
    finally:
        await redis.aclose()
