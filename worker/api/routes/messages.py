"""``GET /api/v1/messages/{id}``: where a send stands, with every attempt."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from worker.api.deps import RedisDep, SendKey
from worker.api.views import message_detail
from worker.codes import Code
from worker.errors import Rejected
from worker.ids import MESSAGE_ID_RE
from worker.models import Scope
from worker.store import messages, push

router = APIRouter(prefix="/api/v1/messages", tags=["messages"])


@router.get("/{message_id}")
async def get_message(message_id: str, key: SendKey, redis: RedisDep) -> dict[str, Any]:
    message = (
        await messages.load(redis, key.account, message_id)
        if MESSAGE_ID_RE.fullmatch(message_id)
        else None
    )
    if message is None:
        raise Rejected(Code.MESSAGE_NOT_FOUND, f"Message '{message_id}' not found")
    attempts = await messages.load_attempts(redis, key.account, message_id)
    devices = await push.load_devices(redis, key.account, message_id)
    # A send key (a web app's) sees where a send stands, not what it said nor to whom.
    content = key.allows(Scope.CONTACTS) or key.allows(Scope.CAMPAIGNS)
    return message_detail(message, attempts, devices, content=content)
