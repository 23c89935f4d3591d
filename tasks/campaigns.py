"""Campaign jobs, all on the ``bulk`` queue: the audience walk and the batches it publishes."""

from __future__ import annotations

from celery import Task

from tasks import run_job
from worker.delivery.campaign_batches import send_push_batch, send_whatsapp_batch
from worker.delivery.fanout import run_fanout
from worker.runtime.celery_app import app
from worker.store import jobs


@app.task(name=jobs.CAMPAIGN_FANOUT, bind=True, max_retries=None)
def fanout(self: Task[[str, str], None], account_id: str, campaign_id: str) -> None:
    # Walks a slice of the audience per job; the next job goes on from the cursor.
    run_job(self, run_fanout, account_id, campaign_id)


@app.task(name=jobs.CAMPAIGN_PUSH, bind=True, max_retries=None)
def push_batch(self: Task[[str, str], None], account_id: str, message_id: str) -> None:
    run_job(self, send_push_batch, account_id, message_id)


@app.task(name=jobs.CAMPAIGN_WHATSAPP, bind=True, max_retries=None)
def whatsapp_batch(self: Task[[str, str], None], account_id: str, batch_id: str) -> None:
    run_job(self, send_whatsapp_batch, account_id, batch_id)
