"""Event webhooks give way to the sends, never at the cost of an event: the fan-out waits
while the service sends fast and the outbox has room, each sender paces itself while its
endpoint's backlog is under half full; past the room, both go at full speed. And the
backlog bound itself: one script call per outbox entry, the oldest dropped past it.
Against the session's Valkey (a database of its own)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from worker.config import Settings
from worker.delivery import webhooks
from worker.delivery.context import DeliveryContext
from worker.models.webhooks import Endpoint
from worker.runtime import beat
from worker.store import events, jobs, keys, throughput
from worker.store import webhook_deliveries as deliveries
from worker.store.client import create_redis

ACCOUNT = "acc-yield"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    url = str(settings.redis_url).rstrip("/").rsplit("/", 1)
    base = url[0] if url[-1].isdigit() else "/".join(url)
    return settings.model_copy(update={"redis_url": f"{base}/10"})


def _run(settings: Settings, scenario: Callable[[Redis], Awaitable[None]]) -> None:
    async def run() -> None:
        redis = create_redis(settings)
        await redis.flushdb()
        try:
            await scenario(redis)
        finally:
            await redis.flushdb()
            await redis.aclose()

    asyncio.run(run())


@pytest.fixture(autouse=True)
def fresh_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    # The process's reading of the send rate is cached for a second: each test its own.
    monkeypatch.setattr(webhooks, "_send_rate", webhooks._SendRate())


def _ctx(redis: Redis, settings: Settings, **overrides: Any) -> DeliveryContext:
    return cast(
        DeliveryContext,
        SimpleNamespace(redis=redis, settings=settings.model_copy(update=overrides)),
    )


async def _sending(redis: Redis, per_s: int) -> None:
    """The throughput counters say the service sent ``per_s`` a second lately."""
    now = time.time()
    async with redis.pipeline(transaction=True) as pipe:
        for back in (1, 2):
            throughput.count(pipe, "fcm", "sent", per_s, now - back)
        await pipe.execute()


async def _outbox_entries(redis: Redis, n: int) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        for i in range(n):
            events.emit(pipe, ACCOUNT, [("push.delivered", {"message_id": f"m{i}"})], time.time())
        await pipe.execute()


def _endpoint() -> Endpoint:
    now = time.time()
    return Endpoint(
        id="wh_yield",
        account=ACCOUNT,
        url="https://hooks.example.com/events",
        events=["*"],
        description="",
        active=True,
        scopes=[],
        created_at=now,
        updated_at=now,
    )


async def _queue(redis: Redis, n: int, backlog_max: int, first: int = 0) -> int:
    made = [
        deliveries.NewDelivery(f"wh_yield.1-0.{i}", f"evt_{i}", "push.delivered", "{}")
        for i in range(first, first + n)
    ]
    async with redis.pipeline(transaction=True) as pipe:
        deliveries.enqueue(pipe, ACCOUNT, "wh_yield", made, time.time(), backlog_max)
        [dropped] = await pipe.execute()
    return int(dropped)


def test_the_outbox_waits_only_while_sends_are_busy_and_it_has_room(settings: Settings) -> None:
    async def scenario(redis: Redis) -> None:
        ctx = _ctx(redis, settings, webhook_busy_sends_per_s=100, webhook_backlog_max=1000)
        await _outbox_entries(redis, 3)
        assert not await webhooks._outbox_may_wait(ctx)  # nothing sent lately

        await _sending(redis, 500)
        webhooks._send_rate = webhooks._SendRate()
        assert await webhooks._outbox_may_wait(ctx)  # busy, 3 entries < 1000 / 200

        await _outbox_entries(redis, 2)  # 5 entries: the room is full
        assert not await webhooks._outbox_may_wait(ctx)

        keep_pace = _ctx(redis, settings, webhook_busy_cpu_share=1)
        assert not await webhooks._outbox_may_wait(keep_pace)

    _run(settings, scenario)


def test_a_sender_pauses_while_busy_until_its_backlog_is_half_full(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(redis: Redis) -> None:
        slept: list[float] = []

        async def record(seconds: float) -> None:
            slept.append(seconds)

        monkeypatch.setattr(webhooks.asyncio, "sleep", record)
        ctx = _ctx(redis, settings, webhook_busy_cpu_share=0.1, webhook_backlog_max=100)
        endpoint = _endpoint()
        burnt = time.process_time() - 0.02  # a round that took 20 ms of CPU in 25 ms

        await webhooks._yield_to_sends(ctx, endpoint, 0.025, burnt)
        assert slept == []  # not busy: full speed

        await _sending(redis, 500)
        webhooks._send_rate = webhooks._SendRate()
        await _queue(redis, 10, 100)
        await webhooks._yield_to_sends(ctx, endpoint, 0.025, burnt)
        assert len(slept) == 1
        assert 0.17 <= slept[0] <= webhooks._MAX_PAUSE_S  # 20 ms at 10 % ≈ 200 ms a round

        await _queue(redis, 45, 100, first=10)  # 55 waiting: over half of 100
        await webhooks._yield_to_sends(ctx, endpoint, 0.025, burnt)
        assert len(slept) == 1  # no pause: the backlog must not fill for the campaign's sake

    _run(settings, scenario)


def test_past_the_backlog_the_oldest_are_dropped_marked_and_counted(settings: Settings) -> None:
    async def scenario(redis: Redis) -> None:
        assert await _queue(redis, 3, 5) == 0
        assert await _queue(redis, 4, 5, first=3) == 2  # 7 for 5 places: the 2 oldest go
        queued = [i for i in await redis.lrange(keys.webhook_queue(ACCOUNT, "wh_yield"), 0, -1)]
        assert queued == [f"wh_yield.1-0.{i}" for i in range(2, 7)]
        for i, status in ((0, "dropped"), (1, "dropped"), (2, "pending"), (6, "pending")):
            record = await redis.hgetall(keys.webhook_delivery(ACCOUNT, f"wh_yield.1-0.{i}"))
            assert record["status"] == status
            assert record["event_id"] == f"evt_{i}"
        assert (await deliveries.stats(redis, ACCOUNT, "wh_yield"))["dropped"] == "2"
        # The endpoint has work due now.
        assert await redis.zscore(keys.webhook_work(), deliveries.work_member(ACCOUNT, "wh_yield"))

    _run(settings, scenario)


def test_the_beat_publishes_one_fanout_a_second_and_only_for_events(settings: Settings) -> None:
    async def scenario(redis: Redis) -> None:
        queue = jobs.WEBHOOKS
        assert await beat.publish_webhook_fanout(redis) == 0  # an empty outbox: no job
        await _outbox_entries(redis, 1)
        assert await beat.publish_webhook_fanout(redis) == 1
        assert await beat.publish_webhook_fanout(redis) == 0  # within the second
        assert await redis.llen(queue) == 1
        await asyncio.sleep(1.1)
        assert await beat.publish_webhook_fanout(redis) == 1
        assert await redis.llen(queue) == 2

    _run(settings, scenario)
