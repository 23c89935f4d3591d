"""Publishing jobs by task name: the API never imports the task bodies."""

from __future__ import annotations

from celery import Celery

from worker.celery_app import BULK, TRANSACTIONAL
from worker.models import Channel

# A publish that cannot reach Redis fails fast instead of stalling the event loop.
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def enqueue(celery: Celery, task: str, account_id: str, message_id: str) -> None:
    """Publish ``task`` (``whatsapp.send``, ``push.send``, ``campaign.*``) with ids only,
    never content. Campaign jobs go to the ``bulk`` queue, served by workers of their own,
    so that a campaign never delays a transactional send."""
    celery.send_task(
        task,
        args=[account_id, message_id],
        queue=BULK if task.startswith("campaign.") else TRANSACTIONAL,
        retry=True,
        retry_policy=_PUBLISH_RETRY,
    )


def task_for(channel: Channel) -> str:
    """The task that sends a message of this channel."""
    return {Channel.WHATSAPP: "whatsapp.send", Channel.PUSH: "push.send"}[channel]
