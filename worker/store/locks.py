"""Leases: one job at a time per message, even when a job is delivered twice."""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

from worker.store import scripts


async def acquire(redis: Redis, key: str, lease_s: float) -> str | None:
    """A token if we now hold ``key`` for ``lease_s``, None if another job does."""
    token = secrets.token_hex(8)
    ok = await redis.set(key, token, nx=True, px=int(lease_s * 1000))
    return token if ok else None


async def release(redis: Redis, key: str, token: str) -> None:
    await scripts.run(redis, "release", [key], [token])
