"""Event webhook endpoints (scope ``webhooks``, or ``admin``): where the account's events
are posted, signed. The paths the platform's SDK calls (``webhooks.list/create/get/
update/delete/test``). The checks live in ``worker.services.webhooks``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from worker.api.deps import RedisDep, SettingsDep, require
from worker.codes import Code
from worker.errors import Rejected
from worker.models import ApiKeyRecord, Scope, iso
from worker.models.webhooks import Delivery, Endpoint, WebhookCreate, WebhookUpdate
from worker.providers.outbound import OutboundClient
from worker.services import webhooks as ops
from worker.store import webhook_deliveries as deliveries
from worker.store import webhooks

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
WebhooksKey = Annotated[ApiKeyRecord, Depends(require(Scope.WEBHOOKS))]
EndpointIdPath = Annotated[str, Path(pattern=r"^wh_[a-z0-9]{1,64}$")]


def view(endpoint: Endpoint, secret: str | None = None) -> dict[str, Any]:
    """An endpoint as the API shows it; its secret only when just made (creation, a
    rotation): it is never shown again."""
    shown: dict[str, Any] = {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events,
        "description": endpoint.description,
        "active": endpoint.active,
        "disabled_reason": endpoint.disabled_reason,
        "disabled_at": iso(endpoint.disabled_at),
        "created_at": iso(endpoint.created_at),
        "updated_at": iso(endpoint.updated_at),
    }
    if secret is not None:
        shown["secret"] = secret
    return shown


@router.get("")
async def list_webhooks(key: WebhooksKey, redis: RedisDep) -> dict[str, Any]:
    """Oldest first (an account has at most 20)."""
    endpoints = await webhooks.list_all(redis, key.account)
    return {"success": True, "webhooks": [view(e) for e in endpoints], "total": len(endpoints)}


@router.post("")
async def create_webhook(
    body: WebhookCreate, key: WebhooksKey, redis: RedisDep, settings: SettingsDep
) -> JSONResponse:
    endpoint, secret = await ops.create(redis, settings, key, body)
    return JSONResponse({"success": True, "webhook": view(endpoint, secret)}, 201)


@router.get("/{endpoint_id}")
async def get_webhook(
    endpoint_id: EndpointIdPath, key: WebhooksKey, redis: RedisDep
) -> dict[str, Any]:
    return {"success": True, "webhook": view(await ops.require(redis, key.account, endpoint_id))}


@router.patch("/{endpoint_id}")
# PUT too: clients that send a whole object to update get the same partial update.
@router.put("/{endpoint_id}")
async def update_webhook(
    endpoint_id: EndpointIdPath,
    body: WebhookUpdate,
    key: WebhooksKey,
    redis: RedisDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    endpoint, secret = await ops.update(redis, settings, key.account, endpoint_id, body)
    return {"success": True, "webhook": view(endpoint, secret)}


@router.delete("/{endpoint_id}")
async def delete_webhook(
    endpoint_id: EndpointIdPath, key: WebhooksKey, redis: RedisDep
) -> dict[str, Any]:
    await ops.require(redis, key.account, endpoint_id)
    await webhooks.delete(redis, key.account, endpoint_id)
    return {"success": True, "id": endpoint_id, "deleted": True}


@router.post("/{endpoint_id}/test")
async def test_webhook(
    endpoint_id: EndpointIdPath, key: WebhooksKey, redis: RedisDep, request: Request
) -> dict[str, Any]:
    """Post a ``webhook.test`` event now and say what the endpoint answered."""
    endpoint = await ops.require(redis, key.account, endpoint_id)
    outbound: OutboundClient = request.app.state.outbound
    event_id, attempt = await ops.send_test(redis, outbound, endpoint)
    return {
        "success": True,
        "event_id": event_id,
        "delivered": attempt.delivered,
        "status": attempt.status,
        "latency_ms": attempt.latency_ms,
        "error": attempt.error,
    }


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "type": delivery.type,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": iso(delivery.created_at),
        "last_attempt_at": iso(delivery.last_attempt_at),
        "next_attempt_at": iso(delivery.next_attempt_at),
        "delivered_at": iso(delivery.delivered_at),
    }


@router.get("/{endpoint_id}/deliveries")
async def list_deliveries(
    endpoint_id: EndpointIdPath,
    key: WebhooksKey,
    redis: RedisDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The endpoint's recent deliveries (the last 10,000), newest first, with its counters
    and backlog."""
    await ops.require(redis, key.account, endpoint_id)
    items, total = await deliveries.page(redis, key.account, endpoint_id, (page - 1) * limit, limit)
    queued, retrying = await deliveries.backlog(redis, key.account, endpoint_id)
    stats = await deliveries.stats(redis, key.account, endpoint_id)
    return {
        "success": True,
        "deliveries": [delivery_view(d) for d in items],
        "page": page,
        "limit": limit,
        "total": total,
        "backlog": {"queued": queued, "retrying": retrying},
        "counts": {name: int(stats.get(name, 0)) for name in ("delivered", "failed", "dropped")},
    }


@router.post("/{endpoint_id}/deliveries/{delivery_id}/retry", status_code=202)
async def retry_delivery(
    endpoint_id: EndpointIdPath,
    delivery_id: Annotated[str, Path(max_length=128)],
    key: WebhooksKey,
    redis: RedisDep,
) -> dict[str, Any]:
    """Post the event again now, with a fresh budget of attempts (whatever became of it)."""
    await ops.require(redis, key.account, endpoint_id)
    delivery = await deliveries.load(redis, key.account, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint_id:
        raise Rejected(Code.DELIVERY_NOT_FOUND, f"Delivery '{delivery_id}' not found")
    await deliveries.retry_now(redis, key.account, endpoint_id, delivery, time.time())
    return {"success": True, "id": delivery.id, "status": "retrying"}
