"""``whatsapp.send``: the job carries the account and message ids, nothing else."""

from __future__ import annotations

from celery import Task

from worker import runtime
from worker.celery_app import app
from worker.delivery.whatsapp import send_whatsapp


@app.task(name="whatsapp.send", bind=True, max_retries=None)
def send(self: Task[[str, str], None], account_id: str, message_id: str) -> None:
    rt = runtime.current()
    outcome = rt.run(send_whatsapp(rt.context, account_id, message_id))
    if outcome.retry_in_s is not None:
        # The attempt budget is counted in the message record, not by Celery.
        raise self.retry(countdown=outcome.retry_in_s)
