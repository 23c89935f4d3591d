"""What the send algorithm needs, built once per worker process (see ``worker.runtime``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis

from worker.delivery.push_clients import PushClients
from worker.delivery.retry import RetryPolicy
from worker.models import MessageStatus
from worker.providers.base import WhatsAppProvider
from worker.store import messages
from worker.store.messages import Message

log = logging.getLogger(__name__)


@dataclass
class DeliveryContext:
    redis: Redis
    whatsapp: WhatsAppProvider
    whatsapp_retry: RetryPolicy
    push: PushClients
    push_retry: RetryPolicy
    message_ttl_s: int


@dataclass(frozen=True)
class Outcome:
    status: MessageStatus
    # Set when the message should be tried again after this many seconds.
    retry_in_s: float | None = None


async def load_unfinished(
    ctx: DeliveryContext, account_id: str, message_id: str
) -> Message | Outcome:
    """The message to work on, or the outcome to report when there is nothing to do:
    it expired, or it is already final (a job redelivered after the provider call
    must never send twice)."""
    message = await messages.load(ctx.redis, account_id, message_id)
    if message is None:
        log.warning("message %s/%s no longer exists; dropped", account_id, message_id)
        return Outcome(MessageStatus.FAILED)
    if message.status.is_final:
        log.info("message %s already %s; skipped", message_id, message.status)
        return Outcome(message.status)
    return message
