"""For operators and orchestrators: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from redis.asyncio import Redis

from worker.api.deps import SettingsDep
from worker.codes import Code
from worker.errors import Rejected
from worker.observe import metrics, status

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz")
async def healthz() -> dict[str, bool]:
    """The process is alive (it answers); says nothing about Redis or the workers."""
    return {"ok": True}


@router.get("/readyz", responses={503: {"description": "Not ready, with the reasons"}})
async def readyz(request: Request) -> JSONResponse:
    """Ready to take sends: Redis answers and every queue has a live worker group (its
    heartbeat, written every 2 s, is less than 10 s old). 503 with the reasons otherwise."""
    redis: Redis = request.app.state.redis
    snap = await status.ready(redis)
    reasons: list[str] = []
    if not snap.redis_ok:
        # The error itself (addresses, server messages) goes to the log, not to callers.
        log.error("readyz: Redis unreachable: %s", snap.error)
        reasons.append("Redis unreachable")
    else:
        reasons += [f"no worker alive on queue '{q}'" for q in snap.unserved()]
    body: dict[str, Any] = {
        "ready": not reasons,
        "redis": snap.redis_ok,
        "workers": snap.workers_by_queue() if snap.redis_ok else {},
    }
    if reasons:
        body["reasons"] = reasons
    return JSONResponse(body, 503 if reasons else 200)


@router.get("/metrics", include_in_schema=False)
async def prometheus(request: Request, settings: SettingsDep) -> Response:
    """Prometheus exposition: this API's counters, and queue depths, dead letters, worker
    groups and running campaigns read from Redis for this scrape. Behind a bearer token
    when ``DISPATCH_METRICS_TOKEN`` is set; tenant names only with
    ``DISPATCH_METRICS_TENANT_LABELS``."""
    if settings.metrics_token is not None:
        expected = f"Bearer {settings.metrics_token.get_secret_value()}"
        presented = request.headers.get("authorization", "")
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            raise Rejected(Code.UNAUTHORIZED, "Metrics need the operator's bearer token")
    redis: Redis = request.app.state.redis
    snap = await status.take(redis, rates=False)
    collector = metrics.StoreCollector(snap, tenant_labels=settings.metrics_tenant_labels)
    return Response(metrics.exposition(collector), media_type=CONTENT_TYPE_LATEST)
