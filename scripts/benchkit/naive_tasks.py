"""The obvious way, for comparison: one Celery task per device token (clients reused).

Loaded only by the bench's own worker (`celery … worker -I benchkit.naive_tasks`),
never by the service's.
"""

from __future__ import annotations

from typing import Any

from tasks import run_job  # noqa: F401  (the runtime's process hooks come with the package)
from worker.models.push_payload import Notification
from worker.runtime import process as runtime
from worker.runtime.celery_app import app
from worker.store import channels

COUNTER = "bench:naive"


async def _send(account: str, platform: str, token: str) -> None:
    ctx = runtime.current().context
    config, version = (await channels.load_push(ctx.redis, account))[platform]
    sender = await ctx.push.get(account, platform, config, version)
    [result] = await sender.send(Notification("Bench", "Naive"), [token])
    await ctx.redis.hincrby(COUNTER, "delivered" if result.ok else "failed", 1)


@app.task(name="bench.naive_push")
def naive_push(account: str, platform: str, token: str) -> Any:
    runtime.current().run(_send(account, platform, token))
