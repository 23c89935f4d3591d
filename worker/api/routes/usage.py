"""Usage (scope ``admin``): per UTC day and channel, from counters kept as sends are
recorded (worker.store.usage). The path the platform's SDK calls (``usage.get``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from worker.api.deps import AdminKey, RedisDep
from worker.services import usage

router = APIRouter(prefix="/api/v1/usage", tags=["usage"])


@router.get("")
async def get_usage(
    key: AdminKey,
    redis: RedisDep,
    start_date: str | None = None,
    end_date: str | None = None,
) -> dict[str, Any]:
    """``start_date``/``end_date`` (YYYY-MM-DD, UTC, both inclusive; default: the last 30
    days ending today; at most 366 days)."""
    first, last = usage.date_range(start_date, end_date, usage.today())
    return await usage.report(redis, key.account, first, last)
