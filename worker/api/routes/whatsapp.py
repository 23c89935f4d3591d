"""``POST /api/v1/channels/whatsapp/send``: validate, check template or window, enqueue, wait."""

from __future__ import annotations

from typing import Any, NoReturn

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from worker.api.deps import SEND_HEADERS, SenderDep, note_accepted, wait_for_outcome
from worker.api.idempotency import respond_once
from worker.api.refusals import raise_refusal
from worker.api.send_route import SendRoute
from worker.api.views import send_response
from worker.codes import Code
from worker.errors import Rejected
from worker.models import WHATSAPP_BODY_MAX_CHARS, Channel, WhatsAppSendRequest
from worker.services.audience import settle_timing, template_language
from worker.services.templates import check_template
from worker.store import messages, preferences, sends

router = APIRouter(prefix="/api/v1/channels/whatsapp", tags=["whatsapp"], route_class=SendRoute)


async def _refuse(
    redis: Redis, account: str, body: WhatsAppSendRequest, refused: sends.Refused, language: str
) -> NoReturn:
    """The full error for what the send script refused."""
    raise_refusal(
        refused,
        {
            "channel_not_configured": lambda _: Rejected(
                Code.CHANNEL_NOT_CONFIGURED, "WhatsApp channel not configured for this account"
            ),
            "channel_suspended": lambda reason: Rejected(
                Code.CHANNEL_SUSPENDED,
                f"{reason}. Sends are stopped until the channel is configured again "
                "(dispatch channels whatsapp configure)",
            ),
            "contact_not_found": lambda _: Rejected(
                Code.CONTACT_NOT_FOUND, f"Contact '{body.contact_id}' not found"
            ),
            "template_body_too_long": lambda length: Rejected(
                Code.TEMPLATE_BODY_TOO_LONG,
                f"The filled-in template body is {length} characters; WhatsApp allows "
                f"{WHATSAPP_BODY_MAX_CHARS}: shorten the parameters",
                field="parameters",
            ),
            "template_required": lambda _: Rejected(
                Code.TEMPLATE_REQUIRED,
                "Free-form messages are only allowed within 24 hours of the customer's last "
                "message; send an approved template instead",
            ),
        },
    )
    # template_not_found, template_problem: worded as a campaign's template is checked,
    # from the stored template the script returned.
    assert body.template_name is not None
    await check_template(
        redis,
        account,
        body.template_name,
        language,
        len(body.parameters),
        refused.detail or None,
    )
    raise AssertionError(f"unexpected refusal {refused}")  # pragma: no cover


@router.post("/send", openapi_extra=SEND_HEADERS)
async def send(
    body: WhatsAppSendRequest,
    caller: SenderDep,
) -> JSONResponse:
    account, redis, settings = caller.account, caller.redis, caller.settings

    async def send_it(message_id: str) -> tuple[int, dict[str, Any]]:
        language = body.language
        if body.template_name and body.contact_id and "language" not in body.model_fields_set:
            # Only the template named: the contact's locale picks the language.
            picked = await template_language(redis, account, body.contact_id, body.template_name)
            language = picked or language
        message = messages.new(
            account,
            Channel.WHATSAPP,
            message_id,
            to=body.to,
            contact_id=body.contact_id,
            template_name=body.template_name,
            language=language if body.template_name else None,
            parameters=[p.text for p in body.parameters],
            text=body.message,
            send_category=body.category,
        )
        consent = preferences.consent_category(body.category, body.respect_preferences)
        await settle_timing(redis, message, consent, body.ttl_s, body.expires_at)
        # The checks, the record and its job in one round trip (one Lua script).
        refused = await sends.accept_whatsapp(
            redis,
            message,
            settings.message_ttl_s,
            key_hash=None if caller.confirmed else caller.key_hash,
            window_phone=body.to if body.template_name is None else None,
            consent=consent,
        )
        if refused is not None:
            await _refuse(redis, account, body, refused, language)
        note_accepted(message)
        return send_response(await wait_for_outcome(redis, settings, message, caller.prefer))

    return await respond_once(
        redis,
        settings,
        account,
        caller.idempotency_key,
        "whatsapp",
        body,
        send_it,
        caller.check_key,
    )
