"""Every job's name, its queue and its envelope, here and nowhere else.

A job is published by name (its Celery message written onto its queue's Redis list,
below) and run by the task of that name in ``tasks/``. Transactional sends have
workers of their own, so that a campaign or a flood of enrolments never delays an
OTP: campaign and automation jobs go to ``bulk``. (An automation's send steps are
ordinary messages: their jobs go to ``transactional``.) Event webhooks go to ``webhooks``,
whose worker runs at the lowest CPU priority: telling a customer's system what happened
never slows the sending itself (it catches up once the CPU is free).

Publishing: the Celery message written straight onto its queue's Redis list.

kombu's publish costs more CPU than all the rest of an API request (building the
message, a Redis client per publish, a "task-sent" event: docs/performance.md). The message
kombu would write (Celery protocol 2, kombu's JSON envelope, base64 body) is built
here and LPUSHed, inside the caller's MULTI when there is one: a message record and
its job are then stored together, with no moment when one exists without the other.
A job carries ids only, never content. ``tests/unit/test_enqueue.py`` checks the
envelope against what kombu itself writes.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import random
import socket

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

TRANSACTIONAL = "transactional"
BULK = "bulk"
WEBHOOKS = "webhooks"
QUEUES = (TRANSACTIONAL, BULK, WEBHOOKS)

WHATSAPP_SEND = "whatsapp.send"  # one WhatsApp message
PUSH_SEND = "push.send"  # one push message: all of a contact's devices
CAMPAIGN_FANOUT = "campaign.fanout"  # a slice of a campaign's audience walk
CAMPAIGN_PUSH = "campaign.push"  # a campaign's push batch (one message, a page's devices)
CAMPAIGN_WHATSAPP = "campaign.whatsapp"  # a campaign's WhatsApp batch (a list of messages)
AUTOMATION_STEP = "automation.step"  # one automation run's next steps
AUTOMATION_BATCH = "automation.batch"  # runs whose waits ended together
QUARANTINE = "job.quarantine"  # records a job that kept killing its worker process
WEBHOOK_DELIVER = "webhook.deliver"  # an endpoint's due event deliveries
WEBHOOK_FANOUT = "webhook.fanout"  # the outbox's new events to each endpoint's queue

NAMES = (
    WHATSAPP_SEND,
    PUSH_SEND,
    CAMPAIGN_FANOUT,
    CAMPAIGN_PUSH,
    CAMPAIGN_WHATSAPP,
    AUTOMATION_STEP,
    AUTOMATION_BATCH,
    QUARANTINE,
    WEBHOOK_DELIVER,
    WEBHOOK_FANOUT,
)


def queue_for(task: str) -> str:
    if task.startswith("webhook."):
        return WEBHOOKS
    return BULK if task.startswith(("campaign.", "automation.")) else TRANSACTIONAL


def celery_routes() -> dict[str, dict[str, str]]:
    """Celery's ``task_routes``: the same rule, for jobs published through Celery."""
    return {name: {"queue": queue_for(name)} for name in NAMES}


_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"


def _uuid4() -> str:
    """A random (version 4) UUID's text, as ``str(uuid.uuid4())`` but without its
    ``os.urandom`` call (a system call per id; two per job were ~4 % of the API's CPU per
    send). Celery's task ids and delivery tags need to be unique, not unpredictable."""
    n = random.getrandbits(128) & ~(0xF000 << 64) | (0x4000 << 64)  # version 4
    h = f"{n & ~(0xC000 << 48) | (0x8000 << 48):032x}"  # RFC 4122 variant
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def job_payload(task: str, account_id: str, job_id: str, queue: str | None = None) -> str:
    task_id = _uuid4()
    args = [account_id, job_id]
    body = json.dumps([args, {}, _EMBED]).encode()
    # Only the ids vary: the rest of the envelope is serialised once per task and queue
    # (a send's whole JSON encoding would cost more than the rest of the request).
    return _envelope(task, queue or queue_for(task)).format(
        body=base64.b64encode(body).decode(),
        id=json.dumps(task_id),
        argsrepr=json.dumps(repr(args)),
        tag=json.dumps(_uuid4()),
    )


@functools.cache
def _envelope(task: str, queue: str) -> str:
    marker = {"body": "@body@", "id": "@id@", "argsrepr": "@argsrepr@", "tag": "@tag@"}
    text = json.dumps(
        {
            "body": marker["body"],
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": task,
                "id": marker["id"],
                "shadow": None,
                "eta": None,
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": [None, None],
                "root_id": marker["id"],
                "parent_id": None,
                "argsrepr": marker["argsrepr"],
                "kwargsrepr": "{}",
                "origin": _ORIGIN,
                "ignore_result": True,
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": marker["id"],
                "reply_to": None,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": marker["tag"],
            },
        }
    )
    text = text.replace("{", "{{").replace("}", "}}")
    text = text.replace('"@body@"', '"{body}"')
    for name in ("id", "argsrepr", "tag"):
        text = text.replace(f'"@{name}@"', "{" + name + "}")
    return text


def add_job(pipe: Pipeline, task: str, account_id: str, job_id: str) -> None:
    """Publish ``task`` for the job as part of the caller's pipeline or MULTI."""
    queue = queue_for(task)
    pipe.lpush(queue, job_payload(task, account_id, job_id, queue))


async def publish(redis: Redis, task: str, account_id: str, job_id: str) -> None:
    queue = queue_for(task)
    await redis.lpush(queue, job_payload(task, account_id, job_id, queue))
