"""Event webhook endpoints: what creating, changing and testing one checks and does; and
finding and replaying an endpoint's deliveries (the CLI's, reusable by the API)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from worker.codes import Code
from worker.config import Settings
from worker.delivery.webhooks import DeliveryAttempt, event_body, post_event
from worker.errors import Rejected
from worker.ids import new_id
from worker.models import ApiKeyRecord, Scope, iso
from worker.models.webhooks import (
    ALL_EVENTS,
    EVENT_SCOPES,
    MAX_ENDPOINTS_PER_ACCOUNT,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EventType,
    WebhookCreate,
    WebhookUpdate,
)
from worker.providers.outbound import OutboundClient, OutboundError, check_url, networks
from worker.store import webhook_deliveries as deliveries
from worker.store import webhooks as store


def _check_url(settings: Settings, url: str) -> None:
    """What can be told of the URL before resolving it (a literal private address, a
    loopback name, credentials, another scheme); what it resolves to is checked at each
    delivery."""
    try:
        check_url(url, networks(settings.outbound_allow))
    except OutboundError as exc:
        raise Rejected(Code.URL_NOT_ALLOWED, f"url: {exc.reason}", "url") from None


def _check_events(scopes: list[Scope], events: list[str]) -> None:
    """An endpoint may name only the event types its creator's key could read."""
    for name in events:
        if name == ALL_EVENTS:
            continue
        needed = EVENT_SCOPES[EventType(name)]
        if needed not in scopes:
            raise Rejected(
                Code.INSUFFICIENT_SCOPE,
                f"events: '{name}' needs the '{needed.value}' scope, which this API key lacks",
                "events",
            )


def key_scopes(key: ApiKeyRecord) -> list[Scope]:
    """Every scope the key allows, ``admin`` expanded."""
    return [scope for scope in Scope if key.allows(scope)]


async def create(
    redis: Redis, settings: Settings, key: ApiKeyRecord, body: WebhookCreate
) -> tuple[Endpoint, str]:
    _check_url(settings, body.url)
    scopes = key_scopes(key)
    _check_events(scopes, body.events)
    now = time.time()
    endpoint = Endpoint(
        id=new_id("wh"),
        account=key.account,
        url=body.url,
        events=body.events,
        description=body.description,
        active=body.active,
        scopes=scopes,
        created_at=now,
        updated_at=now,
    )
    try:
        secret = await store.create(redis, endpoint)
    except store.TooManyEndpoints:
        raise Rejected(
            Code.WEBHOOK_LIMIT_REACHED,
            f"This account has {MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints, the most "
            "allowed: delete one first",
        ) from None
    return endpoint, secret


async def require(redis: Redis, account: str, endpoint_id: str) -> Endpoint:
    endpoint = await store.load(redis, account, endpoint_id)
    if endpoint is None:
        raise Rejected(Code.WEBHOOK_NOT_FOUND, f"Webhook endpoint '{endpoint_id}' not found")
    return endpoint


async def update(
    redis: Redis, settings: Settings, account: str, endpoint_id: str, body: WebhookUpdate
) -> tuple[Endpoint, str | None]:
    endpoint = await require(redis, account, endpoint_id)
    if body.url is not None:
        _check_url(settings, body.url)
        endpoint.url = body.url
    if body.events is not None:
        _check_events(endpoint.scopes, body.events)
        endpoint.events = body.events
    if body.description is not None:
        endpoint.description = body.description
    if body.active is not None:
        endpoint.active = body.active
        if body.active:
            # Activated again by its owner: deliveries resume, the reason is history.
            endpoint.disabled_reason = endpoint.disabled_at = None
    secret = await store.save(redis, endpoint, rotate_secret=body.rotate_secret)
    return endpoint, secret


async def send_test(
    redis: Redis, outbound: OutboundClient, endpoint: Endpoint
) -> tuple[str, DeliveryAttempt]:
    """A ``webhook.test`` event, signed and posted now (whether or not the endpoint is
    active: that is what a test is for); returns the event's id and what came of it."""
    secret = await store.load_secret(redis, endpoint.account, endpoint.id)
    if secret is None:  # deleted between the two reads
        raise Rejected(Code.WEBHOOK_NOT_FOUND, f"Webhook endpoint '{endpoint.id}' not found")
    event_id = new_id("evt")
    at = time.time()
    data: dict[str, Any] = {"endpoint_id": endpoint.id, "account": endpoint.account}
    body = event_body(event_id, EventType.WEBHOOK_TEST, at, data)
    return event_id, await post_event(outbound, endpoint.url, secret, event_id, at, body)


# --- finding and replaying deliveries -------------------------------------------------

# "30m", "2h", "1d", "1h30m": a whole number and its unit, repeated.
_DURATION = re.compile(r"(?:\d{1,9}[smhdw])+")
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}

# What a replay takes unless told otherwise: the deliveries that never arrived.
DEFAULT_REPLAY = frozenset({DeliveryStatus.FAILED, DeliveryStatus.DROPPED})
# Pending ones are still queued: they will be tried anyway, and replaying one would post
# it twice (from the queue and from the retries).
REPLAYABLE = frozenset(DeliveryStatus) - {DeliveryStatus.PENDING}
# Deliveries read from the endpoint's index at a time while looking for matches.
_SCAN = 500


def parse_since(value: str, now: float) -> float:
    """The time ``value`` names, as a timestamp: a duration back from ``now`` ("30m",
    "2h", "1d", "1h30m"; units s, m, h, d, w) or an ISO 8601 time (UTC unless it gives
    its offset). Refused: anything else, and a time after ``now``."""
    text = value.strip().lower().replace(" ", "")
    if _DURATION.fullmatch(text):
        seconds = sum(int(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text))
        return now - seconds
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Rejected(
            Code.INVALID_REQUEST,
            f"'{value}' is neither a duration (30m, 2h, 1d) nor an ISO 8601 time "
            "(2025-06-01T08:00:00Z)",
            "since",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    at = moment.timestamp()
    if at > now:
        raise Rejected(
            Code.INVALID_REQUEST,
            f"'{value}' is in the future (now is {iso(now)})",
            "since",
        )
    return at


def replay_statuses(names: str | None, *, include_delivered: bool) -> frozenset[DeliveryStatus]:
    """Which deliveries a replay takes: ``names`` (comma-separated statuses), else failed
    and dropped ones, or every replayable status with ``include_delivered``. A delivered
    one is taken only with ``include_delivered`` (its receiver has it already); a pending
    one never (it is still queued)."""
    if names is None:
        return REPLAYABLE if include_delivered else DEFAULT_REPLAY
    chosen: set[DeliveryStatus] = set()
    for name in (n.strip() for n in names.split(",")):
        try:
            status = DeliveryStatus(name)
        except ValueError:
            raise Rejected(
                Code.INVALID_REQUEST,
                f"unknown status '{name}'; one of: {', '.join(sorted(REPLAYABLE))}",
                "status",
            ) from None
        if status is DeliveryStatus.PENDING:
            raise Rejected(
                Code.INVALID_REQUEST,
                "pending deliveries are still queued and will be tried anyway: they are "
                "not replayed",
                "status",
            )
        if status is DeliveryStatus.DELIVERED and not include_delivered:
            raise Rejected(
                Code.INVALID_REQUEST,
                "delivered ones reached the endpoint already: replaying them must be asked "
                "for explicitly",
                "status",
            )
        chosen.add(status)
    return frozenset(chosen)


async def find_deliveries(
    redis: Redis,
    account: str,
    endpoint_id: str,
    *,
    since: float = 0.0,
    statuses: frozenset[DeliveryStatus] | None = None,
    limit: int | None = None,
) -> tuple[list[Delivery], int]:
    """The endpoint's deliveries created at ``since`` or later, newest first, those in
    ``statuses`` only (all if None), at most ``limit`` (all if None); and how many were
    created since then, whatever their status. Reads the recent deliveries the endpoint
    keeps (the last 10,000, records kept 8 days)."""
    found: list[Delivery] = []
    seen: set[str] = set()
    start, total = 0, 0
    while limit is None or len(found) < limit:
        items, total = await deliveries.page(redis, account, endpoint_id, start, _SCAN, since)
        for delivery in items:
            # Newer deliveries arriving during the scan shift it: one may be read twice.
            if delivery.id in seen or (statuses is not None and delivery.status not in statuses):
                continue
            seen.add(delivery.id)
            found.append(delivery)
        start += _SCAN
        if start >= total:
            break
    return (found if limit is None else found[:limit]), total


async def replay(
    redis: Redis,
    account: str,
    endpoint_id: str,
    chosen: list[Delivery],
    statuses: frozenset[DeliveryStatus],
    now: float,
    on_each: Callable[[Delivery | None], None] | None = None,
) -> int:
    """Make each of ``chosen`` due again now with a fresh budget of attempts; a delivery
    whose status left ``statuses`` since it was chosen (a retry delivered it meanwhile) or
    whose record expired is skipped. ``on_each`` is called after each (with None for a
    skipped one). Returns how many were replayed."""
    done = 0
    for start in range(0, len(chosen), _SCAN):
        ids = [d.id for d in chosen[start : start + _SCAN]]
        current = {d.id: d for d in await deliveries.load_many(redis, account, ids)}
        for delivery_id in ids:
            delivery = current.get(delivery_id)
            if delivery is None or delivery.status not in statuses:
                if on_each is not None:
                    on_each(None)
                continue
            await deliveries.retry_now(redis, account, endpoint_id, delivery, now)
            done += 1
            if on_each is not None:
                on_each(delivery)
    return done
