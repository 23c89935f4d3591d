"""Frequency caps: at most ``max`` non-transactional sends per contact per channel per
window (``window_s``, fixed windows counted from the Unix epoch: a day is a UTC day),
campaigns and automation steps counting together, enforced in Redis (``cap_take.lua``)
so that every worker sees the same counts. A campaign's contact over the cap is skipped
(reason ``frequency_cap``), or put off to the next window (the account's ``over_cap:
defer``); a page walked again after a crash counts its contacts once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from worker.store import keys, scripts

CHANNELS = ("whatsapp", "push")


@dataclass(frozen=True)
class Cap:
    max: int
    window_s: int

    def window_of(self, at: float) -> int:
        """The number of the window ``at`` falls in."""
        return int(at // self.window_s)


async def load(redis: Redis, account: str) -> dict[str, Cap]:
    raw = await redis.hgetall(keys.frequency_caps(account))
    out: dict[str, Cap] = {}
    for channel, value in raw.items():
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        data = json.loads(value)
        out[name] = Cap(int(data["max"]), int(data["window_s"]))
    return out


async def save(redis: Redis, account: str, channel: str, cap: Cap | None) -> None:
    if cap is None:
        await redis.hdel(keys.frequency_caps(account), channel)
    else:
        value = json.dumps({"max": cap.max, "window_s": cap.window_s})
        await redis.hset(keys.frequency_caps(account), channel, value)


async def take(
    redis: Redis,
    account: str,
    channel: str,
    cap: Cap,
    sender: str,
    contacts: list[str],
    window: int | None = None,
) -> set[str]:
    """The contacts among ``contacts`` allowed one more send by ``sender`` (a campaign's
    id, an automation step's) in ``window`` (default: the current one); each allowed one
    is counted."""
    if not contacts:
        return set()
    if window is None:
        window = cap.window_of(time.time())
    allowed = await scripts.CAP_TAKE.run(
        redis,
        keys={"counts": keys.frequency_counts(account, channel, window)},
        args={
            "sender": sender,
            "max": cap.max,
            "ttl_s": cap.window_s * 2,
            "contacts": contacts,
        },
    )
    return {c for c, ok in zip(contacts, allowed, strict=True) if int(ok)}
