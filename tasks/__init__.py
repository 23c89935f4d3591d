"""Celery task entry points: decode ids, call ``worker.delivery``, map the outcome to a retry.

Importing this package (the worker does, through the app's ``include``) ties the
per-process runtime to the prefork child's life.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Task
from celery.signals import worker_process_init, worker_process_shutdown

from worker import logs, runtime
from worker.delivery.context import Outcome
from worker.store import delayed


@worker_process_init.connect
def _start_runtime(**_: Any) -> None:
    logs.quiet_libraries()
    runtime.start()


@worker_process_shutdown.connect
def _stop_runtime(**_: Any) -> None:
    runtime.stop()


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
