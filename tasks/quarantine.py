"""``job.quarantine``: record a job that kept killing its worker process as failed on a bug.

Published by the worker's main process (``tasks.base``) in place of the job; runs the
job's own crash recorder, so that what it worked on ends as any crashed job's does.
"""

from __future__ import annotations

from celery import Task

from tasks import record_failure
from worker.runtime.celery_app import app
from worker.store import jobs


class WorkerLost(RuntimeError):
    """The job's worker process died each time it ran it."""


@app.task(name=jobs.QUARANTINE, bind=True, max_retries=None)
def quarantine(self: Task[[str, str], None], account_id: str, what: str) -> None:
    task_name, job_id, losses = what.split(" ")
    reason = WorkerLost(f"its worker process died {losses} times running it; quarantined")
    record_failure(task_name, account_id, job_id, reason)
