"""``whatsapp.send``: the job carries the account and message ids, nothing else."""

from __future__ import annotations

from celery import Task

from tasks import run_job
from worker.delivery.whatsapp import send_whatsapp
from worker.runtime.celery_app import app
from worker.store import jobs


@app.task(name=jobs.WHATSAPP_SEND, bind=True, max_retries=None)
def send(self: Task[[str, str], None], account_id: str, message_id: str) -> None:
    # The attempt budget is counted in the message record, not by Celery.
    run_job(self, send_whatsapp, account_id, message_id)
