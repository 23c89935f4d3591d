"""Webhook deliveries: each event for each endpoint, its attempts, and the endpoints with
work due.

An endpoint's deliveries wait in a list (not tried yet, oldest first) or in a sorted set
(between attempts, by when the next is due); one hash per delivery holds the event's body
and what came of it, and a sorted set of recent deliveries serves inspection and replay.
``webhook_work`` holds "account endpoint" by when the endpoint next has something due: the
beat publishes a sender job for each one due and pushes its time forward while it runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from worker.models.webhooks import Delivery, DeliveryStatus
from worker.store import keys, scripts
from worker.store.client import fields

# Recent deliveries kept for GET .../deliveries and replay, per endpoint.
INDEX_MAX = 10_000
# A delivery's record outlives its last possible attempt (about 28 hours) by days.
DELIVERY_TTL_S = 8 * 86_400
DROPPED_REASON = "the endpoint's backlog was full"


def work_member(account: str, endpoint_id: str) -> str:
    return f"{account} {endpoint_id}"


def parse_work_member(member: str) -> tuple[str, str] | None:
    account, _, endpoint_id = member.partition(" ")
    return (account, endpoint_id) if account and endpoint_id else None


@dataclass(frozen=True)
class NewDelivery:
    """An event for an endpoint, as the fan-out makes it (the rest of its record is the
    endpoint's and the outbox entry's)."""

    id: str
    event_id: str
    type: str
    body: str


def enqueue(
    pipe: Pipeline,
    account: str,
    endpoint_id: str,
    made: list[NewDelivery],
    created_at: float,
    backlog_max: int,
) -> None:
    """Add the call that stores ``made`` at the end of the endpoint's queue (inside the
    caller's MULTI, with the outbox entry they come from): one script call for an entry's
    deliveries, not one per delivery (Valkey's CPU per event 44 → 9 µs). Past
    ``backlog_max`` deliveries waiting, the oldest are dropped, marked ``dropped`` and
    counted; the call's reply is how many."""
    flat: list[str] = []
    for d in made:
        flat += (d.id, d.event_id, d.type, d.body)
    scripts.WEBHOOK_ENQUEUE.queue(
        pipe,
        keys={
            "queue": keys.webhook_queue(account, endpoint_id),
            "retry": keys.webhook_retry(account, endpoint_id),
            "index": keys.webhook_deliveries(account, endpoint_id),
            "stats": keys.webhook_stats(account, endpoint_id),
            "work": keys.webhook_work(),
        },
        args={
            "endpoint_id": endpoint_id,
            "created_at": repr(created_at),
            "status": DeliveryStatus.PENDING.value,
            "ttl_s": DELIVERY_TTL_S,
            "backlog_max": backlog_max,
            "index_max": INDEX_MAX,
            "work_member": work_member(account, endpoint_id),
            "delivery_key_template": keys.webhook_delivery(account, "%s"),
            "dropped_reason": DROPPED_REASON,
            "deliveries": flat,
        },
    )


@dataclass(frozen=True)
class Due:
    """What the sender takes next: deliveries due for a retry, then the queue's head."""

    retries: list[str]
    fresh: list[str]

    @property
    def ids(self) -> list[str]:
        return [*self.retries, *self.fresh]


async def due(redis: Redis, account: str, endpoint_id: str, now: float, limit: int) -> Due:
    retries = [
        _text(i)
        for i in await redis.zrangebyscore(
            keys.webhook_retry(account, endpoint_id), "-inf", now, start=0, num=limit
        )
    ]
    room = limit - len(retries)
    fresh = (
        [
            _text(i)
            for i in await redis.lrange(keys.webhook_queue(account, endpoint_id), 0, room - 1)
        ]
        if room > 0
        else []
    )
    return Due(retries, fresh)


async def load_many(redis: Redis, account: str, ids: Iterable[str]) -> list[Delivery]:
    ids = list(ids)
    async with redis.pipeline(transaction=False) as pipe:
        for delivery_id in ids:
            pipe.hgetall(keys.webhook_delivery(account, delivery_id))
        raws = await pipe.execute()
    return [
        Delivery.model_validate({_text(k): _text(v) for k, v in raw.items()}) for raw in raws if raw
    ]


async def load(redis: Redis, account: str, delivery_id: str) -> Delivery | None:
    found = await load_many(redis, account, [delivery_id])
    return found[0] if found else None


@dataclass(frozen=True)
class Result:
    """What one attempt came to, and what it leaves the delivery as."""

    delivery: Delivery
    status: DeliveryStatus
    at: float
    http_status: int | None
    error: str | None
    next_attempt_at: float | None = None


async def record(
    redis: Redis, account: str, endpoint_id: str, taken: Due, results: list[Result]
) -> None:
    """Record a round of attempts in one transaction: each delivery's state, the ones taken
    from the queue removed from it (this sender holds the endpoint's lease), the
    retries rescheduled or done, the endpoint's counters and failing streak."""
    stats = keys.webhook_stats(account, endpoint_id)
    retry = keys.webhook_retry(account, endpoint_id)
    delivered = sum(r.status is DeliveryStatus.DELIVERED for r in results)
    failed = sum(r.status is DeliveryStatus.FAILED for r in results)
    async with redis.pipeline(transaction=True) as pipe:
        # The ones taken, by id (each near the head: LREM finds it at once), not the first
        # n: an operator's retry may have taken one out of the queue meanwhile.
        queue = keys.webhook_queue(account, endpoint_id)
        for delivery_id in taken.fresh:
            pipe.lrem(queue, 1, delivery_id)
        for result in results:
            values: dict[str, str | float | int] = {
                "status": result.status.value,
                "attempts": result.delivery.attempts + 1,
                "last_attempt_at": result.at,
                "last_status": "" if result.http_status is None else result.http_status,
                "last_error": result.error or "",
                "next_attempt_at": result.next_attempt_at or "",
            }
            if result.status is DeliveryStatus.DELIVERED:
                values["delivered_at"] = result.at
            pipe.hset(keys.webhook_delivery(account, result.delivery.id), mapping=fields(values))
            if result.next_attempt_at is not None:
                pipe.zadd(retry, {result.delivery.id: result.next_attempt_at})
            else:
                pipe.zrem(retry, result.delivery.id)
        if delivered:
            pipe.hincrby(stats, "delivered", delivered)
            # Any answer in 2xx ends a failing streak.
            pipe.hdel(stats, "failing_since")
        if failed:
            pipe.hincrby(stats, "failed", failed)
        if len(results) > delivered:
            first_failure = min(r.at for r in results if r.status is not DeliveryStatus.DELIVERED)
            if not delivered:
                pipe.hsetnx(stats, "failing_since", first_failure)
            pipe.hset(stats, "last_error", next(r.error or "" for r in results if r.error))
        await pipe.execute()


async def settle(redis: Redis, account: str, endpoint_id: str, now: float) -> bool:
    """The sender is done for now: the endpoint is due again now if its queue holds a
    delivery, at its soonest retry if one waits, else it leaves the work set (atomically,
    against a delivery queued meanwhile). True if work remains."""
    remains = await scripts.WEBHOOK_SETTLE.run(
        redis,
        keys={
            "queue": keys.webhook_queue(account, endpoint_id),
            "retry": keys.webhook_retry(account, endpoint_id),
            "work": keys.webhook_work(),
        },
        args={"work_member": work_member(account, endpoint_id), "now": repr(now)},
    )
    return bool(remains)


async def set_work(redis: Redis, account: str, endpoint_id: str, at: float | None) -> None:
    member = work_member(account, endpoint_id)
    if at is None:
        await redis.zrem(keys.webhook_work(), member)
    else:
        await redis.zadd(keys.webhook_work(), {member: at})


async def claim_due(redis: Redis, now: float, limit: int, hold_s: float) -> list[str]:
    """The endpoints with work due by ``now``, their time pushed ``hold_s`` ahead so that
    the next beat round does not publish their sender again while it runs (the sender
    sets the real next time when it ends; if it dies, the endpoint is due again after
    ``hold_s``)."""
    members = [
        _text(m)
        for m in await redis.zrangebyscore(keys.webhook_work(), "-inf", now, start=0, num=limit)
    ]
    if members:
        await redis.zadd(keys.webhook_work(), dict.fromkeys(members, now + hold_s), xx=True)
    return members


async def stats(redis: Redis, account: str, endpoint_id: str) -> dict[str, str]:
    raw = await redis.hgetall(keys.webhook_stats(account, endpoint_id))
    return {_text(k): _text(v) for k, v in raw.items()}


async def backlog(redis: Redis, account: str, endpoint_id: str) -> tuple[int, int]:
    """Deliveries queued, and waiting for a retry."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.llen(keys.webhook_queue(account, endpoint_id))
        pipe.zcard(keys.webhook_retry(account, endpoint_id))
        queued, retrying = await pipe.execute()
    return int(queued), int(retrying)


async def page(
    redis: Redis, account: str, endpoint_id: str, start: int, limit: int, since: float = 0.0
) -> tuple[list[Delivery], int]:
    """Recent deliveries, newest first, created at ``since`` or later; and how many."""
    index = keys.webhook_deliveries(account, endpoint_id)
    ids = [
        _text(i) for i in await redis.zrevrangebyscore(index, "+inf", since, start=start, num=limit)
    ]
    total = await redis.zcount(index, since, "+inf")
    return await load_many(redis, account, ids), int(total)


async def retry_now(
    redis: Redis, account: str, endpoint_id: str, delivery: Delivery, now: float
) -> None:
    """Try the delivery again at once, with a fresh budget of attempts (an operator's
    replay): it joins the retries, due now, and the endpoint has work. A delivery still
    queued leaves the queue, or the sender would take it from both and post it twice."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lrem(keys.webhook_queue(account, endpoint_id), 0, delivery.id)
        pipe.hset(
            keys.webhook_delivery(account, delivery.id),
            mapping=fields(
                {"status": DeliveryStatus.RETRYING.value, "attempts": 0, "next_attempt_at": now}
            ),
        )
        pipe.expire(keys.webhook_delivery(account, delivery.id), DELIVERY_TTL_S)
        pipe.zadd(keys.webhook_retry(account, endpoint_id), {delivery.id: now})
        pipe.zadd(keys.webhook_work(), {work_member(account, endpoint_id): now}, lt=True)
        await pipe.execute()


def forget_endpoint(pipe: Pipeline, account: str, endpoint_id: str) -> None:
    """Add the deletion of everything an endpoint's deliveries keep (its records expire)."""
    pipe.delete(
        keys.webhook_queue(account, endpoint_id),
        keys.webhook_retry(account, endpoint_id),
        keys.webhook_deliveries(account, endpoint_id),
        keys.webhook_stats(account, endpoint_id),
    )
    pipe.zrem(keys.webhook_work(), work_member(account, endpoint_id))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
