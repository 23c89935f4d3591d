"""Status webhooks against message records (real Valkey): a report that comes before the
worker has recorded the wamid is held, then applied when the wamid is recorded."""

from __future__ import annotations

import asyncio
import time

from worker.config import Settings
from worker.models import Attempt, Channel, MessageStatus
from worker.store import messages
from worker.store.client import create_redis


def test_a_delivered_report_that_overtakes_the_send_is_not_lost(settings: Settings) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        account = f"early{time.time_ns()}"
        message = messages.new(account, Channel.WHATSAPP, to="+919876543210", text="hi")
        await messages.create(redis, message, 60)
        wamid = f"wamid.{time.time_ns()}"

        # The provider's webhook wins the race against the worker's write.
        found = await messages.find_or_hold_status(
            redis, wamid, account, "delivered", time.time(), ""
        )
        assert found is None

        sent = Attempt(attempt=1, at=time.time(), outcome="sent", provider_message_id=wamid)
        await messages.finish_attempt(redis, message, sent, MessageStatus.SENT, 60)
        stored = await messages.load(redis, account, message.id)
        assert stored is not None
        assert (stored.status, stored.delivery_status) == (MessageStatus.SENT, "delivered")

        # Later reports find the message directly.
        again = await messages.find_or_hold_status(redis, wamid, account, "read", time.time(), "")
        assert again == (account, message.id)
        await redis.aclose()

    asyncio.run(scenario())
