"""How the worker's main process treats a job whose pool process died under it.

Celery gives such a job back (``task_reject_on_worker_lost``) at the far end of its queue:
behind a campaign's whole backlog, the work the dead process held waited minutes. Here it
goes back at the front, as the jobs of a dead worker do when their visibility timeout
passes, and is taken over as soon as its lease (no longer renewed) runs out.

A job that kills its process every time (a segfault in a library, the OOM killer) would go
round for ever, taking a pool process down each time: after ``job_max_worker_losses``
deaths it is quarantined instead: acknowledged, and a ``job.quarantine`` job records it as
a job that failed on a bug (its message failed and dead-lettered, the account's job errors).
"""

from __future__ import annotations

import logging
from typing import Any

import redis as sync_redis
from celery import Task
from celery.exceptions import Reject
from celery.worker.request import Request
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import QoS as VirtualQoS

from worker.config import get_settings
from worker.store import keys
from worker.store.client import create_sync_redis
from worker.store.jobs import QUARANTINE, job_payload, queue_for

log = logging.getLogger(__name__)

# A death counts towards quarantine for this long: deaths hours apart are not a loop.
_LOSSES_TTL_S = 3600

_client: sync_redis.Redis | None = None


def _redis() -> sync_redis.Redis:
    global _client
    if _client is None:
        _client = create_sync_redis(get_settings())
    return _client


class DispatchRequest(Request):
    _worker_lost = False

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = getattr(exc_info.exception, "exc", exc_info.exception)  # ExceptionWithTraceback
        # Celery rejects with requeue for two reasons: our Reject (infrastructure: the back
        # of the queue, after a pause, is right) and a lost worker process.
        self._worker_lost = not isinstance(exc, Reject)
        return super().on_failure(exc_info, send_failed_event, return_ok)

    def reject(self, requeue: bool = False) -> None:
        if not (requeue and self._worker_lost) or self.acknowledged:
            super().reject(requeue=requeue)
            return
        try:
            losses = _count_loss(str(self.id))
            if losses >= get_settings().job_max_worker_losses:
                self._quarantine(losses)
                self.acknowledge()
                return
            self._requeue_at_front()
        except sync_redis.RedisError as exc:
            # Left unacknowledged: the visibility timeout brings it back.
            log.warning("job %s of a lost worker not requeued now (%s)", self.id, exc)
            return
        self.acknowledged = True
        self.send_event("task-rejected", requeue=True)

    def _requeue_at_front(self) -> None:
        message = self.message
        qos = getattr(message.channel, "qos", None)
        if not isinstance(qos, kombu_redis.QoS):  # another transport: Celery's own way
            super().reject(requeue=True)
            return
        # What the Redis transport's reject does, but with the job consumed next.
        qos.restore_by_tag(message.delivery_tag, leftmost=False)
        VirtualQoS.ack(qos, message.delivery_tag)
        message._state = "REJECTED"

    def _quarantine(self, losses: int) -> None:
        args = list(self.args or [])
        account_id, job_id = (str(a) for a in args[:2]) if len(args) >= 2 else ("", "")
        log.error(
            "%s %s killed its worker process %d times; quarantined",
            self.name,
            job_id,
            losses,
            extra={"event": "job.quarantined", "account": account_id},
        )
        payload = job_payload(
            QUARANTINE, account_id, f"{self.name} {job_id} {losses}", queue_for(self.name)
        )
        _redis().lpush(queue_for(self.name), payload)


def _count_loss(task_id: str) -> int:
    key = keys.job_losses(task_id)
    with _redis().pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, _LOSSES_TTL_S)
        losses, _ = pipe.execute()
    return int(losses)


class DispatchTask(Task[Any, Any]):
    Request = "tasks.base:DispatchRequest"
