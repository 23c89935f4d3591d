"""Accepting a WhatsApp send in one round trip: the API's checks, the message record and
its job, in one Lua script (atomic: a suspension or a revocation cannot slip in between
the checks and the write). The API makes the full error out of the problem returned."""

from __future__ import annotations

import json
from dataclasses import dataclass

from redis.asyncio import Redis

from worker.models import WHATSAPP_BODY_MAX_CHARS
from worker.store import channels, keys, scripts
from worker.store.enqueue import job_payload
from worker.store.jobs import queue_for
from worker.store.messages import Message, encode, task_member, task_name


@dataclass(frozen=True)
class Refused:
    problem: str  # key_invalid, channel_suspended, template_problem, …
    detail: str  # the suspension reason, the stored template


async def accept_whatsapp(
    redis: Redis,
    message: Message,
    ttl_s: int,
    *,
    key_hash: str | None,
    window_phone: str | None,
) -> Refused | None:
    """Store the message and its job if every check passes; else what failed.
    ``key_hash``: check that API key too. ``window_phone``: a free-form message, which
    needs the customer's 24 h window open (else the message's template must exist)."""
    account = message.account
    task = task_name(message)
    queue = queue_for(task)
    template_field = (
        keys.template_field(message.template_name, message.language or "en")
        if message.template_name
        else ""
    )
    fifth = (
        keys.whatsapp_window(account, window_phone)
        if window_phone is not None
        else keys.templates(account)
    )
    problem, *detail = await scripts.run(
        redis,
        "whatsapp_send",
        [
            keys.api_key(key_hash or ""),
            keys.channel(account, channels.WHATSAPP),
            keys.channel_suspended(account, channels.WHATSAPP),
            keys.contact(account, message.contact_id or ""),
            fifth,
            keys.message(account, message.id),
            keys.unstarted(),
            queue,
        ],
        [
            "1" if key_hash else "0",
            "1" if message.contact_id else "0",
            template_field,
            len(message.parameters),
            ttl_s,
            task_member(message),
            repr(message.created_at),
            job_payload(task, account, message.id, queue),
            json.dumps(encode(message)),
            WHATSAPP_BODY_MAX_CHARS,
        ],
    )
    problem = problem.decode() if isinstance(problem, bytes) else str(problem)
    if problem == "ok":
        return None
    raw = detail[0] if detail else ""
    return Refused(problem, raw.decode() if isinstance(raw, bytes) else str(raw))
