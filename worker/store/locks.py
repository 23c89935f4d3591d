"""Leases: one job at a time per message (or batch, walk, run), even when a job is
delivered twice.

A lease lives a few seconds (``Settings.lease_ttl_s``) and the job that holds it renews it
from its own event loop while it runs (``kept``). A job whose process dies stops renewing,
so the job delivered again takes over within one time to live of the crash, instead of
waiting out the longest a job may run. Two holders never run at once: a renewal that finds
the lease gone or another token there stops its job (``LeaseLost``), and so does a holder
that could not renew for a whole time to live (Redis away: it can no longer tell).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from worker.store import scripts

log = logging.getLogger(__name__)

# Renewals per time to live: two may fail (a slow Redis) before the lease is in doubt.
_RENEWALS_PER_TTL = 3
# How long a job that ends waits for its keeper to stop before releasing the lease.
_STOP_WAIT_S = 1.0


class LeaseLost(RuntimeError):
    """The job's lease was taken over or could not be renewed: the job stopped where it
    was, and is given back (the holder now, or the job again, finishes the work)."""


async def acquire(redis: Redis, key: str, ttl_s: float) -> str | None:
    """A token if we now hold ``key`` for ``ttl_s``, None if another job does."""
    token = secrets.token_hex(8)
    ok = await redis.set(key, token, nx=True, px=int(ttl_s * 1000))
    return token if ok else None


async def release(redis: Redis, key: str, token: str) -> None:
    await scripts.RELEASE.run(redis, keys={"lock": key}, args={"token": token})


async def renew(redis: Redis, key: str, token: str, ttl_s: float) -> bool:
    """True if the lease is still ours and lives ``ttl_s`` from now."""
    renewed = await scripts.RENEW.run(
        redis, keys={"lock": key}, args={"token": token, "ttl_ms": int(ttl_s * 1000)}
    )
    return bool(renewed)


@contextlib.asynccontextmanager
async def kept(redis: Redis, key: str, token: str, ttl_s: float) -> AsyncIterator[None]:
    """Renew the lease we hold while the body runs, release it after; raises ``LeaseLost``
    in the body's place when the lease stops being ours."""
    owner = asyncio.current_task()
    assert owner is not None, "a lease is kept by the task that holds it"
    keeper = _Keeper(redis, key, token, ttl_s, owner)
    task = asyncio.create_task(keeper.run())
    try:
        yield
    except asyncio.CancelledError:
        if keeper.lost:
            raise LeaseLost(f"lease {key}: {keeper.lost}") from None
        raise
    finally:
        # The keeper stops at its next look, even if a cancellation got lost on the way
        # (redis-py can swallow one that lands mid-command); no waiting on it for long.
        keeper.stopped = True
        task.cancel()
        await asyncio.wait({task}, timeout=_STOP_WAIT_S)
        # Compare-and-delete: never another job's lease. A lost one may be ours still
        # (Redis was away); if Redis is still away, it expires on its own.
        with contextlib.suppress(*(() if not keeper.lost else (RedisError, OSError))):
            await release(redis, key, token)


async def acquire_or_outlive(redis: Redis, key: str, ttl_s: float) -> str | None:
    """A token if we hold ``key`` now or once its holder turns out dead (the lease runs out
    without a renewal: at most ``ttl_s``); None as soon as the holder renews it (it lives:
    the caller comes back later). A job given back after its process died finds its own
    old lease there: it takes over within the time to live instead of going round the
    queue again."""
    deadline = time.monotonic() + ttl_s + 0.5
    expires: float | None = None
    while True:
        token = await acquire(redis, key, ttl_s)
        if token is not None:
            return token
        left_s = max(int(await redis.pttl(key)), 0) / 1000
        now = time.monotonic()
        # Renewed: the lease now ends later than it did at the last look.
        if (expires is not None and now + left_s > expires + 0.05) or now > deadline:
            return None
        expires = now + left_s
        await asyncio.sleep(min(0.25, max(left_s, 0.01)))


@contextlib.asynccontextmanager
async def held(redis: Redis, key: str, ttl_s: float) -> AsyncIterator[str | None]:
    """Take ``key`` (waiting out a dead holder's lease) and keep it while the body runs:
    yields the token, or None (and holds nothing) when a live job has it."""
    token = await acquire_or_outlive(redis, key, ttl_s)
    if token is None:
        yield None
        return
    async with kept(redis, key, token, ttl_s):
        yield token


class _Keeper:
    """Renews one lease every third of its time to live until stopped; cancels its owner
    when the lease is no longer (or no longer surely) the owner's."""

    def __init__(
        self, redis: Redis, key: str, token: str, ttl_s: float, owner: asyncio.Task[object]
    ) -> None:
        self.redis, self.key, self.token, self.ttl_s, self.owner = redis, key, token, ttl_s, owner
        self.stopped = False
        self.lost = ""

    async def run(self) -> None:
        every = self.ttl_s / _RENEWALS_PER_TTL
        renewed_at = time.monotonic()
        while not self.stopped:
            await asyncio.sleep(every)
            if self.stopped:
                return
            try:
                ok = await renew(self.redis, self.key, self.token, self.ttl_s)
            except (RedisError, OSError) as exc:
                # Not yet in doubt: the lease lives ttl_s from the last renewal that worked.
                if time.monotonic() - renewed_at + every < self.ttl_s:
                    log.warning("lease %s not renewed (%s); trying again", self.key, exc)
                    continue
                self._lose(f"not renewed for {self.ttl_s:g}s ({exc})")
                return
            if self.stopped:
                return  # released meanwhile: nothing was lost
            if not ok:
                self._lose("taken over by another job")
                return
            renewed_at = time.monotonic()

    def _lose(self, reason: str) -> None:
        log.error("lease %s lost: %s; the job stops here", self.key, reason)
        self.lost = reason
        self.owner.cancel()
