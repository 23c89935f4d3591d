"""``webhook.deliver``: post an endpoint's due event deliveries; ``webhook.fanout``: the
outbox's events to each endpoint's queue (both on the ``webhooks`` queue, whose worker runs
at the lowest CPU priority)."""

from __future__ import annotations

from celery import Task

from tasks import run_job
from worker.delivery.webhooks import drain, fan_out
from worker.runtime.celery_app import app
from worker.store import jobs


@app.task(name=jobs.WEBHOOK_DELIVER, bind=True, max_retries=None)
def deliver(self: Task[[str, str], None], account_id: str, endpoint_id: str) -> None:
    # The job names the endpoint only; its deliveries and their state are in Redis.
    run_job(self, drain, account_id, endpoint_id)


@app.task(name=jobs.WEBHOOK_FANOUT, bind=True, max_retries=None)
def fanout(self: Task[[str, str], None], account_id: str, job_id: str) -> None:
    # One job for every account's events: the outbox is one stream.
    run_job(self, fan_out, account_id, job_id)
