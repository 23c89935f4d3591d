"""One event loop and one set of clients per worker process, made once and reused.

Celery's prefork children are plain synchronous processes. Each child builds its
loop, Redis client and provider clients when it starts (``worker_process_init``)
and runs every task's coroutine on that same loop: connections, HTTP/2 sessions
and OAuth tokens survive from one task to the next. Never ``asyncio.run`` per task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

# httpx loads its HTTP/2 stack and anyio's asyncio backend on the first request; loading
# them here, in the parent before the pool forks, spares each child 30-100 ms on its
# first send (a send that leaves its rate-limit slot late crowds the sends after it).
import anyio._backends._asyncio  # noqa: F401
import httpcore._async.http2  # noqa: F401
import httpx

from worker.config import Settings, get_settings
from worker.delivery.context import DeliveryContext
from worker.delivery.push_clients import PushClients
from worker.delivery.ratelimit import RateLimiter
from worker.delivery.retry import RetryPolicy
from worker.providers.outbound import OutboundClient
from worker.providers.whatsapp import WhatsAppClient
from worker.store import secrets as store_secrets
from worker.store.client import create_redis
from worker.store.provider_tokens import RedisProviderTokens

T = TypeVar("T")
# How long a stopped job's tasks get to end (release their leases) before the next job.
_LEFTOVERS_WAIT_S = 2.0
log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        store_secrets.use(settings)
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.http = httpx.AsyncClient(
            http2=True,
            timeout=httpx.Timeout(
                settings.provider_timeout_s, connect=settings.provider_connect_timeout_s
            ),
            limits=httpx.Limits(max_connections=settings.provider_max_connections),
        )
        redis = create_redis(settings, max_connections=32)
        self.context = DeliveryContext(
            redis=redis,
            settings=settings,
            whatsapp=WhatsAppClient(self.http),
            whatsapp_retry=RetryPolicy(
                max_attempts=settings.whatsapp_max_attempts,
                base_delay_s=settings.retry_base_delay_s,
                max_delay_s=settings.retry_max_delay_s,
            ),
            push=PushClients(
                timeout_s=settings.provider_timeout_s,
                apns_max_in_flight=settings.apns_max_in_flight,
                token_store=RedisProviderTokens(redis),
                fcm_batch_size=settings.fcm_batch_size,
                fcm_sender=settings.fcm_sender,
            ),
            push_retry=RetryPolicy(
                max_attempts=settings.push_max_attempts,
                base_delay_s=settings.retry_base_delay_s,
                max_delay_s=settings.retry_max_delay_s,
            ),
            limiter=RateLimiter(
                redis,
                headroom=settings.rate_limit_headroom,
                max_wait_s=settings.rate_limit_max_wait_s,
                penalty_s=settings.rate_limit_penalty_s,
            ),
            outbound=OutboundClient(
                allow=settings.outbound_allow,
                deadline_s=settings.outbound_deadline_s,
                max_response_bytes=settings.outbound_max_response_bytes,
            ),
        )

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self.loop.run_until_complete(coro)
        except BaseException:
            # Stopped from outside the loop (the soft time limit's signal): the job's tasks
            # are still there, and would run on during the next job, renewing the leases of
            # a job that is over. They end here, with their leases released.
            self._cancel_leftovers()
            raise

    def _cancel_leftovers(self) -> None:
        left = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in left:
            task.cancel()
        if left:
            with contextlib.suppress(BaseException):
                self.loop.run_until_complete(asyncio.wait(left, timeout=_LEFTOVERS_WAIT_S))

    def close(self) -> None:
        async def _close() -> None:
            await self.context.push.close()
            await self.context.outbound.aclose()
            await self.http.aclose()
            await self.context.redis.aclose()

        try:
            self.loop.run_until_complete(_close())
        finally:
            self.loop.close()


_runtime: Runtime | None = None


def start(settings: Settings | None = None) -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(settings or get_settings())
    return _runtime


def current() -> Runtime:
    """The process's runtime; made on first use in pools that skip process init (solo)."""
    return start()


def stop() -> None:
    global _runtime
    if _runtime is not None:
        _runtime.close()
        _runtime = None
