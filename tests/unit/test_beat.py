"""The delayed set and the beat that empties it (real Valkey, a recording publisher)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

from redis.asyncio import Redis

from worker.config import Settings
from worker.runtime.beat import pump_once
from worker.store import delayed, keys
from worker.store.client import create_redis
from worker.store.jobs import TRANSACTIONAL


async def published(redis: Redis, account: str) -> list[tuple[str, list[Any]]]:
    """The jobs on the transactional queue for this account, oldest first."""
    raw = await redis.lrange(TRANSACTIONAL, 0, -1)
    jobs = [json.loads(item) for item in reversed(raw)]
    out = []
    for job in jobs:
        args = json.loads(base64.b64decode(job["body"]))[0]
        if args[0] == account:
            out.append((job["headers"]["task"], args))
    return out


def test_only_due_jobs_are_published_and_removed(settings: Settings) -> None:
    # A database of its own: no worker serves its queue, so the jobs stay to be read.
    isolated = settings.model_copy(
        update={"redis_url": settings.effective_redis_url.rsplit("/", 1)[0] + "/7"}
    )

    async def scenario() -> None:
        redis = create_redis(isolated)
        account = f"beat{time.time_ns()}"
        now = time.time()
        await delayed.schedule(redis, "whatsapp.send", account, "msg_due", now - 1)
        await delayed.schedule(redis, "push.send", account, "msg_later", now + 60)
        await pump_once(redis, now)

        assert await published(redis, account) == [("whatsapp.send", [account, "msg_due"])]
        later = delayed.member("push.send", account, "msg_later")
        assert await redis.zscore(keys.delayed(), later) == now + 60
        # Rescheduling moves a job instead of adding a second one.
        await delayed.schedule(redis, "push.send", account, "msg_later", now - 1)
        await pump_once(redis, now)
        assert [a for _, a in await published(redis, account)] == [
            [account, "msg_due"],
            [account, "msg_later"],
        ]
        assert await redis.zscore(keys.delayed(), later) is None
        await redis.aclose()

    asyncio.run(scenario())
