"""``POST /api/v1/channels/push/send``: one notification to every device of a contact."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from worker.api.deps import SEND_HEADERS, SenderDep, note_accepted, wait_for_outcome
from worker.api.errors import ApiError
from worker.api.idempotency import respond_once
from worker.api.send_route import SendRoute
from worker.api.views import push_response
from worker.models import Channel, PushSendRequest
from worker.models.push_payload import MAX_PAYLOAD_BYTES, PLATFORM_NAMES, Notification, oversized
from worker.store import channels, contacts, messages, push, tokens

router = APIRouter(prefix="/api/v1/channels/push", tags=["push"], route_class=SendRoute)


@router.post("/send", openapi_extra=SEND_HEADERS)
async def send(
    body: PushSendRequest,
    caller: SenderDep,
) -> JSONResponse:
    account, redis, settings = caller.account, caller.redis, caller.settings
    await caller.ensure_valid()
    if not await channels.push_platforms(redis, account):
        raise ApiError(403, "Push notifications not enabled for this account", "push_not_enabled")
    members = await contacts.active_tokens(redis, account, body.contact_id)
    if not members:
        raise ApiError(
            404, "Contact not found or has no push tokens registered", "contact_not_found"
        )
    note = Notification(body.title, body.message, body.url, body.icon, body.data, body.collapse_id)
    # Only the platforms the contact's devices are on: an iPhone-only contact's push is
    # not refused for a size only FCM would refuse.
    too_big = oversized(note, sorted({tokens.split(m)[0] for m in members}))
    if too_big:
        detail = ", ".join(f"{PLATFORM_NAMES[p]} {size} bytes" for p, size in too_big)
        raise ApiError(
            400,
            f"Notification payload exceeds {MAX_PAYLOAD_BYTES} bytes ({detail}); "
            "shorten the title, message or data",
            "payload_too_large",
        )

    async def send_it(message_id: str) -> tuple[int, dict[str, Any]]:
        message = messages.new(
            account,
            Channel.PUSH,
            message_id,
            contact_id=body.contact_id,
            title=body.title,
            text=body.message,
            url=body.url,
            icon=body.icon,
            data=body.data,
            collapse_id=body.collapse_id,
            device_count=len(members),
        )
        await push.create_push(redis, message, members, settings.message_ttl_s, publish=True)
        note_accepted(message)
        message = await wait_for_outcome(redis, settings, message, caller.prefer)
        return push_response(message, await push.load_devices(redis, account, message.id))

    return await respond_once(
        redis, settings, account, caller.idempotency_key, "push", body, send_it
    )
