"""Message records: what was asked, where it stands, and every attempt made.

The worker writes each attempt's result, the new state and (once final) the
outcome signal in one MULTI, so a crash never leaves a message half-updated.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from worker.ids import new_id
from worker.models import Attempt, Channel, MessageStatus
from worker.models.push_payload import Priority
from worker.models.webhooks import EventType
from worker.store import campaigns, events, jobs, keys, scripts, throughput, usage
from worker.store.client import fields, hgetall_str
from worker.store.jobs import add_job

# The API waits on the outcome list for at most a minute; keep it a little longer.
_OUTCOME_TTL_S = 300
# The rank of "delivered" among the provider's status reports (see delivery_status.lua).
_DELIVERED = 2


class Message(BaseModel):
    id: str
    account: str
    channel: Channel
    status: MessageStatus
    created_at: float
    updated_at: float
    # WhatsApp: the recipient's number. Push: unset (the targets are device tokens).
    to: str | None = None
    contact_id: str | None = None
    template_name: str | None = None
    # WhatsApp: the template's category when the message was accepted (``free_form`` for a
    # text), so that its usage is counted under it without reading the template again.
    category: str | None = None
    language: str | None = None
    parameters: list[str] = Field(default_factory=list)
    text: str | None = None
    attempts: int = 0
    provider_message_id: str | None = None
    error: str | None = None
    code: str | None = None
    provider_code: str | None = None
    # What the provider reported later through status webhooks (sent/delivered/read/failed).
    delivery_status: str | None = None
    delivery_status_at: float | None = None
    delivery_error: str | None = None
    # Push: the notification, and how many of its devices got it so far.
    title: str | None = None
    url: str | None = None
    icon: str | None = None
    data: dict[str, Any] | None = None
    collapse_id: str | None = None
    # Push delivery options (``models.PushOptions``): kept with the message, so every
    # attempt and every device of a campaign batch is sent with the same ones.
    priority: Priority | None = None
    ttl_s: int | None = None
    badge: int | None = None
    sound: str | None = None
    thread_id: str | None = None
    image: str | None = None
    device_count: int = 0
    delivered: int = 0
    failed: int = 0
    # Retry bookkeeping: attempts made before the last redrive do not count against the
    # budget, nor does the time before it against the maximum age; nothing is sent
    # before `not_before` (a provider's Retry-After).
    attempt_base: int = 0
    redriven_at: float | None = None
    not_before: float | None = None
    dead_lettered_at: float | None = None
    # Set on a campaign's messages (one WhatsApp recipient, or one push batch): their
    # final results count towards the campaign's progress.
    campaign: str | None = None
    # What the send is for (`transactional`, `marketing` or the account's own), which a
    # recipient may opt out of (worker/store/preferences.py). Unset: transactional.
    send_category: str | None = None
    # No longer worth sending from then on: an attempt after it ends the message failed
    # with code `expired`, not dead-lettered (docs/audience.md).
    expires_at: float | None = None
    # Put off to then by quiet hours or a local send time (a campaign's): nothing is sent
    # before it, and its age counts from it.
    deferred_until: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    @property
    def budget_attempts(self) -> int:
        return self.attempts - self.attempt_base

    def age_s(self, now: float) -> float:
        return now - max(self.redriven_at or self.created_at, self.deferred_until or 0.0)


def new(account_id: str, channel: Channel, message_id: str | None = None, **fields: Any) -> Message:
    """A fresh, queued message (with a new id unless one is given)."""
    now = time.time()
    return Message(
        id=message_id or new_id("msg"),
        account=account_id,
        channel=channel,
        status=MessageStatus.QUEUED,
        created_at=now,
        updated_at=now,
        **fields,
    )


_JSON_FIELDS = {"parameters", "data"}


def encode(message: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in message.model_dump(mode="json").items():
        if value is None:
            continue
        out[name] = json.dumps(value) if name in _JSON_FIELDS else str(value)
    return out


def _decode(raw: dict[str, str]) -> Message:
    data: dict[str, Any] = dict(raw)
    for name in _JSON_FIELDS & data.keys():
        data[name] = json.loads(data[name])
    return Message.model_validate(data)


def task_name(message: Message) -> str:
    """The task that sends this message."""
    if message.channel is Channel.WHATSAPP:
        return jobs.WHATSAPP_SEND
    return jobs.CAMPAIGN_PUSH if message.campaign else jobs.PUSH_SEND


def task_member(message: Message) -> str:
    """``task account message``: how the beat names a job it may have to publish again."""
    task = task_name(message)
    return f"{task} {message.account} {message.id}"


async def create(redis: Redis, message: Message, ttl_s: int, *, publish: bool = False) -> None:
    """Store a new message and, with ``publish``, its job, in one MULTI."""
    async with redis.pipeline(transaction=True) as pipe:
        add(pipe, message, ttl_s)
        if publish:
            add_job(pipe, task_name(message), message.account, message.id)
        await pipe.execute()


def add(pipe: Pipeline, message: Message, ttl_s: int) -> None:
    """Store a new message (part of the caller's transaction). A campaign's messages are
    not swept for lost jobs: their batch may wait in a long queue, and the campaign's
    own walk publishes its batches again after a crash."""
    key = keys.message(message.account, message.id)
    pipe.hset(key, mapping=fields(encode(message)))
    pipe.expire(key, ttl_s)
    if message.campaign is None:
        pipe.zadd(keys.unstarted(), {task_member(message): message.created_at})


def mark_started(pipe: Pipeline, message: Message) -> None:
    """A job has worked on the message (part of the caller's MULTI)."""
    pipe.zrem(keys.unstarted(), task_member(message))


async def load(redis: Redis, account_id: str, message_id: str) -> Message | None:
    raw = await hgetall_str(redis, keys.message(account_id, message_id))
    return _decode(raw) if raw else None


async def load_many(redis: Redis, account_id: str, message_ids: list[str]) -> list[Message]:
    """The messages that still exist, in order, read in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for message_id in message_ids:
            pipe.hgetall(keys.message(account_id, message_id))
        raws = cast(list[dict[str, str]], await pipe.execute())
    return [_decode(raw) for raw in raws if raw]


async def load_attempts(redis: Redis, account_id: str, message_id: str) -> list[Attempt]:
    raw = cast(list[str], await redis.lrange(keys.message_attempts(account_id, message_id), 0, -1))
    return [Attempt.model_validate_json(item) for item in raw]


async def finish_attempt(
    redis: Redis,
    message: Message,
    attempt: Attempt,
    status: MessageStatus,
    ttl_s: int,
    *,
    not_before: float | None = None,
    dead_letter: bool = False,
) -> None:
    """Record an attempt (number ``attempt.attempt``) and the state it leaves the message
    in, in one transaction."""
    key = keys.message(message.account, message.id)
    attempts_key = keys.message_attempts(message.account, message.id)
    values, cleared = _attempt_fields(attempt, status)
    # The provider may report a WhatsApp message's delivery before this transaction names
    # its wamid: those reports wait under the wamid, and are applied once it is recorded.
    wamid = attempt.provider_message_id if message.channel is Channel.WHATSAPP else None
    hooked = await events.wanted(redis, message.account)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=fields(values))
        if cleared:
            pipe.hdel(key, *cleared)
        pipe.rpush(attempts_key, attempt.model_dump_json(exclude_none=True))
        pipe.expire(attempts_key, ttl_s)
        if wamid:
            pipe.set(keys.wamid_index(wamid), _wamid_owner(message.account, message.id), ex=ttl_s)
        mark_started(pipe, message)
        if message.channel is Channel.WHATSAPP:
            throughput.count(pipe, "whatsapp", attempt.outcome, 1, attempt.at)
        if not_before is not None:
            pipe.hset(key, "not_before", not_before)
        if dead_letter:
            add_dead_letter(pipe, message, attempt.at)
        if status.is_final:
            finished(pipe, message, status, _campaign_counts(message, status))
            if message.channel is Channel.WHATSAPP:
                # Counted with the final state it counts: a job redelivered after this
                # commit finds the message final and never gets here again.
                metric = "failed" if status is MessageStatus.FAILED else "sent"
                field = usage.whatsapp_field(metric, _category(message))
                usage.count(pipe, message.account, attempt.at, {field: 1})
        if hooked:
            _attempt_events(pipe, message, attempt, status, dead_letter=dead_letter)
        if wamid:
            # Last, so that its reply is the results' last but one.
            early = keys.early_statuses(wamid)
            pipe.lrange(early, 0, -1)
            pipe.delete(early)
        results = await pipe.execute()
    if wamid:
        await _apply_early_statuses(redis, message, cast(list[bytes | str], results[-2]))


def event_data(message: Message, **extra: Any) -> dict[str, Any]:
    """What an event says of a message: ids, channel and state, never its content or the
    recipient's number (what a key with the ``send`` scope reads of it)."""
    data: dict[str, Any] = {"message_id": message.id, "channel": message.channel.value}
    for name in ("contact_id", "campaign", "template_name", "provider_message_id"):
        value = getattr(message, name)
        if value is not None:
            data["campaign_id" if name == "campaign" else name] = value
    data.update({k: v for k, v in extra.items() if v is not None})
    return data


def _attempt_events(
    pipe: Pipeline, message: Message, attempt: Attempt, status: MessageStatus, *, dead_letter: bool
) -> None:
    """The events an attempt's result makes, in its own transaction (the outbox)."""
    batch: list[events.Event] = []
    if message.channel is Channel.WHATSAPP and attempt.outcome == "sent":
        data = event_data(message, status="sent", attempt=attempt.attempt)
        data["provider_message_id"] = attempt.provider_message_id
        batch.append((EventType.MESSAGE_SENT, data))
    if message.channel is Channel.WHATSAPP and status is MessageStatus.FAILED:
        data = event_data(
            message,
            status="failed",
            attempt=attempt.attempt,
            code=attempt.code,
            error=attempt.error,
            provider_code=attempt.provider_code,
        )
        batch.append((EventType.MESSAGE_FAILED, data))
    if dead_letter:
        data = event_data(message, status="failed", code=attempt.code, error=attempt.error)
        batch.append((EventType.MESSAGE_DEAD_LETTERED, data))
    events.emit(pipe, message.account, batch, attempt.at)


def _attempt_fields(
    attempt: Attempt, status: MessageStatus
) -> tuple[dict[str, str | float], list[str]]:
    """The message's fields the attempt sets, and those it clears: a send clears the last
    failure's error; a failure without a provider code clears an earlier one, so that
    error, code and provider code always describe the same attempt."""
    values: dict[str, str | float] = {
        "status": status.value,
        "updated_at": attempt.at,
        "attempts": attempt.attempt,
    }
    cleared: list[str] = []
    if attempt.outcome == "sent":
        assert attempt.provider_message_id
        values["provider_message_id"] = attempt.provider_message_id
        cleared = ["error", "code", "provider_code"]
    else:
        values["error"] = attempt.error or ""
        values["code"] = attempt.code or ""
        if attempt.provider_code:
            values["provider_code"] = attempt.provider_code
        else:
            cleared = ["provider_code"]
    return values, cleared


def _category(message: Message) -> str:
    return usage.category(message.category, message.template_name)


def _campaign_counts(message: Message, status: MessageStatus) -> dict[str, int]:
    """What a final state adds to the message's campaign: a WhatsApp message is one send
    of it; a push message's devices are counted one by one as they are recorded."""
    if message.channel is not Channel.WHATSAPP:
        return {}
    return {"failed" if status is MessageStatus.FAILED else "sent": 1}


async def _apply_early_statuses(redis: Redis, message: Message, raws: list[bytes | str]) -> None:
    """Reports the provider posted before this record existed (keys.early_statuses)."""
    for raw in raws:
        report = json.loads(raw)
        if report["account"] == message.account:
            await apply_delivery_status(
                redis,
                message.account,
                message.id,
                report["status"],
                report["at"],
                report["error"],
            )


def _wamid_owner(account_id: str, message_id: str) -> str:
    """What the wamid index holds for a message ("account message-id")."""
    return f"{account_id} {message_id}"


async def find_or_hold_status(
    redis: Redis, wamid: str, account_id: str, status: str, at: float, error: str
) -> tuple[str, str] | None:
    """(account, message id) the provider's report is about; or None, the report then held
    for an hour in case the worker has not yet written down the wamid it was answered."""
    report = {"account": account_id, "status": status, "at": at, "error": error}
    found = await scripts.HOLD_STATUS.run(
        redis,
        keys={"wamid_index": keys.wamid_index(wamid), "held": keys.early_statuses(wamid)},
        args={"report": json.dumps(report), "hold_s": 3600},
    )
    if not found:
        return None
    account, _, message_id = (found.decode() if isinstance(found, bytes) else found).partition(" ")
    return account, message_id


# How long a number that posted status webhooks counts as posting them.
_REPORTS_TTL_S = 24 * 3600


async def note_status_reports(redis: Redis, account_id: str) -> None:
    """The account's number posts status webhooks to us (see ``reports_status``)."""
    await redis.set(keys.whatsapp_reports(account_id), 1, ex=_REPORTS_TTL_S)


async def reports_status(redis: Redis, account_id: str) -> bool:
    """Whether a status webhook came for the account's number in the last day: only then
    is a send left without an answer worth waiting on for its "sent" report."""
    return bool(await redis.exists(keys.whatsapp_reports(account_id)))


async def confirm_unanswered(
    redis: Redis, account_id: str, message_id: str, wamid: str, ttl_s: float
) -> None:
    """A status report named one of the account's messages (``biz_opaque_callback_data``)
    under a wamid no attempt recorded: the provider took a send whose answer never came.
    The first report's wamid is kept for the message's next attempt, for ``ttl_s`` (as
    long as the message may still be sent)."""
    await redis.set(
        keys.whatsapp_confirmed(account_id, message_id), wamid, ex=int(ttl_s) + 1, nx=True
    )


async def unanswered_confirmation(redis: Redis, account_id: str, message_id: str) -> str | None:
    """The wamid the provider reported for a send of this message whose answer never
    came, if it did; never one already recorded for another message (a report is signed
    by the account, not by Meta alone: the account could name a wamid not its own)."""
    wamid = cast(str | None, await redis.get(keys.whatsapp_confirmed(account_id, message_id)))
    if not wamid:
        return None
    owner = cast(str | None, await redis.get(keys.wamid_index(wamid)))
    if owner is not None and owner != _wamid_owner(account_id, message_id):
        return None
    return wamid


def finished(
    pipe: Pipeline, message: Message, status: MessageStatus, counts: dict[str, int]
) -> None:
    """A message reached its final state (part of the caller's MULTI): wake the API request
    waiting on it, or count it in its campaign's progress."""
    if message.campaign is None:
        queue_outcome(pipe, message, status)
    elif counts:
        campaigns.count(pipe, message.account, message.campaign, counts)


async def cancel_many(redis: Redis, items: list[Message], campaign_id: str) -> None:
    """Messages of a cancelled campaign that were never sent end as failed ("cancelled")."""
    if not items:
        return
    now = time.time()
    async with redis.pipeline(transaction=True) as pipe:
        for message in items:
            pipe.hset(
                keys.message(message.account, message.id),
                mapping=fields(
                    {
                        "status": MessageStatus.FAILED.value,
                        "code": "cancelled",
                        "error": "Campaign cancelled before this message was sent",
                        "updated_at": now,
                    }
                ),
            )
        campaigns.count(pipe, items[0].account, campaign_id, {"cancelled": len(items)})
        await pipe.execute()


async def fail_unreadable(
    redis: Redis, account_id: str, message_id: str, campaign_id: str | None, error: str
) -> None:
    """A message whose record no longer reads as a message (a bug wrote it, or a hand):
    failed with ``error`` and dead-lettered as it is, and counted failed in its campaign,
    so that its campaign still completes."""
    key = keys.message(account_id, message_id)
    now = time.time()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            key,
            mapping=fields(
                {
                    "status": MessageStatus.FAILED.value,
                    "code": "internal_error",
                    "error": error,
                    "updated_at": now,
                    "dead_lettered_at": now,
                }
            ),
        )
        pipe.zadd(keys.dead_letters(account_id), {message_id: now})
        if campaign_id is not None:
            campaigns.count(pipe, account_id, campaign_id, {"failed": 1})
        await pipe.execute()


def add_dead_letter(pipe: Pipeline, message: Message, at: float) -> None:
    """List the message among the account's dead letters (part of the caller's MULTI)."""
    pipe.zadd(keys.dead_letters(message.account), {message.id: at})
    pipe.hset(keys.message(message.account, message.id), "dead_lettered_at", at)


def queue_outcome(pipe: Pipeline, message: Message, status: MessageStatus) -> None:
    """Wake the API request waiting on this message (part of the caller's MULTI)."""
    outcome = keys.message_outcome(message.account, message.id)
    pipe.rpush(outcome, status.value)
    pipe.expire(outcome, _OUTCOME_TTL_S)


async def wait_final(redis: Redis, account_id: str, message_id: str, timeout_s: float) -> bool:
    """Block until the worker signals a final state, or the timeout passes."""
    if timeout_s <= 0:
        return False
    popped = await redis.blpop([keys.message_outcome(account_id, message_id)], timeout=timeout_s)
    return popped is not None


async def apply_delivery_status(
    redis: Redis, account_id: str, message_id: str, status: str, at: float, error: str = ""
) -> bool:
    applied, *rest = await scripts.DELIVERY_STATUS.run(
        redis,
        # Counted on the day the report is recorded, whatever the provider's clock says.
        keys={
            "message": keys.message(account_id, message_id),
            "usage": usage.key(account_id, time.time()),
            "outbox": keys.webhook_events(),
        },
        args={
            "status": status,
            "at": repr(at),
            "error": error,
            "usage_ttl_s": usage.KEEP_S,
            "emit": "1" if await events.wanted(redis, account_id) else "0",
            "account": account_id,
            "message_id": message_id,
        },
    )
    if applied and rest[1] and status in ("delivered", "read") and int(rest[0]) < _DELIVERED:
        # The first report that the message reached the phone counts for its campaign.
        campaign = rest[1].decode() if isinstance(rest[1], bytes) else str(rest[1])
        await campaigns.count_now(redis, account_id, campaign, {"delivered": 1})
    return bool(applied)
