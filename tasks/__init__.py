"""Celery task entry points: decode ids, call ``worker.delivery``, map the outcome to a retry.

Importing this package (the worker does, through the app's ``include``) ties the
per-process runtime to the prefork child's life.

A job is never dropped by an exception. Celery acknowledges (or drops) a late-acked
job whose task raised, so ``run_job`` catches everything: when Redis or the broker is
unreachable, the job is rejected with requeue (or, if even that fails, left
unacknowledged for the visibility timeout to bring back); any other error is
recorded on the message, which goes to the dead letters for an operator to see.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from celery import Task
from celery.exceptions import Reject, Retry
from celery.signals import worker_process_init, worker_process_shutdown

from worker.delivery.context import DeliveryContext, Outcome
from worker.delivery.failures import record_failed_job
from worker.observe import heap, logs
from worker.outages import is_infrastructure
from worker.runtime import process as runtime
from worker.store import delayed

log = logging.getLogger(__name__)

# The store or the broker is unreachable or full, or the job ran out of time (a provider
# that hangs): nothing is wrong with the job itself, it goes back to the queue.
# Before requeueing after an outage, so a Redis that stays down (or full) is not hammered.
_REQUEUE_PAUSE_S = 1.0


@worker_process_init.connect
def _start_runtime(**_: Any) -> None:
    logs.quiet_libraries()
    # The push libraries (firebase-admin with google-auth, aioapns with h2) take ~0.3 s of
    # CPU to import: paid when the process starts, not by the first push it sends.
    importlib.import_module("worker.providers.fcm")
    importlib.import_module("worker.providers.apns")
    runtime.start()
    heap.freeze_startup()


@worker_process_shutdown.connect
def _stop_runtime(**_: Any) -> None:
    runtime.stop()


Deliver = Callable[[DeliveryContext, str, str], Coroutine[Any, Any, Outcome]]


def run_job(
    task: Task[[str, str], None], deliver: Deliver, account_id: str, message_id: str
) -> None:
    rt = runtime.current()
    try:
        outcome = rt.run(deliver(rt.context, account_id, message_id))
        follow_up(task, account_id, message_id, outcome)
    except Retry:
        raise
    except Exception as exc:
        if is_infrastructure(exc):
            log.warning(
                "%s %s: store or broker unavailable or full (%s); job requeued",
                task.name,
                message_id,
                exc,
            )
            time.sleep(_REQUEUE_PAUSE_S)
            raise Reject(str(exc), requeue=True) from exc
        log.exception("%s %s crashed", task.name, message_id)
        record_failure(str(task.name), account_id, message_id, exc)


def record_failure(task_name: str, account_id: str, job_id: str, exc: BaseException) -> None:
    """A job that failed on a bug: its crash recorder, then the account's job errors, and
    the job is acknowledged (done again, it would fail the same way). Only if Redis is away
    is it given back, to be recorded when Redis is there."""
    rt = runtime.current()
    try:
        rt.run(record_failed_job(rt.context, task_name, account_id, job_id, exc))
    except Exception as down:
        if not is_infrastructure(down):
            raise
        raise Reject(str(down), requeue=True) from exc


def follow_up(
    task: Task[[str, str], None], account_id: str, message_id: str, outcome: Outcome
) -> None:
    """Run the job again when the outcome asks for it.

    A short delay is a Celery countdown (the job stays with this worker, well within
    the visibility timeout). A longer one is written to the delayed set in Redis,
    which ``dispatch beat`` moves back to the queue when due: a countdown longer than
    the visibility timeout would be redelivered again and again.
    """
    if outcome.retry_in_s is None:
        return
    rt = runtime.current()
    if outcome.retry_in_s <= rt.context.settings.countdown_max_s:
        raise task.retry(countdown=outcome.retry_in_s)
    rt.run(
        delayed.schedule(
            rt.context.redis,
            str(task.name),
            account_id,
            message_id,
            time.time() + outcome.retry_in_s,
        )
    )
