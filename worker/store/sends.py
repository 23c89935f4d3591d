"""Accepting a send in one round trip, WhatsApp or push alike: the API's checks, the
message record and its job, in one Lua script each (whatsapp_send.lua, push_send.lua;
atomic: a suspension or a revocation cannot slip in between the checks and the write).
The API makes the full error out of the problem returned (worker.api.refusals)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from worker.models import WHATSAPP_BODY_MAX_CHARS
from worker.models.push_payload import MAX_PAYLOAD_BYTES
from worker.store import channels, keys, scripts, usage
from worker.store.jobs import job_payload, queue_for
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
    consent: str = "",
) -> Refused | None:
    """Store the message and its job if every check passes; else what failed.
    ``key_hash``: check that API key too. ``window_phone``: a free-form message, which
    needs the customer's 24 h window open (else the message's template must exist).
    ``consent``: the category whose opt-outs (the contact's, the number's) refuse the
    send (``recipient_opted_out``, detail ``channel:category``); "" checks none."""
    account = message.account
    task = task_name(message)
    queue = queue_for(task)
    template_field = (
        keys.template_field(message.template_name, message.language or "en")
        if message.template_name
        else ""
    )
    template_or_window = (
        keys.whatsapp_window(account, window_phone)
        if window_phone is not None
        else keys.templates(account)
    )
    problem, *detail = await scripts.WHATSAPP_SEND.run(
        redis,
        keys={
            "api_key": keys.api_key(key_hash or ""),
            "channel": keys.channel(account, channels.WHATSAPP),
            "suspension": keys.channel_suspended(account, channels.WHATSAPP),
            "contact": keys.contact(account, message.contact_id or ""),
            "template_or_window": template_or_window,
            "message": keys.message(account, message.id),
            "unstarted": keys.unstarted(),
            "queue": queue,
            "optouts": keys.whatsapp_optouts(account),
            "delayed": keys.delayed(),
        },
        args={
            "check_key": "1" if key_hash else "0",
            "check_contact": "1" if message.contact_id else "0",
            "template_field": template_field,
            "parameter_count": len(message.parameters),
            "ttl_s": ttl_s,
            "unstarted_member": task_member(message),
            "created_at": repr(message.created_at),
            "job": job_payload(task, account, message.id, queue),
            "fields": json.dumps(encode(message)),
            "body_max_chars": WHATSAPP_BODY_MAX_CHARS,
            "consent_category": consent,
            "phone": message.to or "",
            "due": _due(message),
        },
    )
    return _refused(problem, detail)


async def accept_push(
    redis: Redis,
    message: Message,
    ttl_s: int,
    *,
    key_hash: str | None,
    payload_bytes: Mapping[str, int],
    consent: str = "",
) -> Refused | None:
    """Store the push message, its roster and its job if every check passes (the key,
    push enabled, the contact's active tokens, the payload's size on the platforms those
    devices are on); else what failed (``payload_too_large``'s detail: the platforms,
    space-separated). ``message.device_count`` becomes the number of devices.
    ``key_hash``: check that API key too. ``payload_bytes``: platform → size.
    ``consent``: the category whose opt-outs refuse the send ("" checks none)."""
    account = message.account
    task = task_name(message)
    queue = queue_for(task)
    problem, *detail = await scripts.PUSH_SEND.run(
        redis,
        keys={
            "api_key": keys.api_key(key_hash or ""),
            "fcm_channel": keys.channel(account, channels.FCM),
            "apns_channel": keys.channel(account, channels.APNS),
            "contact_tokens": keys.contact_push_tokens(account, message.contact_id or ""),
            "message": keys.message(account, message.id),
            "roster": keys.message_roster(account, message.id),
            "unstarted": keys.unstarted(),
            "queue": queue,
            "usage": usage.key(account, message.created_at),
            "contact": keys.contact(account, message.contact_id or ""),
            "delayed": keys.delayed(),
        },
        args={
            "check_key": "1" if key_hash else "0",
            "fcm_bytes": payload_bytes["fcm"],
            "apns_bytes": payload_bytes["apns"],
            "max_bytes": MAX_PAYLOAD_BYTES,
            "ttl_s": ttl_s,
            "unstarted_member": task_member(message),
            "created_at": repr(message.created_at),
            "job": job_payload(task, account, message.id, queue),
            "fields": json.dumps(encode(message)),
            "usage_ttl_s": usage.KEEP_S,
            "consent_category": consent,
            "due": _due(message),
        },
    )
    refused = _refused(problem, detail)
    if refused is None:
        message.device_count = int(detail[0])
    return refused


def _due(message: Message) -> str:
    """When the message's job is due, if put off (quiet hours): it waits in the delayed
    set; "" when it goes on its queue now."""
    return repr(message.deferred_until) if message.deferred_until else ""


def _refused(problem: bytes | str, detail: list[Any]) -> Refused | None:
    """A send script's reply: None for ``ok``, else the refusal."""
    problem = problem.decode() if isinstance(problem, bytes) else str(problem)
    if problem == "ok":
        return None
    raw = detail[0] if detail else ""
    return Refused(problem, raw.decode() if isinstance(raw, bytes) else str(raw))
