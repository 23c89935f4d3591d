"""How stored records look on the wire (the spec's shapes, plus our ``id``)."""

from __future__ import annotations

from typing import Any

from worker.codes import Code, failed_send_status
from worker.codes import message as fixed_message
from worker.masking import mask_phone, mask_token
from worker.models import PUSH_OPTIONS, TRANSACTIONAL, Attempt, Channel, MessageStatus, iso
from worker.store import preferences
from worker.store.contacts import Contact
from worker.store.messages import Message
from worker.store.push import Device
from worker.store.tokens import TokenStats


def send_response(message: Message) -> tuple[int, dict[str, Any]]:
    """The answer to a send: 200 sent, 4xx/5xx failed, 202 still on its way."""
    if message.status is MessageStatus.SENT:
        return 200, {
            "success": True,
            "message_id": message.provider_message_id,
            "status": "sent",
            "channel": message.channel.value,
            "id": message.id,
        }
    if message.status is MessageStatus.FAILED:
        code = message.code or Code.SEND_FAILED
        body: dict[str, Any] = {
            "success": False,
            "error": message.error or fixed_message(Code.SEND_FAILED),
            "code": code,
            "status": "failed",
            "channel": message.channel.value,
            "id": message.id,
        }
        if message.provider_code:
            body["provider_code"] = message.provider_code
        # The template, the window, the recipient: 422; the channel: 403; the rest, the
        # provider's doing (retries exhausted, a 5xx): 502 (worker.codes).
        return failed_send_status(code), body
    return 202, _deferred(
        message,
        {
            "success": True,
            "message_id": None,
            "status": "queued",
            "channel": message.channel.value,
            "id": message.id,
        },
    )


def _deferred(message: Message, body: dict[str, Any]) -> dict[str, Any]:
    """A send put off by quiet hours says until when."""
    if message.deferred_until is not None and not message.status.is_final:
        body["deferred_until"] = iso(message.deferred_until)
    return body


def device_detail(device: Device) -> dict[str, Any]:
    """One device's result; the token is masked (it is a credential of sorts)."""
    out: dict[str, Any] = {
        "platform": device.platform,
        "token": mask_token(device.token),
        "status": device.status,
        "error": device.error,
    }
    if device.code:
        out["code"] = device.code
    if device.pruned:
        out["pruned"] = True
    return out


def push_response(message: Message, devices: list[Device]) -> tuple[int, dict[str, Any]]:
    """The spec's push answer plus our ``id``, ``status`` and per-device ``results``."""
    final = message.status.is_final
    body = {
        "success": message.delivered > 0,
        "delivered": message.delivered,
        "failed": message.failed,
        "device_count": message.device_count,
        "channel": "push",
        "id": message.id,
        "status": message.status.value if final else "queued",
        "results": [device_detail(d) for d in devices],
    }
    return (200 if final else 202), _deferred(message, body)


# What a message said and to whom: shown only to keys that may read content.
_CONTENT = ("to", "parameters", "message", "title", "url", "icon", "data", "image", "thread_id")


def message_detail(
    message: Message, attempts: list[Attempt], devices: list[Device], *, content: bool = True
) -> dict[str, Any]:
    detail = {
        "success": True,
        "id": message.id,
        "channel": message.channel.value,
        "status": message.status.value,
        "to": message.to,
        "contact_id": message.contact_id,
        "template_name": message.template_name,
        "language": message.language,
        "parameters": message.parameters,
        "message": message.text,
        "message_id": message.provider_message_id,
        "delivery_status": message.delivery_status,
        "error": message.error,
        "code": message.code,
        "provider_code": message.provider_code,
        "campaign_id": message.campaign,
        "category": message.send_category or TRANSACTIONAL,
        "expires_at": iso(message.expires_at),
        # Put off to then by quiet hours (or a campaign's local send time).
        "deferred_until": iso(message.deferred_until),
        "created_at": iso(message.created_at),
        "updated_at": iso(message.updated_at),
        "attempts": [
            {**a.model_dump(exclude_none=True, exclude={"at"}), "at": iso(a.at)} for a in attempts
        ],
    }
    if message.channel is Channel.PUSH:
        for name in (
            "to",
            "template_name",
            "language",
            "parameters",
            "message_id",
            "delivery_status",
            "provider_code",
        ):
            detail.pop(name)
        detail.update(
            title=message.title,
            message=message.text,
            url=message.url,
            icon=message.icon,
            data=message.data,
            # The delivery options the sender gave (those not given are not shown).
            **{
                name: getattr(message, name)
                for name in PUSH_OPTIONS
                if getattr(message, name) is not None
            },
            device_count=message.device_count,
            delivered=message.delivered,
            failed=message.failed,
            results=[device_detail(d) for d in devices],
        )
    if not content:
        for name in _CONTENT:
            detail.pop(name, None)
        detail["to"] = mask_phone(message.to) if message.to else None
    return detail


def token_detail(t: TokenStats) -> dict[str, Any]:
    # Masked like everywhere else: the app that registered a token knows it; an API key
    # that reads contacts must not be able to push to them from elsewhere.
    return {
        "platform": t.platform,
        "token": mask_token(t.token),
        "delivered": t.delivered,
        "failed": t.failed,
        "last_error": t.last_error,
        "last_success_at": iso(t.last_success_at),
        "last_failure_at": iso(t.last_failure_at),
        "registered_at": iso(t.registered_at),
    }


def contact_detail(
    contact: Contact, token_stats: dict[str, TokenStats], number_opt_out: str | None = None
) -> dict[str, Any]:
    """A contact with its active tokens (``token_stats`` is keyed by ``platform:token``)
    and its preferences (``number_opt_out``: its WhatsApp number's keyword opt-out)."""
    return {
        "id": contact.id,
        "phone": contact.phone,
        "email": contact.email,
        "name": contact.name,
        "attributes": contact.attributes,
        "tags": contact.tags,
        "push_tokens": [token_detail(token_stats[m]) for m in contact.push_tokens],
        "preferences": preferences.view(contact.opt_outs, number_opt_out),
        "created_at": iso(contact.created_at),
        "updated_at": iso(contact.updated_at),
    }
