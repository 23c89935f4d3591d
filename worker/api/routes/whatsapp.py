"""``POST /api/v1/channels/whatsapp/send``: validate, check template or window, enqueue, wait."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from worker.api.deps import CeleryDep, RedisDep, SendKey, SettingsDep, wait_for_outcome
from worker.api.errors import ApiError
from worker.api.idempotency import IdempotencyKey, respond_once
from worker.api.views import send_response
from worker.enqueue import enqueue
from worker.models import Channel, WhatsAppSendRequest
from worker.store import channels, contacts, conversations, messages, templates

router = APIRouter(prefix="/api/v1/channels/whatsapp", tags=["whatsapp"])


async def check_template(
    redis: Redis, account: str, name: str, language: str, parameter_count: int
) -> None:
    """422 unless the template exists in this language, is approved, and takes as many
    parameters as given (a campaign's are checked the same way before it is stored)."""
    template = await templates.get_template(redis, account, name, language)
    if template is None:
        languages = sorted(
            t.language for t in await templates.list_templates(redis, account) if t.name == name
        )
        hint = (
            f"; it exists in: {', '.join(languages)}"
            if languages
            else "; run `dispatch templates sync` after creating it in WhatsApp Manager"
        )
        raise ApiError(
            422,
            f"Template '{name}' (language '{language}') not found{hint}",
            "template_not_found",
        )
    if template.status.upper() != "APPROVED":
        raise ApiError(
            422,
            f"Template '{template.name}' ({template.language}) is {template.status}, not APPROVED",
            "template_not_approved",
        )
    if parameter_count != template.body_parameters:
        raise ApiError(
            422,
            f"Template '{template.name}' ({template.language}) expects "
            f"{template.body_parameters} parameter(s), got {parameter_count}",
            "template_parameter_mismatch",
            expected_parameters=template.body_parameters,
        )


@router.post("/send")
async def send(
    body: WhatsAppSendRequest,
    key: SendKey,
    redis: RedisDep,
    settings: SettingsDep,
    celery: CeleryDep,
    prefer: Annotated[str | None, Header()] = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    account = key.account
    if not await channels.whatsapp_configured(redis, account):
        raise ApiError(
            403, "WhatsApp channel not configured for this account", "channel_not_configured"
        )
    suspended = await channels.suspension(redis, account, channels.WHATSAPP)
    if suspended is not None:
        raise ApiError(
            403,
            f"{suspended}. Sends are stopped until the channel is configured again "
            "(dispatch channels whatsapp configure)",
            "channel_suspended",
        )
    if body.contact_id is not None and not await contacts.exists(redis, account, body.contact_id):
        raise ApiError(404, f"Contact '{body.contact_id}' not found", "contact_not_found")
    if body.template_name is not None:
        await check_template(
            redis, account, body.template_name, body.language, len(body.parameters)
        )
    elif not await conversations.window_open(redis, account, body.to):
        raise ApiError(
            422,
            "Free-form messages are only allowed within 24 hours of the customer's last "
            "message; send an approved template instead",
            "template_required",
        )

    async def send_it(message_id: str) -> tuple[int, dict[str, Any]]:
        message = messages.new(
            account,
            Channel.WHATSAPP,
            message_id,
            to=body.to,
            contact_id=body.contact_id,
            template_name=body.template_name,
            language=body.language if body.template_name else None,
            parameters=[p.text for p in body.parameters],
            text=body.message,
        )
        await messages.create(redis, message, settings.message_ttl_s)
        enqueue(celery, "whatsapp.send", account, message.id)
        return send_response(await wait_for_outcome(redis, settings, message, prefer))

    return await respond_once(redis, settings, account, idempotency_key, "whatsapp", body, send_it)
