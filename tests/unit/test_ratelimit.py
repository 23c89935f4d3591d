"""The GCRA limiter against a real Valkey: spacing, refusal without reservation, penalty."""

from __future__ import annotations

import asyncio
import itertools
import secrets

from worker.config import Settings
from worker.delivery.ratelimit import RateLimiter
from worker.store.client import create_redis


def _name() -> str:
    return f"test:{secrets.token_hex(6)}"


def test_slots_are_spaced_by_the_rate(settings: Settings) -> None:
    async def scenario() -> list[float]:
        redis = create_redis(settings)
        limiter = RateLimiter(redis, headroom=1.0, max_wait_s=10)
        name = _name()
        slots = [(await limiter.acquire(name, 100)).at for _ in range(50)]
        await redis.aclose()
        return slots

    slots = asyncio.run(scenario())
    # Reserved one after another: each next slot is 10 ms after the previous one.
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(abs(gap - 0.010) < 1e-6 for gap in gaps), gaps
    assert abs(slots[-1] - slots[0] - 0.49) < 1e-6


def test_a_wait_too_long_reserves_nothing(settings: Settings) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        limiter = RateLimiter(redis, headroom=1.0, max_wait_s=10)
        name = _name()
        for _ in range(20):
            await limiter.acquire(name, 100)  # 200 ms of slots reserved
        refused = await limiter.acquire(name, 100, max_wait_s=0.05)
        again = await limiter.acquire(name, 100, max_wait_s=0.05)
        assert not refused.granted
        assert 0.15 < refused.wait_s <= 0.2
        # Nothing was reserved by the refusal: the wait did not grow.
        assert abs(again.wait_s - refused.wait_s) < 0.01
        await redis.aclose()

    asyncio.run(scenario())


def test_cost_and_headroom(settings: Settings) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        limiter = RateLimiter(redis, headroom=0.5, max_wait_s=10)
        name = _name()
        await limiter.acquire(name, 1000, cost=100)  # at half of 1,000/s: 200 ms of slots
        nxt = await limiter.acquire(name, 1000)
        assert 0.19 < nxt.wait_s <= 0.2
        await redis.aclose()

    asyncio.run(scenario())


def test_a_provider_429_slows_the_key_down(settings: Settings) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        limiter = RateLimiter(redis, headroom=1.0, max_wait_s=10, penalty_s=5)
        name = _name()
        assert await limiter.penalize(name) == 2.0
        assert await limiter.penalize(name) == 4.0
        await limiter.acquire(name, 100)
        nxt = await limiter.acquire(name, 100)
        assert 0.035 < nxt.wait_s <= 0.04  # 10 ms x 4
        for _ in range(5):
            await limiter.penalize(name)
        assert await limiter.penalize(name) == 8.0  # capped
        await redis.aclose()

    asyncio.run(scenario())


def test_many_clients_share_one_schedule(settings: Settings) -> None:
    async def one_client(name: str) -> list[float]:
        redis = create_redis(settings)
        limiter = RateLimiter(redis, headroom=1.0, max_wait_s=10)
        slots = [(await limiter.acquire(name, 200)).at for _ in range(25)]
        await redis.aclose()
        return slots

    async def scenario() -> list[float]:
        name = _name()
        groups = await asyncio.gather(*(one_client(name) for _ in range(4)))
        return sorted(w for group in groups for w in group)

    slots = asyncio.run(scenario())
    # 100 slots from four clients at 200/s span half a second, 5 ms apart.
    assert abs(slots[-1] - slots[0] - 0.495) < 1e-6
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(abs(gap - 0.005) < 1e-6 for gap in gaps), gaps
