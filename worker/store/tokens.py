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
    )


async def load_many(redis: Redis, account_id: str, members: list[str]) -> list[TokenStats]:
    async with redis.pipeline(transaction=False) as pipe:
        for m in members:
            pipe.hgetall(keys.push_token(account_id, m))
        raws = cast(list[dict[str, str]], await pipe.execute())
    return [stats_from(m, raw) for m, raw in zip(members, raws, strict=True)]


async def all_members(redis: Redis, account_id: str) -> list[str]:
    return sorted(cast(set[str], await redis.smembers(keys.push_tokens(account_id))))
