"""A campaign job that crashes on a bug leaves its error on the campaign (real Valkey)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pydantic import ValidationError

from worker.config import Settings
from worker.delivery.failures import record_walk_crash
from worker.ids import new_id
from worker.models import CampaignCreate, CampaignStatus
from worker.store import campaigns
from worker.store.client import create_redis

CONTENT = {
    "push": {"title": "t", "message": "m"},
    "whatsapp": {"template_name": "shipping_update", "parameters": ["x"]},
}


class _Ctx:
    """What the crash records use of a job's delivery context: its store."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis


async def _campaign(redis: Any, channel: str) -> tuple[str, campaigns.Campaign]:
    """A new account's campaign on ``channel``: (the account, the campaign)."""
    account = new_id("acc").lower().replace("_", "-")
    body = CampaignCreate.model_validate(
        {
            "name": "crash",
            "channel": channel,
            "content": CONTENT[channel],
            "audience": {"all": True},
        }
    )
    return account, await campaigns.create(redis, account, new_id("cmp"), body)


def test_a_crashed_walk_shows_on_its_campaign(settings: Settings) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        account, campaign = await _campaign(redis, "push")
        ctx: Any = _Ctx(redis)
        await record_walk_crash(ctx, account, campaign.id, KeyError("cursor"))
        stored = await campaigns.load(redis, account, campaign.id)
        assert stored is not None
        assert stored.last_error == "KeyError: 'cursor'"
        assert stored.last_error_at is not None
        await redis.aclose()

    asyncio.run(scenario())


def test_a_crashed_batch_shows_its_error_before_its_messages_fail(
    settings: Settings, monkeypatch: Any
) -> None:
    """The last failed message completes the campaign: by then the campaign must already
    say why (a poll that sees ``completed`` reads ``last_error``)."""
    from worker.delivery import failures
    from worker.delivery.fanout import batch_id
    from worker.store import keys

    async def scenario() -> None:
        redis = create_redis(settings)
        account, campaign = await _campaign(redis, "whatsapp")
        await redis.rpush(keys.campaign_batch(account, campaign.id, 0), "msg_a", "msg_b")
        seen: list[str | None] = []

        async def fail_one(ctx: Any, account_id: str, message_id: str, exc: Any) -> None:
            stored = await campaigns.load(redis, account_id, campaign.id)
            assert stored is not None
            seen.append(stored.last_error)

        monkeypatch.setattr(failures, "record_crash", fail_one)
        ctx: Any = _Ctx(redis)
        await failures.record_whatsapp_batch_crash(
            ctx, account, batch_id(campaign.id, 0), ValueError("bogus")
        )
        await failures.record_batch_crash(
            ctx, account, batch_id(campaign.id, 1), ValueError("bogus")
        )
        assert seen == ["ValueError: bogus"] * 3
        await redis.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("update", "runs_s"),
    [
        ({"campaign_job_max_s": 0.3}, 0.3),
        # A hard time limit of 4 s (soft 3 s) and a provider timeout of 1 s: a slice
        # started at 1 s has its answers by 2 s and a second to write them, whatever
        # campaign_job_max_s says.
        ({"campaign_job_max_s": 20.0, "task_time_limit_s": 4, "provider_timeout_s": 1.0}, 1.0),
    ],
)
def test_a_batch_job_hands_on_once_it_has_run_its_time(
    settings: Settings, update: dict[str, float], runs_s: float
) -> None:
    """A campaign batch of any size stops before its next slice (or message) once it has
    run ``Settings.campaign_job_run_s`` (``campaign_job_max_s``, less when the soft time
    limit minus the provider timeout is shorter), while its campaign is still sending: a
    fresh job goes on, and no job runs into the time limits (where it would be interrupted
    mid-send)."""
    from worker.delivery.campaign_batches import _Watch

    async def scenario() -> None:
        redis = create_redis(settings)
        account, campaign = await _campaign(redis, "push")
        assert (await campaigns.transition(redis, account, campaign.id, "send")).ok
        ctx: Any = _Ctx(redis)
        ctx.settings = settings.model_copy(update=update)
        # Counted from the job's start: 0.2 s spent before (waiting out a lease, say).
        watch = _Watch(ctx, account, campaign.id, time.monotonic() - 0.2)
        await asyncio.sleep(runs_s - 0.3)
        assert not await watch.halted()
        await asyncio.sleep(0.15)
        assert await campaigns.status(redis, account, campaign.id) is CampaignStatus.SENDING
        assert await watch.halted()
        await redis.aclose()

    asyncio.run(scenario())


def test_a_time_limit_that_would_leave_a_campaign_job_no_time_is_refused() -> None:
    """A hard limit of 1 s leaves no soft limit, so a campaign job would hand on before
    sending anything, again and again: refused at startup; the shortest allowed still
    gives a job time to run."""
    with pytest.raises(ValidationError, match="task_time_limit_s"):
        Settings(task_time_limit_s=1)
    assert Settings(task_time_limit_s=2).campaign_job_run_s > 0
