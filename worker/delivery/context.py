"""What the send algorithm needs, built once per worker process (see ``worker.runtime``)."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from worker.delivery.retry import RetryPolicy
from worker.providers.base import WhatsAppProvider


@dataclass
class DeliveryContext:
    redis: Redis
    whatsapp: WhatsAppProvider
    whatsapp_retry: RetryPolicy
    message_ttl_s: int
