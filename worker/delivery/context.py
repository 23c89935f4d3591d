"""What the send algorithm needs, built once per worker process (see ``worker.runtime.process``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from redis.asyncio import Redis

from worker.config import Settings
from worker.delivery.push_clients import PushClients
from worker.delivery.ratelimit import RateLimiter
from worker.delivery.retry import RetryPolicy
from worker.models import MessageStatus
from worker.providers.base import WhatsAppProvider
from worker.providers.outbound import OutboundClient
from worker.store import keys, locks, messages
from worker.store.messages import Message

log = logging.getLogger(__name__)

# When another job holds the message (a duplicate delivery), look again after this.
BUSY_RETRY_S = 2.0


@dataclass
class DeliveryContext:
    redis: Redis
    settings: Settings
    whatsapp: WhatsAppProvider
    whatsapp_retry: RetryPolicy
    push: PushClients
    push_retry: RetryPolicy
    limiter: RateLimiter
    # Requests to URLs a tenant gave (automation webhooks): guarded, its own pool.
    outbound: OutboundClient = field(default_factory=OutboundClient)

    @property
    def message_ttl_s(self) -> int:
        return self.settings.message_ttl_s


@dataclass(frozen=True)
class Outcome:
    status: MessageStatus
    # Set when the job should run again after this many seconds.
    retry_in_s: float | None = None


@asynccontextmanager
async def claimed(
    ctx: DeliveryContext, account_id: str, message_id: str
) -> AsyncIterator[Message | Outcome]:
    """The message to work on, held by this job alone; or the outcome to report when there
    is nothing to do: it expired, it is already final (a job redelivered after the
    provider call must never send twice), or another job holds it right now."""
    lock_key = keys.message_lock(account_id, message_id)
    async with locks.held(ctx.redis, lock_key, ctx.settings.lease_ttl_s) as token:
        if token is None:
            log.info("message %s is being sent by another job; looking again later", message_id)
            yield Outcome(MessageStatus.QUEUED, BUSY_RETRY_S)
            return
        # Read under the lease: what another job did before us is all there.
        message = await messages.load(ctx.redis, account_id, message_id)
        if message is None:
            log.warning("message %s/%s no longer exists; dropped", account_id, message_id)
            yield Outcome(MessageStatus.FAILED)
        elif message.status.is_final:
            log.info("message %s already %s; skipped", message_id, message.status)
            yield Outcome(message.status)
        else:
            yield message
