"""Device tokens: who owns each, and what happened every time we sent to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from worker.store import keys


def member(platform: str, token: str) -> str:
    return f"{platform}:{token}"


def split(member_: str) -> tuple[str, str]:
    platform, _, token = member_.partition(":")
    return platform, token


@dataclass
class TokenStats:
    platform: str
    token: str
    contact: str | None
    delivered: int
    failed: int
    last_error: str | None
    last_success_at: float | None
    last_failure_at: float | None
    registered_at: float | None
    pruned_at: float | None
    prune_reason: str | None
    last_registered_at: float | None

    @property
    def active(self) -> bool:
        return self.pruned_at is None


def _float(raw: dict[str, str], name: str) -> float | None:
    value = raw.get(name)
    return float(value) if value else None


def stats_from(member_: str, raw: dict[str, str]) -> TokenStats:
    platform, token = split(member_)
    return TokenStats(
        platform=platform,
        token=token,
        contact=raw.get("contact"),
        delivered=int(raw.get("delivered", 0)),
        failed=int(raw.get("failed", 0)),
        last_error=raw.get("last_error"),
        last_success_at=_float(raw, "last_success_at"),
        last_failure_at=_float(raw, "last_failure_at"),
        registered_at=_float(raw, "registered_at"),
        pruned_at=_float(raw, "pruned_at"),
        prune_reason=raw.get("prune_reason"),
        last_registered_at=_float(raw, "last_registered_at"),
    )


async def load_many(redis: Redis, account_id: str, members: list[str]) -> list[TokenStats]:
    async with redis.pipeline(transaction=False) as pipe:
        for m in members:
            pipe.hgetall(keys.push_token(account_id, m))
        raws = cast(list[dict[str, str]], await pipe.execute())
    return [stats_from(m, raw) for m, raw in zip(members, raws, strict=True)]


async def all_members(redis: Redis, account_id: str) -> list[str]:
    return sorted(cast(set[str], await redis.smembers(keys.push_tokens(account_id))))


def last_activity(t: TokenStats) -> float | None:
    """When the token last proved alive: its last delivery or registration."""
    times = [x for x in (t.last_success_at, t.last_registered_at, t.registered_at) if x is not None]
    return max(times) if times else None


async def expire_inactive(
    redis: Redis, account_id: str, now: float, max_idle_s: float, chunk: int = 1000
) -> list[TokenStats]:
    """Stop sending to the account's tokens with no delivery (nor registration) in
    ``max_idle_s``: FCM expires Android tokens inactive for 270 days, so a send to one is
    wasted. They are removed from their contact, like a token the provider reported dead,
    with the reason kept (``dispatch tokens stats`` shows them). Returns them."""
    expired: list[TokenStats] = []
    reason = f"inactive: no delivery in {max_idle_s / 86400:g} days"
    cursor = 0
    while True:
        cursor, batch = await redis.sscan(keys.push_tokens(account_id), cursor, count=chunk)
        members = sorted(cast(set[str], set(batch)))
        stale = [
            t
            for t in await load_many(redis, account_id, members)
            if t.active and (last_activity(t) or 0) < now - max_idle_s
        ]
        if stale:
            async with redis.pipeline(transaction=True) as pipe:
                for t in stale:
                    m = member(t.platform, t.token)
                    pipe.hset(
                        keys.push_token(account_id, m),
                        mapping={"pruned_at": repr(now), "prune_reason": reason},
                    )
                    if t.contact:
                        pipe.srem(keys.contact_push_tokens(account_id, t.contact), m)
                await pipe.execute()
            expired += stale
        if cursor == 0:
            return expired
