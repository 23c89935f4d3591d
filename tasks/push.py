"""``push.send``: one job per push message (all of a contact's devices), ids only."""

from __future__ import annotations

from celery import Task

from tasks import follow_up
from worker import runtime
from worker.celery_app import app
from worker.delivery.push import send_push


@app.task(name="push.send", bind=True, max_retries=None)
def send(self: Task[[str, str], None], account_id: str, message_id: str) -> None:
    rt = runtime.current()
    # Only the devices still to do are sent to next time.
    follow_up(self, account_id, message_id, rt.run(send_push(rt.context, account_id, message_id)))
