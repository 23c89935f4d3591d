"""Reading a Redis stream as one consumer of a group: the beat's inboxes (contact
triggers, the webhook outbox) are read the same way."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError


async def entries(
    redis: Redis, stream: str, group: str, consumer: str, count: int
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """The entries to handle: first what this consumer read before and did not
    acknowledge (it died half-way), then new ones, at most ``count`` of each. On first use
    (or after Redis lost its data) the group is made, reading from the stream's start, and
    nothing is returned this time."""
    for start in ("0", ">"):
        try:
            replies: Any = await redis.xreadgroup(group, consumer, {stream: start}, count=count)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            with contextlib.suppress(ResponseError):  # BUSYGROUP: another reader made it
                await redis.xgroup_create(stream, group, id="0", mkstream=True)
            return
        # RESP3 answers {stream: entries}, RESP2 [[stream, entries]].
        pairs = replies.items() if isinstance(replies, dict) else (replies or [])
        for _stream, found in pairs:
            for entry_id, values in found:
                yield str(entry_id), values


def done(pipe: Pipeline, stream: str, group: str, entry_id: str) -> None:
    """Acknowledge the entry and delete it (in the caller's transaction): the stream holds
    only what is still to do."""
    pipe.xack(stream, group, entry_id)
    pipe.xdel(stream, entry_id)
