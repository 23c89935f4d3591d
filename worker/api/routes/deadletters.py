"""Dead letters (scope ``admin``): sends that ran out of attempts or age, and redrive."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from worker.api.deps import AdminKey, RedisDep
from worker.codes import Code
from worker.errors import Rejected
from worker.ids import MESSAGE_ID_RE
from worker.models import iso
from worker.store import deadletters
from worker.store.jobs import publish
from worker.store.messages import Message, task_name

router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead letters"])


def _summary(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "channel": message.channel.value,
        "to": message.to,
        "contact_id": message.contact_id,
        "error": message.error,
        "code": message.code,
        "attempts": message.attempts,
        "device_count": message.device_count or None,
        "failed": message.failed or None,
        "created_at": iso(message.created_at),
        "dead_lettered_at": iso(message.dead_lettered_at),
    }


@router.get("")
async def list_dead_letters(
    key: AdminKey,
    redis: RedisDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    items, total = await deadletters.page(redis, key.account, (page - 1) * limit, limit)
    return {
        "success": True,
        "dead_letters": [_summary(m) for m in items],
        "page": page,
        "limit": limit,
        "total": total,
    }


@router.post("/{message_id}/redrive")
async def redrive(message_id: str, key: AdminKey, redis: RedisDep) -> JSONResponse:
    message = (
        await deadletters.redrive(redis, key.account, message_id)
        if MESSAGE_ID_RE.fullmatch(message_id)
        else None
    )
    if message is None:
        raise Rejected(Code.DEAD_LETTER_NOT_FOUND, f"No dead letter '{message_id}'")
    await publish(redis, task_name(message), key.account, message.id)
    return JSONResponse(
        {"success": True, "id": message.id, "status": "queued", "channel": message.channel.value},
        202,
    )
