"""Every job's name and queue, here and nowhere else.

A job is published by name (``worker.store.enqueue`` writes its Celery envelope onto its
queue's Redis list) and run by the task of that name in ``tasks/``. Transactional sends
have workers of their own, so that a campaign or a flood of enrolments never delays an
OTP: campaign and automation jobs go to ``bulk``. (An automation's send steps are
ordinary messages: their jobs go to ``transactional``.)
"""

from __future__ import annotations

TRANSACTIONAL = "transactional"
BULK = "bulk"
QUEUES = (TRANSACTIONAL, BULK)

WHATSAPP_SEND = "whatsapp.send"  # one WhatsApp message
PUSH_SEND = "push.send"  # one push message: all of a contact's devices
CAMPAIGN_FANOUT = "campaign.fanout"  # a slice of a campaign's audience walk
CAMPAIGN_PUSH = "campaign.push"  # a campaign's push batch (one message, a page's devices)
CAMPAIGN_WHATSAPP = "campaign.whatsapp"  # a campaign's WhatsApp batch (a list of messages)
AUTOMATION_STEP = "automation.step"  # one automation run's next steps
AUTOMATION_BATCH = "automation.batch"  # runs whose waits ended together
QUARANTINE = "job.quarantine"  # records a job that kept killing its worker process

NAMES = (
    WHATSAPP_SEND,
    PUSH_SEND,
    CAMPAIGN_FANOUT,
    CAMPAIGN_PUSH,
    CAMPAIGN_WHATSAPP,
    AUTOMATION_STEP,
    AUTOMATION_BATCH,
    QUARANTINE,
)


def queue_for(task: str) -> str:
    return BULK if task.startswith(("campaign.", "automation.")) else TRANSACTIONAL


def celery_routes() -> dict[str, dict[str, str]]:
    """Celery's ``task_routes``: the same rule, for jobs published through Celery."""
    return {name: {"queue": queue_for(name)} for name in NAMES}
