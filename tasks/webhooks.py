"""``webhook.deliver``: post an endpoint's due event deliveries (on the ``bulk`` queue)."""

from __future__ import annotations

from celery import Task

from tasks import run_job
from worker.delivery.webhooks import drain
from worker.runtime.celery_app import app
from worker.store import jobs


@app.task(name=jobs.WEBHOOK_DELIVER, bind=True, max_retries=None)
def deliver(self: Task[[str, str], None], account_id: str, endpoint_id: str) -> None:
    # The job names the endpoint only; its deliveries and their state are in Redis.
    run_job(self, drain, account_id, endpoint_id)
