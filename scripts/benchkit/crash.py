"""Measuring a crash: the leases the killed process held, and when other jobs took them over.

A job renews its lease (``worker.store.locks``) every third of its time to live; the
killed process's leases are the ones nobody renews any more. Work resumes when another job
holds each of them: that moment, after the kill, is the resumption time.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import redis

from worker.store import jobs, keys


class LeaseWatch:
    def __init__(self, client: redis.Redis, account_id: str, ttl_s: float) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.patterns = [
            keys.message_lock(account_id, "*"),
            keys.campaign_lock(account_id, "*"),
            keys.run_lock(account_id, "*"),
        ]

    def held(self) -> dict[str, str]:
        """Every lease of the account now, with its holder's token."""
        found = [k for p in self.patterns for k in self.client.scan_iter(match=p, count=1000)]
        tokens = self.client.mget(found) if found else []
        return {str(k): str(t) for k, t in zip(found, tokens, strict=True) if t is not None}

    def unrenewed(self, at_kill: dict[str, str]) -> dict[str, str]:
        """Those of ``at_kill`` that nobody renewed for a third of the time to live and a
        margin (a live holder renews each once in that time): the dead process's."""
        window = self.ttl_s / 3 + 0.5
        last: dict[str, int] = {}
        renewed: set[str] = set()
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            for key, token in at_kill.items():
                if self.client.get(key) != token:
                    renewed.add(key)  # released or taken: not a dead holder's
                    continue
                ttl = int(self.client.pttl(key))
                if key in last and ttl > last[key]:
                    renewed.add(key)
                last[key] = ttl
            time.sleep(0.05)
        return {k: t for k, t in at_kill.items() if k not in renewed}

    def taken_over(self, dead: dict[str, str], killed_at: float, timeout_s: float) -> float:
        """Seconds from ``killed_at`` (time.monotonic) until another job held each of
        ``dead``; raises TimeoutError past ``timeout_s``."""
        waiting = dict(dead)
        last = killed_at
        deadline = time.monotonic() + timeout_s
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"leases not taken over in {timeout_s:g}s: {sorted(waiting)}")
            for key, token in list(waiting.items()):
                now = self.client.get(key)
                if now is not None and now != token:
                    last = time.monotonic()
                    del waiting[key]
            time.sleep(0.02)
        return last - killed_at


def busy_pool_process(
    app: Any, node: str, task: str, timeout_s: float = 10.0
) -> tuple[int, list[str]]:
    """A pool process of worker ``node`` running a ``task`` job right now (what Celery's
    ``inspect active`` says): its pid and the job's arguments (account, job id)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replies = app.control.inspect(destination=[node], timeout=1.0, limit=1).active() or {}
        for job in replies.get(node, []):
            if job.get("name") == task and job.get("worker_pid"):
                return int(job["worker_pid"]), [str(a) for a in job.get("args", [])]
        time.sleep(0.02)
    raise TimeoutError(f"no {task} job running on {node} within {timeout_s:g}s")


def kill_busy_batch(
    app: Any, client: redis.Redis, node: str, attempts: int = 20
) -> tuple[float, dict[str, str]]:
    """SIGKILL a pool process of ``node`` in the middle of a campaign push batch: its
    lease is read first (no scan of the keyspace: the job's arguments name it), so the
    kill lands on a job known to hold it. Returns when (time.monotonic) and the lease."""
    for _ in range(attempts):
        pid, (account, message_id) = busy_pool_process(app, node, jobs.CAMPAIGN_PUSH)
        key = keys.message_lock(account, message_id)
        token = client.get(key)
        if token is not None:
            os.kill(pid, signal.SIGKILL)
            return time.monotonic(), {key: str(token)}
    raise RuntimeError(f"no batch job of {node} could be caught holding its lease")
