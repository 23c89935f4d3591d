"""Worker heartbeats in Redis: which worker groups are alive and what they consume.

Each worker's main process writes a key with a short TTL every few seconds from the
consumer's own event loop (a Celery bootstep), so a worker whose consumer hangs stops
beating even if its process lives on. A clean stop deletes the key at once; a killed
worker's key expires. `/readyz`, `dispatch status` and the metrics read these keys;
they cost one SCAN per look, not a broadcast to every worker and a wait for answers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from typing import Any

import redis as sync_redis
from celery import bootsteps
from celery.worker import state as worker_state

from worker.config import get_settings
from worker.store import keys
from worker.store.client import create_sync_redis

log = logging.getLogger(__name__)

INTERVAL_S = 2.0
TTL_S = 10


def _delivery_tags() -> list[str]:
    """The broker's delivery tags of every job this worker process has taken."""
    tags = []
    for request in list(worker_state.requests.values()):
        tag = getattr(getattr(request, "message", None), "delivery_tag", None)
        if tag:
            tags.append(str(tag))
    return tags


class Heartbeat(bootsteps.StartStopStep):
    """A consumer bootstep (``app.steps["consumer"].add(Heartbeat)``)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._client: sync_redis.Redis | None = None
        self._timer: Any = None
        self._started = time.time()

    def start(self, parent: Any) -> None:
        settings = get_settings()
        self._client = create_sync_redis(settings)
        self._node = parent.hostname
        self._beat(parent)
        self._timer = parent.timer.call_repeatedly(INTERVAL_S, self._beat, (parent,), priority=10)

    def _beat(self, parent: Any) -> None:
        assert self._client is not None
        queues = sorted(q.name for q in parent.task_consumer.queues) if parent.task_consumer else []
        state = {
            "node": self._node,
            "queues": queues,
            "pid": os.getpid(),
            "concurrency": int(getattr(parent.pool, "num_processes", 0) or 0),
            "started_at": self._started,
            "at": time.time(),
            "metrics_port": parent.app.conf.get("dispatch_metrics_port"),
            "active": len(worker_state.active_requests),
        }
        # The jobs this worker holds (waiting, counting down, running) are seen: kombu gives
        # a job to another worker once it has not been for the visibility timeout, so a dead
        # worker's jobs come back within seconds while a live worker's long job stays put.
        held = dict.fromkeys(_delivery_tags(), time.time())
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.set(keys.worker_heartbeat(self._node), json.dumps(state), ex=TTL_S)
                if held:
                    # XX: a job acknowledged meanwhile is not put back in the index.
                    pipe.zadd(keys.BROKER_UNACKED_INDEX, held, xx=True)
                pipe.execute()
        except sync_redis.RedisError as exc:  # the broker's own reconnection logs the outage
            log.debug("heartbeat not written: %s", exc)

    def stop(self, parent: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._client is not None:
            with contextlib.suppress(sync_redis.RedisError):
                self._client.delete(keys.worker_heartbeat(self._node))
            self._client.close()
            self._client = None

    shutdown = stop
