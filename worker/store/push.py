"""A push message's devices: one result per ``platform:token``, and the per-token counters.

What a provider answer changes (the device's result, its token's counters, a
pruned token, the message's totals) is written in one MULTI, right after each
slice of devices: a crash never leaves the counters disagreeing with the
message, and never loses more than the slice that was in flight.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import fields as fields_of
from typing import Any, Literal

from redis.asyncio import Redis

from worker.masking import mask_token
from worker.models import Attempt, MessageStatus
from worker.models.webhooks import EventType
from worker.store import campaigns, events, jobs, keys, scripts, throughput, usage
from worker.store.client import fields
from worker.store.jobs import add_job
from worker.store.messages import (
    Message,
    add,
    add_dead_letter,
    event_data,
    finished,
    mark_started,
)
from worker.store.tokens import split

DeviceStatus = Literal["pending", "sending", "delivered", "failed", "retrying"]
FINAL: set[str] = {"delivered", "failed"}


@dataclass
class Device:
    platform: str
    token: str
    # "sending": the device's slice was in flight (see keys.message_inflight) and no
    # result came back: its worker died mid-call. A job that finds it sends again, and
    # that is the only way a device gets it twice.
    status: DeviceStatus = "pending"
    error: str | None = None
    code: str | None = None
    provider_code: str | None = None
    provider_id: str | None = None
    attempts: int = 0
    at: float | None = None
    not_before: float | None = None  # a provider's Retry-After for this device
    pruned: bool = False
    exhausted: bool = False  # failed for lack of attempts or age: a dead letter
    # A campaign batch holds many contacts' devices: the owner (for pruning), and the
    # notification rendered for that contact when the content has placeholders.
    contact: str | None = None
    note: dict[str, Any] | None = None

    @property
    def member(self) -> str:
        return f"{self.platform}:{self.token}"


@dataclass
class DeviceOutcome:
    """What one attempt did to one device."""

    device: Device
    # The outcome says something about the token (not so when the account has no
    # credentials for its platform): it updates the token's counters and last error.
    token_fault: bool = True
    # The token is dead: remove it from the contact and record why.
    prune: bool = False


_RESULT = tuple(
    f.name for f in fields_of(Device) if f.name not in ("platform", "token", "contact", "note")
)


def result_of(device: Device) -> dict[str, Any]:
    """A device's result, without what never changes (its token, owner and note). Field
    by field: ``dataclasses.asdict`` (a deep copy) cost more than the JSON itself."""
    values = {name: getattr(device, name) for name in _RESULT}
    return {k: v for k, v in values.items() if v not in (None, False)}


def _device_events(message: Message, outcomes: list[DeviceOutcome]) -> list[events.Event]:
    """push.delivered / push.failed for each device that reached a final state (a device
    waiting for a retry makes none yet), token.pruned for each dead token; the token
    masked, as the API shows it."""
    batch: list[events.Event] = []
    for outcome in outcomes:
        device = outcome.device
        if device.status not in FINAL or device.code == "cancelled":
            continue
        data = event_data(
            message,
            platform=device.platform,
            token=mask_token(device.token),
            status=device.status,
            contact_id=device.contact,
            code=device.code,
            error=device.error,
            provider_code=device.provider_code,
        )
        kind = EventType.PUSH_DELIVERED if device.status == "delivered" else EventType.PUSH_FAILED
        batch.append((kind, data))
        if outcome.prune:
            pruned: dict[str, Any] = {
                k: data[k] for k in ("platform", "token", "provider_code") if k in data
            }
            if device.contact or message.contact_id:
                pruned["contact_id"] = device.contact or message.contact_id
            batch.append((EventType.TOKEN_PRUNED, pruned))
    return batch


def encode_roster(devices: list[Device]) -> str:
    return json.dumps([[d.member, d.contact, d.note] for d in devices])


async def create_push(
    redis: Redis, message: Message, members: list[str], ttl_s: int, *, publish: bool = False
) -> None:
    roster = encode_roster([Device(*split(m)) for m in members])
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.message_roster(message.account, message.id), roster, ex=ttl_s)
        add(pipe, message, ttl_s)
        if publish:
            add_job(pipe, jobs.PUSH_SEND, message.account, message.id)
        # Accepted, with the message that is: push_send.lua counts the API's the same way.
        usage.count(pipe, message.account, message.created_at, {usage.PUSH_SENT: 1})
        await pipe.execute()


async def load_devices(redis: Redis, account_id: str, message_id: str) -> list[Device]:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(keys.message_roster(account_id, message_id))
        pipe.lrange(keys.message_results(account_id, message_id), 0, -1)
        pipe.hvals(keys.message_inflight(account_id, message_id))
        roster, blocks, slices = await pipe.execute()
    results: dict[str, dict[str, Any]] = {}
    for block in blocks:
        results.update(json.loads(block))  # in order: a later answer replaces an earlier one
    in_flight = {m for joined in slices for m in str(joined).split("\n")}
    devices = []
    for member, contact, note in json.loads(roster) if roster else []:
        platform, token = split(member)
        device = Device(platform, token, contact=contact, note=note, **results.get(member, {}))
        if member in in_flight and device.status not in FINAL:
            device.status = "sending"
        devices.append(device)
    return sorted(devices, key=lambda d: (d.platform, d.token))


async def mark_sending(redis: Redis, message: Message, devices: list[Device], ttl_s: int) -> str:
    """Just before the provider call: these devices are in flight. Returns the slice's id,
    for ``record_devices`` to clear."""
    for device in devices:
        device.status = "sending"
    slice_id = secrets.token_hex(6)
    key = keys.message_inflight(message.account, message.id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(key, slice_id, "\n".join(d.member for d in devices))
        pipe.expire(key, ttl_s)
        await pipe.execute()
    return slice_id


# A device's status after an answer, as `dispatch status` counts sends.
_THROUGHPUT = {"delivered": "sent", "failed": "failed", "retrying": "retry"}


async def record_devices(
    redis: Redis,
    message: Message,
    outcomes: list[DeviceOutcome],
    at: float,
    ttl_s: int,
    slice_id: str | None = None,
) -> None:
    """Right after the provider answered: device results, token counters, pruned tokens,
    the message's totals, and the slice no longer in flight, in one MULTI."""
    if not outcomes and slice_id is None:
        return
    account = message.account
    delivered = sum(1 for o in outcomes if o.device.status == "delivered")
    failed = sum(1 for o in outcomes if o.device.status == "failed")
    hooked = bool(outcomes) and await events.wanted(redis, account)
    async with redis.pipeline(transaction=True) as pipe:
        if hooked:
            events.emit(pipe, account, _device_events(message, outcomes), at)
        if outcomes:
            results_key = keys.message_results(account, message.id)
            pipe.rpush(
                results_key, json.dumps({o.device.member: result_of(o.device) for o in outcomes})
            )
            pipe.expire(results_key, ttl_s)
        counters = _token_counters(message, outcomes, at)
        if counters:
            prefix, suffix = keys.contact_push_tokens_parts(account)
            delivered_at, delivered_members, *other_results = counters
            scripts.TOKEN_RESULTS.queue(
                pipe,
                args={
                    "token_prefix": keys.push_token(account, ""),
                    "contact_tokens_prefix": prefix,
                    "contact_tokens_suffix": suffix,
                    "delivered_at": delivered_at,
                    "delivered": delivered_members,
                    "other_results": other_results,
                },
            )
        if slice_id is not None:
            pipe.hdel(keys.message_inflight(account, message.id), slice_id)
        by_outcome: Counter[tuple[str, str]] = Counter(
            (o.device.platform, _THROUGHPUT[o.device.status])
            for o in outcomes
            if o.device.status in _THROUGHPUT and o.device.code != "cancelled"
        )
        for (platform, outcome), n in by_outcome.items():
            throughput.count(pipe, platform, outcome, n, at)
        # Usage, per platform, with the results it counts: a device is in a slice only
        # while not final (PushRun and cancel skip final ones), so it is counted once.
        # A handful of commands a slice, whatever its size.
        usage.count(
            pipe,
            account,
            at,
            {
                usage.push_field("delivered" if outcome == "sent" else "failed", platform): n
                for (platform, outcome), n in by_outcome.items()
                if outcome != "retry"
            },
        )
        message_key = keys.message(account, message.id)
        if delivered:
            pipe.hincrby(message_key, "delivered", delivered)
        if failed:
            pipe.hincrby(message_key, "failed", failed)
        if message.campaign:
            cancelled = sum(1 for o in outcomes if o.device.code == "cancelled")
            campaigns.count(
                pipe,
                account,
                message.campaign,
                {
                    "sent": delivered,
                    "delivered": delivered,
                    "failed": failed - cancelled,
                    "cancelled": cancelled,
                },
            )
        await pipe.execute()


def _token_counters(message: Message, outcomes: list[DeviceOutcome], at: float) -> list[str]:
    """``token_results``' arguments: the devices delivered at one time as one argument,
    every other answer about a token as five."""
    ok = [o.device for o in outcomes if o.device.status == "delivered"]
    ok_at = (ok[0].at or at) if ok else at
    joined = [d.member for d in ok if (d.at or at) == ok_at]
    rest: list[str] = []
    for o in outcomes:
        device = o.device
        when = device.at or at
        if device.status == "delivered":
            if when != ok_at:
                rest += [device.member, "d", repr(when), "", ""]
            continue
        owner = device.contact or message.contact_id or ""
        if o.prune:
            rest += [device.member, "p", repr(when), device.error or "", owner]
        elif o.token_fault:
            outcome = "f" if device.status == "failed" else "r"
            rest += [device.member, outcome, repr(when), device.error or "", owner]
    if not joined and not rest:
        return []
    return [repr(ok_at), "\n".join(joined), *rest]


async def finish_run(
    redis: Redis,
    message: Message,
    attempt: Attempt | None,
    status: MessageStatus,
    ttl_s: int,
    *,
    dead_letter: bool = False,
) -> None:
    """The state a job leaves the message in: its attempt, and the outcome once final."""
    account = message.account
    hooked = dead_letter and await events.wanted(redis, account)
    async with redis.pipeline(transaction=True) as pipe:
        mark_started(pipe, message)
        pipe.hset(
            keys.message(account, message.id),
            mapping=fields({"status": status.value, "updated_at": time.time()}),
        )
        if attempt is not None:
            pipe.hset(keys.message(account, message.id), "attempts", attempt.attempt)
            attempts_key = keys.message_attempts(account, message.id)
            pipe.rpush(attempts_key, attempt.model_dump_json(exclude_none=True))
            pipe.expire(attempts_key, ttl_s)
        if dead_letter:
            now = time.time()
            add_dead_letter(pipe, message, now)
            if hooked:
                data = event_data(
                    message,
                    status=status.value,
                    code=attempt.code if attempt else None,
                    error=attempt.error if attempt else None,
                )
                events.emit(pipe, account, [(EventType.MESSAGE_DEAD_LETTERED, data)], now)
        if status.is_final:
            finished(pipe, message, status, {})
        await pipe.execute()
