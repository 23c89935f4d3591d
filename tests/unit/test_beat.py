"""The delayed set and the beat that empties it (real Valkey, a recording publisher)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from worker.beat import pump_once
from worker.config import Settings
from worker.store import delayed, keys
from worker.store.client import create_redis


class Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send_task(self, name: str, args: list[Any], **_: Any) -> None:
        self.sent.append((name, args))


def test_only_due_jobs_are_published_and_removed(settings: Settings) -> None:
    # A database of its own: the session's beat must not lose jobs to this fake publisher.
    isolated = settings.model_copy(
        update={"redis_url": settings.effective_redis_url.rsplit("/", 1)[0] + "/7"}
    )

    async def scenario() -> None:
        redis = create_redis(isolated)
        account = f"beat{time.time_ns()}"
        now = time.time()
        await delayed.schedule(redis, "whatsapp.send", account, "msg_due", now - 1)
        await delayed.schedule(redis, "push.send", account, "msg_later", now + 60)
        celery = Publisher()

        await pump_once(redis, celery, now)  # type: ignore[arg-type]

        mine = [(n, a) for n, a in celery.sent if a[0] == account]
        assert mine == [("whatsapp.send", [account, "msg_due"])]
        later = delayed.member("push.send", account, "msg_later")
        assert await redis.zscore(keys.delayed(), later) == now + 60
        # Rescheduling moves a job instead of adding a second one.
        await delayed.schedule(redis, "push.send", account, "msg_later", now - 1)
        await pump_once(redis, celery, now)  # type: ignore[arg-type]
        assert [a for _, a in celery.sent if a[0] == account] == [
            [account, "msg_due"],
            [account, "msg_later"],
        ]
        assert await redis.zscore(keys.delayed(), later) is None
        await redis.aclose()

    asyncio.run(scenario())
