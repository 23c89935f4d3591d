"""What the send algorithm needs, built once per worker process (see ``worker.runtime``)."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from worker.delivery.push_clients import PushClients
from worker.delivery.retry import RetryPolicy
from worker.models import MessageStatus
from worker.providers.base import WhatsAppProvider


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
