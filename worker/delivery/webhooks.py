"""One event to one endpoint: its body, its Standard Webhooks signature, the POST.

The body is ``{"id", "type", "timestamp", "data"}``; the headers are Standard Webhooks'
(``webhook-id`` = the event id, so a receiver can drop a repeat; ``webhook-timestamp`` in
Unix seconds; ``webhook-signature`` = ``v1,`` + base64 HMAC-SHA256 of
``id.timestamp.body`` under the endpoint's secret), signed by the ``standardwebhooks``
library a receiver verifies with. The POST goes through the guarded outbound client: no
private address, no redirect, one deadline, a bounded read of the answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from standardwebhooks.webhooks import Webhook

from worker.delivery.context import DeliveryContext, Outcome
from worker.models import MessageStatus, iso
from worker.models.webhooks import Delivery, DeliveryStatus, Endpoint, EventType
from worker.observe import metrics
from worker.providers.outbound import OutboundClient, OutboundError
from worker.store import keys, locks, streams, throughput, webhooks
from worker.store import webhook_deliveries as deliveries

log = logging.getLogger(__name__)

USER_AGENT = "multichannel-dispatch-webhooks/1"


def event_body(event_id: str, event_type: str, at: float, data: dict[str, Any]) -> bytes:
    return _event_body(event_id, event_type, _stamp(at), data).encode()


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _event_body(event_id: str, event_type: str, stamp: str, data: dict[str, Any]) -> str:
    return json.dumps(
        {"id": event_id, "type": event_type, "timestamp": stamp, "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def signed_headers(secret: str, event_id: str, at: float, body: bytes) -> dict[str, str]:
    sent_at = datetime.fromtimestamp(int(at), UTC)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at)),
        "webhook-signature": Webhook(secret).sign(event_id, sent_at, body.decode()),
    }


@dataclass(frozen=True)
class DeliveryAttempt:
    """What one POST came to: ``delivered`` on any 2xx answer."""

    delivered: bool
    status: int | None
    latency_ms: float
    error: str | None
    # A refusal the next attempt cannot change (the URL is not allowed any more).
    permanent: bool = False


async def post_event(
    outbound: OutboundClient, url: str, secret: str, event_id: str, at: float, body: bytes
) -> DeliveryAttempt:
    """POST one signed event; ``at`` is the signature's time (the attempt's, not the
    event's: a receiver refuses a timestamp more than five minutes off its clock)."""
    try:
        reply = await outbound.post(url, body, signed_headers(secret, event_id, at, body))
    except OutboundError as exc:
        return DeliveryAttempt(False, None, 0.0, exc.reason, permanent=not exc.retryable)
    ok = 200 <= reply.status < 300
    error = None if ok else f"the endpoint answered {reply.status}"
    return DeliveryAttempt(ok, reply.status, round(reply.elapsed_ms, 1), error)


# --- the outbox to each endpoint's queue (the fan-out job) ----------------------------------

_CONSUMER = "fanout"
# The longest one fan-out job runs before giving its place (the beat publishes the next),
# how often it looks at the outbox again when it found nothing, and after how long a quiet
# it ends.
_FANOUT_BUDGET_S = 10.0
_FANOUT_POLL_S = 0.2
_FANOUT_QUIET_S = 1.0


def event_id_for(entry_id: str, index: int) -> str:
    """An event's id, the same for every endpoint and every time it is read again: from
    its outbox entry's id and its place in it (``1700000000000-0``, 2 →
    ``evt_1700000000000_0_2``)."""
    return f"evt_{entry_id.replace('-', '_')}_{index}"


async def dispatch_outbox(redis: Redis, backlog_max: int, count: int = 500) -> int:
    """Move events from the outbox to the queue of every endpoint that wants them: first
    what an earlier beat read and did not finish (it died), then new events. Each entry's
    deliveries and its acknowledgement are one transaction: none is lost or made twice.
    Returns how many events were moved."""
    moved = 0
    endpoints: dict[str, list[Endpoint]] = {}
    async for entry_id, values in streams.entries(
        redis, keys.webhook_events(), keys.WEBHOOK_EVENTS_GROUP, _CONSUMER, count
    ):
        await _fan_out(redis, entry_id, values, endpoints, backlog_max)
        moved += 1
    return moved


def _read_entry(entry_id: str, values: dict[str, str]) -> tuple[str, float, list[Any]]:
    try:
        batch = json.loads(values["e"])
        if not isinstance(batch, list):
            raise ValueError("not a list")
        return values.get("a", ""), float(values["at"]), batch
    except (KeyError, ValueError):
        log.error("webhook outbox entry %s unreadable; dropped", entry_id)
        return "", 0.0, []


async def fan_out(ctx: DeliveryContext, _account: str, _job_id: str) -> Outcome:
    """The ``webhook.fanout`` job: the outbox's events to the endpoints' queues, for as long
    as events keep coming (up to a second's quiet) or until its time is spent. A job costs
    milliseconds of CPU whatever it finds, so one follows a stream of events rather than one
    per beat. One job reads at a time (a lease): a second one ends at once, and the beat
    publishes another within a second while the outbox has entries."""
    redis = ctx.redis
    ttl_s = ctx.settings.lease_ttl_s
    token = await locks.acquire(redis, keys.webhook_fanout_lock(), ttl_s)
    if token is None:
        return Outcome(MessageStatus.SENT)
    async with locks.kept(redis, keys.webhook_fanout_lock(), token, ttl_s):
        started, quiet_since = time.monotonic(), time.monotonic()
        while time.monotonic() - started < _FANOUT_BUDGET_S:
            if await _outbox_may_wait(ctx):
                await asyncio.sleep(_FANOUT_POLL_S)
                quiet_since = time.monotonic()
            elif await dispatch_outbox(redis, ctx.settings.webhook_backlog_max):
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= _FANOUT_QUIET_S:
                break
            else:
                await asyncio.sleep(_FANOUT_POLL_S)
    return Outcome(MessageStatus.SENT)


async def _outbox_may_wait(ctx: DeliveryContext) -> bool:
    """While the service sends fast (a campaign), events wait in the outbox (one compact
    entry for a slice's events: less memory than as deliveries) as long as it has room: fewer
    entries than ``webhook_backlog_max`` / 200 (a push slice's entry holds up to 200
    events). Past that the fan-out goes on at full speed: events are never dropped, nor
    Valkey's memory filled, to keep a campaign's rate."""
    if ctx.settings.webhook_busy_cpu_share >= 1 or not await _send_rate.busy_now(ctx):
        return False
    room = max(1, ctx.settings.webhook_backlog_max // _EVENTS_PER_ENTRY)
    return int(await ctx.redis.xlen(keys.webhook_events())) < room


_EVENTS_PER_ENTRY = 200


def _subscribed(active: list[Endpoint], event_type: str, entry_id: str) -> list[Endpoint]:
    """The endpoints that want events of this type (none for a type this version does not
    know: logged)."""
    try:
        kind = EventType(event_type)
    except ValueError:
        log.error("webhook outbox entry %s: unknown event %r; skipped", entry_id, event_type)
        return []
    return [e for e in active if e.wants(kind)]


async def _fan_out(
    redis: Redis,
    entry_id: str,
    values: dict[str, str],
    cache: dict[str, list[Endpoint]],
    backlog_max: int,
) -> None:
    account, at, batch = _read_entry(entry_id, values)
    if account and account not in cache:
        cache[account] = await webhooks.list_all(redis, account)
    active = [e for e in cache.get(account, []) if e.active]
    made: dict[str, list[deliveries.NewDelivery]] = {e.id: [] for e in active}
    counted: Counter[str] = Counter()
    targets_of: dict[str, list[Endpoint]] = {}
    stamp, id_prefix = _stamp(at), event_id_for(entry_id, 0)[:-1]
    for index, (event_type, data) in enumerate(batch):
        targets = targets_of.get(event_type)
        if targets is None:
            targets = targets_of[event_type] = _subscribed(active, event_type, entry_id)
        if not targets:
            continue
        event_id = f"{id_prefix}{index}"
        body = _event_body(event_id, event_type, stamp, data)
        for endpoint in targets:
            made[endpoint.id].append(
                deliveries.NewDelivery(
                    f"{endpoint.id}.{entry_id}.{index}", event_id, event_type, body
                )
            )
        counted[event_type] += 1
    filled = [(endpoint_id, new) for endpoint_id, new in made.items() if new]
    async with redis.pipeline(transaction=True) as pipe:
        for endpoint_id, new in filled:
            deliveries.enqueue(pipe, account, endpoint_id, new, at, backlog_max)
        streams.done(pipe, keys.webhook_events(), keys.WEBHOOK_EVENTS_GROUP, entry_id)
        replies = await pipe.execute()
    for type_name, n in counted.items():
        metrics.WEBHOOK_EVENTS.labels(type_name).inc(n)
    dropped = sum(int(r) for r in replies[: len(filled)])
    if dropped:
        metrics.WEBHOOK_DROPPED.inc(dropped)
        log.warning("webhooks of %s: %d delivery(ies) dropped, backlog full", account, dropped)


# --- an endpoint's sender (the webhooks worker) ------------------------------------------------

# Deliveries taken per round, and the longest a sender job runs before giving its place.
_ROUND = 100
_JOB_BUDGET_S = 20.0


async def drain(ctx: DeliveryContext, account: str, endpoint_id: str) -> Outcome:
    """Make the endpoint's due deliveries, a round at a time (up to ``webhook_concurrency``
    requests at once), until none is due or the job's time is spent; then say when the
    endpoint is next due. One sender per endpoint (a lease): a second job does nothing."""
    redis = ctx.redis
    lock_key = keys.webhook_lock(account, endpoint_id)
    ttl_s = ctx.settings.lease_ttl_s
    # Not waiting for the holder, live or dead: the beat publishes a sender again for an
    # endpoint whose work is due, and a dead holder's lease runs out within its ttl.
    token = await locks.acquire(redis, lock_key, ttl_s)
    if token is None:
        return Outcome(MessageStatus.SENT)  # another job sends for it now
    async with locks.kept(redis, lock_key, token, ttl_s):
        await _drain_held(ctx, account, endpoint_id)
    return Outcome(MessageStatus.SENT)


async def _drain_held(ctx: DeliveryContext, account: str, endpoint_id: str) -> None:
    redis = ctx.redis
    endpoint = await webhooks.load(redis, account, endpoint_id)
    secret = await webhooks.load_secret(redis, account, endpoint_id)
    if endpoint is None or secret is None or not endpoint.active:
        # Deleted or switched off: its deliveries wait (or expire); no work scheduled.
        await deliveries.set_work(redis, account, endpoint_id, None)
        return
    started = time.monotonic()
    while time.monotonic() - started < _JOB_BUDGET_S:
        taken = await deliveries.due(redis, account, endpoint_id, time.time(), _ROUND)
        if not taken.ids:
            break
        round_started, cpu_started = time.monotonic(), time.process_time()
        await _round(ctx, endpoint, secret, taken)
        if await _disable_if_failing_too_long(ctx, endpoint):
            return
        await _yield_to_sends(ctx, endpoint, time.monotonic() - round_started, cpu_started)
    await deliveries.settle(redis, account, endpoint_id, time.time())


async def _yield_to_sends(
    ctx: DeliveryContext, endpoint: Endpoint, round_s: float, cpu_started: float
) -> None:
    """While the service is sending fast (a campaign), pause after a round so that this
    process's CPU stays within ``webhook_busy_cpu_share`` of one CPU: the events wait (and
    catch up later) rather than slow the sends. Never at the cost of an event: once the
    endpoint's backlog is half full, the sender goes at full speed (a campaign larger than
    the backlog then runs slower, as if this pause did not exist).

    Idle priority alone does not do it: the events' work in Valkey and at the receiver runs
    at the sends' priority, and a sender that runs whenever the campaign leaves a core for
    a moment still slows it by a quarter on two cores (docs/performance.md)."""
    share = ctx.settings.webhook_busy_cpu_share
    if share >= 1:
        return
    cpu_s = time.process_time() - cpu_started
    pause_s = min(cpu_s / share - round_s, _MAX_PAUSE_S)
    if pause_s <= 0 or not await _send_rate.busy_now(ctx):
        return
    queued, retrying = await deliveries.backlog(ctx.redis, endpoint.account, endpoint.id)
    if queued + retrying < ctx.settings.webhook_backlog_max // 2:
        await asyncio.sleep(pause_s)


# The longest pause after one round (a round is ~100 deliveries, ~30 ms of CPU).
_MAX_PAUSE_S = 2.0


class _SendRate:
    """The service's recent send rate, read at most once a second by this process."""

    def __init__(self) -> None:
        self.busy = False
        self.read_at = float("-inf")

    async def busy_now(self, ctx: DeliveryContext) -> bool:
        now = time.monotonic()
        if now - self.read_at >= 1.0:
            rate = await throughput.recent(ctx.redis)
            self.busy = rate > ctx.settings.webhook_busy_sends_per_s
            self.read_at = now
        return self.busy


_send_rate = _SendRate()


async def _round(
    ctx: DeliveryContext, endpoint: Endpoint, secret: str, taken: deliveries.Due
) -> None:
    by_id = {d.id: d for d in await deliveries.load_many(ctx.redis, endpoint.account, taken.ids)}
    gate = asyncio.Semaphore(ctx.settings.webhook_concurrency)
    waits = ctx.settings.webhook_retry_waits_s

    async def attempt(delivery: Delivery) -> deliveries.Result:
        async with gate:
            at = time.time()
            result = await post_event(
                ctx.outbound, endpoint.url, secret, delivery.event_id, at, delivery.body.encode()
            )
        return _judge(delivery, result, at, waits)

    present = [by_id[i] for i in taken.ids if i in by_id]  # an expired record is skipped
    results = await asyncio.gather(*(attempt(d) for d in present))
    await deliveries.record(ctx.redis, endpoint.account, endpoint.id, taken, list(results))
    for result in results:
        metrics.WEBHOOK_DELIVERIES.labels(result.delivery.type, result.status.value).inc()


def _judge(
    delivery: Delivery, attempt: DeliveryAttempt, at: float, waits: tuple[float, ...]
) -> deliveries.Result:
    """What an attempt leaves the delivery as: delivered, waiting for the next attempt, or
    failed once every wait of the schedule is spent (or the URL may not be called)."""
    if attempt.delivered:
        return deliveries.Result(delivery, DeliveryStatus.DELIVERED, at, attempt.status, None)
    number = delivery.attempts + 1
    if attempt.permanent or number > len(waits):
        return deliveries.Result(delivery, DeliveryStatus.FAILED, at, attempt.status, attempt.error)
    return deliveries.Result(
        delivery, DeliveryStatus.RETRYING, at, attempt.status, attempt.error, at + waits[number - 1]
    )


async def _disable_if_failing_too_long(ctx: DeliveryContext, endpoint: Endpoint) -> bool:
    stats = await deliveries.stats(ctx.redis, endpoint.account, endpoint.id)
    since = float(stats.get("failing_since") or 0)
    if not since or time.time() - since < ctx.settings.webhook_disable_after_s:
        return False
    reason = (
        f"every delivery failed since {iso(since)} "
        f"(last: {stats.get('last_error') or 'unknown'}); activate it again to resume"
    )
    endpoint.active = False
    endpoint.disabled_reason, endpoint.disabled_at = reason, time.time()
    await webhooks.save(ctx.redis, endpoint)
    await deliveries.set_work(ctx.redis, endpoint.account, endpoint.id, None)
    log.warning("webhook endpoint %s of %s disabled: %s", endpoint.id, endpoint.account, reason)
    return True
