"""``automation.step``: advance one automation run (on the ``bulk`` queue)."""

from __future__ import annotations

from celery import Task

from tasks import run_job
from worker.delivery.automation import run_automation, run_batch
from worker.runtime.celery_app import app
from worker.store import jobs


@app.task(name=jobs.AUTOMATION_STEP, bind=True, max_retries=None)
def step(self: Task[[str, str], None], account_id: str, run_id: str) -> None:
    # The job carries ids only; where the run is, and what it did, is in Redis.
    run_job(self, run_automation, account_id, run_id)


@app.task(name=jobs.AUTOMATION_BATCH, bind=True, max_retries=None)
def batch(self: Task[[str, str], None], account_id: str, batch_id: str) -> None:
    # Runs whose waits ended together, listed by the beat under the batch id.
    run_job(self, run_batch, account_id, batch_id)
