"""``/api/v1/settings/frequency_caps`` (scope ``admin``): the account's frequency caps,
at most ``max`` non-transactional sends per contact per channel per window
(docs/audience.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from worker.api.deps import AdminKey, RedisDep
from worker.models import StrictBody
from worker.store import caps

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])


class CapIn(StrictBody):
    max: Annotated[int, Field(strict=True, ge=1, le=1000)]
    # A minute to 30 days; windows are fixed and counted from the Unix epoch (a day: UTC).
    window_s: Annotated[int, Field(strict=True, ge=60, le=30 * 86_400)]


class CapsPut(StrictBody):
    """A channel given sets its cap, ``null`` removes it, absent leaves it."""

    whatsapp: CapIn | None = None
    push: CapIn | None = None


def _view(found: dict[str, caps.Cap]) -> dict[str, Any]:
    return {
        "frequency_caps": {
            channel: (
                {"max": found[channel].max, "window_s": found[channel].window_s}
                if channel in found
                else None
            )
            for channel in caps.CHANNELS
        }
    }


@router.get("/frequency_caps")
async def get_caps(key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    return _view(await caps.load(redis, key.account))


@router.put("/frequency_caps")
async def put_caps(body: CapsPut, key: AdminKey, redis: RedisDep) -> dict[str, Any]:
    for channel in body.model_fields_set & set(caps.CHANNELS):
        given: CapIn | None = getattr(body, channel)
        cap = None if given is None else caps.Cap(given.max, given.window_s)
        await caps.save(redis, key.account, channel, cap)
    return _view(await caps.load(redis, key.account))
