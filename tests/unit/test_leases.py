"""Leases kept while their job runs, taken over quickly once it stops (real Valkey)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from worker.config import Settings
from worker.store import locks
from worker.store.client import create_redis

TTL = 0.3


def _key() -> str:
    return f"test:lease:{time.time_ns()}"


def _run(settings: Settings, scenario: Callable[[Redis], Awaitable[None]]) -> None:
    async def main() -> None:
        redis = create_redis(settings)
        try:
            await scenario(redis)
        finally:
            await redis.aclose()

    asyncio.run(main())


def test_a_running_job_keeps_its_lease_past_the_time_to_live(settings: Settings) -> None:
    async def scenario(redis: Redis) -> None:
        key = _key()
        async with locks.held(redis, key, TTL) as token:
            assert token is not None
            await asyncio.sleep(TTL * 4)
            # Still ours: a second delivery of the job is refused all along.
            assert await locks.acquire(redis, key, TTL) is None
            assert await redis.get(key) == token
        # Released at the end: the next job takes it at once.
        assert await redis.exists(key) == 0

    _run(settings, scenario)


def test_a_dead_jobs_lease_is_taken_over_within_its_time_to_live(settings: Settings) -> None:
    async def scenario(redis: Redis) -> None:
        key = _key()
        # A job that died: it acquired, then nobody renewed.
        assert await locks.acquire(redis, key, TTL) is not None
        started = time.monotonic()
        taken = None
        for _ in range(50):
            taken = await locks.acquire(redis, key, TTL)
            if taken is not None:
                break
            await asyncio.sleep(0.02)
        assert taken is not None
        assert time.monotonic() - started <= TTL + 0.1

    _run(settings, scenario)


def test_a_job_whose_lease_is_taken_over_stops_with_lease_lost(settings: Settings) -> None:
    async def scenario(redis: Redis) -> None:
        key = _key()
        reached_end = []

        async def job() -> None:
            async with locks.held(redis, key, TTL) as token:
                assert token is not None
                await redis.set(key, "another-job", px=10_000)  # e.g. after a long stall
                await asyncio.sleep(TTL * 3)
                reached_end.append(True)

        with pytest.raises(locks.LeaseLost, match="taken over"):
            await job()
        assert not reached_end
        # The other holder's lease is left alone.
        assert await redis.get(key) == "another-job"

    _run(settings, scenario)


def test_an_outside_cancellation_is_not_a_lost_lease(settings: Settings) -> None:
    async def scenario(redis: Redis) -> None:
        key = _key()

        async def job() -> None:
            async with locks.held(redis, key, TTL):
                await asyncio.sleep(10)

        task = asyncio.create_task(job())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await redis.exists(key) == 0

    _run(settings, scenario)


def test_a_dead_holders_lease_is_outlived_and_a_live_ones_is_not(settings: Settings) -> None:
    async def scenario(redis: Redis) -> None:
        dead, live = _key(), _key()
        assert await locks.acquire(redis, dead, TTL) is not None  # never renewed
        started = time.monotonic()
        assert await locks.acquire_or_outlive(redis, dead, TTL) is not None
        assert time.monotonic() - started <= TTL + 0.15

        ttl = 1.5
        async with locks.held(redis, live, ttl):
            started = time.monotonic()
            assert await locks.acquire_or_outlive(redis, live, ttl) is None
            # Given up at the first renewal seen (one look every 0.25 s at most), not
            # after the whole time to live.
            assert time.monotonic() - started <= ttl / 3 + 0.35 < ttl

    _run(settings, scenario)
