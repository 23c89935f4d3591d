"""Event webhook endpoints: what creating, changing and testing one checks and does."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from worker.codes import Code
from worker.config import Settings
from worker.delivery.webhooks import DeliveryAttempt, event_body, post_event
from worker.errors import Rejected
from worker.ids import new_id
from worker.models import ApiKeyRecord, Scope
from worker.models.webhooks import (
    ALL_EVENTS,
    EVENT_SCOPES,
    MAX_ENDPOINTS_PER_ACCOUNT,
    Endpoint,
    EventType,
    WebhookCreate,
    WebhookUpdate,
)
from worker.providers.outbound import OutboundClient, OutboundError, check_url, networks
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
