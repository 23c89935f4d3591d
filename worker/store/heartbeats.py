"""Worker heartbeats as stored in Redis, and reading them: which worker groups are alive.

The beats are written by each worker's consumer (``worker.runtime.heartbeat``, a Celery
bootstep); `/readyz`, `dispatch status` and the metrics read them here, without Celery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from redis.asyncio import Redis

from worker.store import keys


@dataclass(frozen=True)
class WorkerBeat:
    node: str
    queues: list[str]
    pid: int
    concurrency: int
    started_at: float
    at: float
    metrics_port: int | None
    active: int = 0


async def alive(redis: Redis) -> list[WorkerBeat]:
    """The worker groups whose heartbeat has not expired, by node name."""
    found = [k async for k in redis.scan_iter(match=keys.worker_heartbeats(), count=200)]
    if not found:
        return []
    raws = await redis.mget(found)
    beats = [WorkerBeat(**json.loads(raw)) for raw in raws if raw]
    return sorted(beats, key=lambda b: b.node)
