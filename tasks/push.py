"""``push.send``: one job per push message (all of a contact's devices), ids only."""

from __future__ import annotations

from celery import Task

from tasks import run_job
from worker.delivery.push import send_push
from worker.runtime.celery_app import app
from worker.store import jobs


@app.task(name=jobs.PUSH_SEND, bind=True, max_retries=None)
def send(self: Task[[str, str], None], account_id: str, message_id: str) -> None:
    # Only the devices still to do are sent to next time.
    run_job(self, send_push, account_id, message_id)
