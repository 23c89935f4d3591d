"""For operators and orchestrators: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from redis.asyncio import Redis

from worker import metrics, status

router = APIRouter(tags=["health"])


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
        reasons.append(f"Redis unreachable: {snap.error}")
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
async def prometheus(request: Request) -> Response:
    """Prometheus exposition: this API's counters, and queue depths, dead letters, worker
    groups and running campaigns read from Redis for this scrape."""
    redis: Redis = request.app.state.redis
    snap = await status.take(redis, rates=False)
    return Response(
        metrics.exposition(metrics.StoreCollector(snap)), media_type=CONTENT_TYPE_LATEST
    )
