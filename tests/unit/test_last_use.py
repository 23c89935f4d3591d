"""A key's last use is written at most once a minute per API process: the guard calls
``LastUse.due`` on every request, and only the due ones reach Redis."""

from __future__ import annotations

import asyncio
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from worker.api.last_use import LastUse
from worker.store import keys


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeRedis:
    """Records the writes; fails them while ``down``."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str, str]] = []
        self.down = False

    async def hset(self, name: str, key: str, value: str) -> int:
        if self.down:
            raise RedisConnectionError("down")
        self.writes.append((name, key, value))
        return 1


def _note(last_use: LastUse, redis: FakeRedis, key_id: str) -> None:
    """What the guard does on each request with the key."""
    at = last_use.due(key_id)
    if at is not None:
        asyncio.run(last_use.write(cast(Redis, redis), key_id, at))


def test_one_write_per_key_per_minute() -> None:
    clock, redis = FakeClock(), FakeRedis()
    last_use = LastUse(every_s=60, clock=clock)
    start = clock.now
    for _ in range(100):
        _note(last_use, redis, "key_a")
    _note(last_use, redis, "key_b")  # another key has its own minute
    assert redis.writes == [
        (keys.api_key_last_used(), "key_a", str(start)),
        (keys.api_key_last_used(), "key_b", str(start)),
    ]
    clock.now += 59.9
    _note(last_use, redis, "key_a")
    assert len(redis.writes) == 2
    clock.now += 0.1
    _note(last_use, redis, "key_a")
    assert redis.writes[-1] == (keys.api_key_last_used(), "key_a", str(start + 60))


def test_a_clock_set_back_does_not_silence_a_key() -> None:
    clock, redis = FakeClock(), FakeRedis()
    last_use = LastUse(every_s=60, clock=clock)
    _note(last_use, redis, "key_a")
    clock.now -= 3600
    _note(last_use, redis, "key_a")
    assert [w[2] for w in redis.writes] == [str(clock.now + 3600), str(clock.now)]


def test_a_failed_write_fails_no_request_and_waits_its_minute() -> None:
    clock, redis = FakeClock(), FakeRedis()
    last_use = LastUse(every_s=60, clock=clock)
    redis.down = True
    _note(last_use, redis, "key_a")  # no exception
    redis.down = False
    _note(last_use, redis, "key_a")
    assert redis.writes == []  # not retried on every request
    clock.now += 60
    _note(last_use, redis, "key_a")
    assert len(redis.writes) == 1


def test_memory_is_bounded() -> None:
    clock, redis = FakeClock(), FakeRedis()
    last_use = LastUse(every_s=60, clock=clock, max_keys=3)
    for n in range(10):
        _note(last_use, redis, f"key_{n}")
    assert len(last_use._written) <= 3
    assert len(redis.writes) == 10
