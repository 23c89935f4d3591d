"""``POST /api/v1/channels/push/send``: one notification to every device of a contact."""

from __future__ import annotations

from typing import Any, NoReturn

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from worker.api.deps import SEND_HEADERS, SenderDep, note_accepted, wait_for_outcome
from worker.api.idempotency import respond_once
from worker.api.refusals import raise_refusal
from worker.api.send_route import SendRoute
from worker.api.views import push_response
from worker.codes import Code
from worker.errors import Rejected
from worker.models import Channel, PushSendRequest
from worker.models.push_payload import (
    MAX_PAYLOAD_BYTES,
    PLATFORM_NAMES,
    Notification,
    payload_sizes,
)
from worker.services.audience import settle_timing
from worker.store import messages, preferences, push, sends

router = APIRouter(prefix="/api/v1/channels/push", tags=["push"], route_class=SendRoute)


def _refuse(refused: sends.Refused, sizes: dict[str, int]) -> NoReturn:
    """The full error for what the send script refused."""

    def too_large(platforms: str) -> Rejected:
        detail = ", ".join(f"{PLATFORM_NAMES[p]} {sizes[p]} bytes" for p in platforms.split())
        return Rejected(
            Code.PAYLOAD_TOO_LARGE,
            f"Notification payload exceeds {MAX_PAYLOAD_BYTES} bytes ({detail}); "
            "shorten the title, message or data",
        )

    raise_refusal(
        refused,
        {
            "push_not_enabled": lambda _: Rejected(
                Code.PUSH_NOT_ENABLED, "Push notifications not enabled for this account"
            ),
            "contact_not_found": lambda _: Rejected(
                Code.CONTACT_NOT_FOUND, "Contact not found or has no push tokens registered"
            ),
            "payload_too_large": too_large,
        },
    )
    raise AssertionError(f"unexpected refusal {refused}")  # pragma: no cover


@router.post("/send", openapi_extra=SEND_HEADERS)
async def send(
    body: PushSendRequest,
    caller: SenderDep,
) -> JSONResponse:
    account, redis, settings = caller.account, caller.redis, caller.settings
    options = body.push_options()
    note = Notification(
        body.title, body.message, body.url, body.icon, body.data, body.collapse_id, **options
    )
    # Both platforms measured here; the script compares only those the contact's devices
    # are on (an iPhone-only contact's push is not refused for a size only FCM refuses).
    sizes = payload_sizes(note)

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
            send_category=body.category,
            **options,
        )
        consent = preferences.consent_category(body.category, body.respect_preferences)
        await settle_timing(redis, message, consent, body.ttl_s, body.expires_at)
        # The checks, the roster, the record and its job in one round trip (one Lua
        # script), as a WhatsApp send is accepted.
        refused = await sends.accept_push(
            redis,
            message,
            settings.message_ttl_s,
            key_hash=None if caller.confirmed else caller.key_hash,
            payload_bytes=sizes,
            consent=consent,
        )
        if refused is not None:
            _refuse(refused, sizes)
        note_accepted(message)
        message = await wait_for_outcome(redis, settings, message, caller.prefer)
        return push_response(message, await push.load_devices(redis, account, message.id))

    return await respond_once(
        redis, settings, account, caller.idempotency_key, "push", body, send_it, caller.check_key
    )
