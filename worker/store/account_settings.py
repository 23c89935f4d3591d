"""An account's audience settings (docs/audience.md), one hash a field each: quiet hours,
its own opt-out and opt-in keywords, default expiry per category. Read where a send is accepted or
a campaign's page walked (one ``HMGET``); written by ``/api/v1/settings/…``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis

from worker.models.timing import QuietHours
from worker.store import keys

QUIET_HOURS = "quiet_hours"
KEYWORDS = "keywords"
DEFAULT_TTL = "default_ttl"
OVER_CAP = "over_cap"
_FIELDS = (QUIET_HOURS, KEYWORDS, DEFAULT_TTL, OVER_CAP)


@dataclass(frozen=True)
class AccountSettings:
    quiet_hours: QuietHours | None = None
    # The account's own inbound keywords, on top of STOP/UNSUBSCRIBE and START.
    opt_out_keywords: frozenset[str] = frozenset()
    opt_in_keywords: frozenset[str] = frozenset()
    # Category → seconds a send of it is worth sending when it says nothing itself.
    default_ttl: dict[str, int] = field(default_factory=dict)
    # Over a frequency cap: put off to the cap's next window (else skipped).
    defer_over_cap: bool = False

    def quiet_window(self, own: QuietHours | Literal[False] | None) -> QuietHours | None:
        """The quiet hours in force for a campaign or a step with ``own``: its own window,
        none (``false``), or (absent) the account's."""
        if own is None:
            return self.quiet_hours
        return own or None


async def load(redis: Redis, account: str) -> AccountSettings:
    raw = await redis.hmget(keys.account_settings(account), list(_FIELDS))
    values: list[Any] = [
        None if v is None else json.loads(v.decode() if isinstance(v, bytes) else v) for v in raw
    ]
    quiet, words, ttl, over_cap = values
    return AccountSettings(
        quiet_hours=QuietHours.model_validate(quiet) if quiet else None,
        opt_out_keywords=frozenset((words or {}).get("opt_out", ())),
        opt_in_keywords=frozenset((words or {}).get("opt_in", ())),
        default_ttl={str(k): int(v) for k, v in (ttl or {}).items()},
        defer_over_cap=over_cap == "defer",
    )


async def save(redis: Redis, account: str, name: str, value: Any) -> None:
    """Set one setting (``None``: remove it)."""
    assert name in _FIELDS
    if value is None:
        await redis.hdel(keys.account_settings(account), name)
    else:
        await redis.hset(keys.account_settings(account), name, json.dumps(value))


# Per process: the settings of each account read in the last second. A send reads them
# for its default expiry and quiet hours; a change is seen by every process within this.
CACHE_S = 1.0
_cache: dict[str, tuple[float, AccountSettings]] = {}


async def load_cached(redis: Redis, account: str) -> AccountSettings:
    now = time.monotonic()
    hit = _cache.get(account)
    if hit is not None and now - hit[0] < CACHE_S:
        return hit[1]
    found = await load(redis, account)
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[account] = (now, found)
    return found
