"""A campaign job that crashes on a bug leaves its error on the campaign (real Valkey)."""

from __future__ import annotations

import asyncio
from typing import Any

from worker.config import Settings
from worker.delivery.failures import record_walk_crash
from worker.ids import new_id
from worker.models import CampaignCreate
from worker.store import campaigns
from worker.store.client import create_redis


def test_a_crashed_walk_shows_on_its_campaign(settings: Settings) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        account = new_id("acc").lower().replace("_", "-")
        body = CampaignCreate.model_validate(
            {
                "name": "crash",
                "channel": "push",
                "content": {"title": "t", "message": "m"},
                "audience": {"all": True},
            }
        )
        campaign = await campaigns.create(redis, account, new_id("cmp"), body)

        class Ctx:
            pass

        ctx: Any = Ctx()
        ctx.redis = redis
        await record_walk_crash(ctx, account, campaign.id, KeyError("cursor"))
        stored = await campaigns.load(redis, account, campaign.id)
        assert stored is not None
        assert stored.last_error == "KeyError: 'cursor'"
        assert stored.last_error_at is not None
        await redis.aclose()

    asyncio.run(scenario())
