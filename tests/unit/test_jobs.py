"""Every job's name and queue live in `worker.store.jobs`: each name there has its task,
each task its name there, and Celery routes them as the enqueue code does."""

from __future__ import annotations

import importlib

from worker.runtime.celery_app import app
from worker.store import jobs


def test_each_job_name_has_a_task_and_each_task_a_job_name() -> None:
    for module in app.conf.include:
        importlib.import_module(module)
    # The tasks of the service's own modules (a bench may register one of its own).
    ours = {name for name, task in app.tasks.items() if task.__module__ in app.conf.include}
    assert ours == set(jobs.NAMES)


def test_celery_routes_send_each_job_where_the_enqueue_code_does() -> None:
    routes = jobs.celery_routes()
    assert {name: route["queue"] for name, route in routes.items()} == {
        jobs.WHATSAPP_SEND: jobs.TRANSACTIONAL,
        jobs.PUSH_SEND: jobs.TRANSACTIONAL,
        jobs.QUARANTINE: jobs.TRANSACTIONAL,
        jobs.CAMPAIGN_FANOUT: jobs.BULK,
        jobs.CAMPAIGN_PUSH: jobs.BULK,
        jobs.CAMPAIGN_WHATSAPP: jobs.BULK,
        jobs.AUTOMATION_STEP: jobs.BULK,
        jobs.AUTOMATION_BATCH: jobs.BULK,
        # A slow receiver of event webhooks never holds up a send.
        jobs.WEBHOOK_DELIVER: jobs.WEBHOOKS,
        jobs.WEBHOOK_FANOUT: jobs.WEBHOOKS,
    }
