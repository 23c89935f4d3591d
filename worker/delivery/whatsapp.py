"""Send one WhatsApp message by id: load it, call the Graph API, record what happened."""

from __future__ import annotations

import logging
import time

from worker.delivery.context import DeliveryContext, Outcome, load_unfinished
from worker.errors import DeliveryError, RetryableError
from worker.masking import mask_phone
from worker.models import Attempt, MessageStatus
from worker.providers.whatsapp import template_payload, text_payload
from worker.store import channels, messages

log = logging.getLogger(__name__)


async def send_whatsapp(ctx: DeliveryContext, account_id: str, message_id: str) -> Outcome:
    message = await load_unfinished(ctx, account_id, message_id)
    if isinstance(message, Outcome):
        return message
    to = message.to or ""
    config = await channels.load_whatsapp(ctx.redis, account_id)
    number = await messages.begin_attempt(ctx.redis, account_id, message_id)
    if config is None:
        failure = Attempt(
            attempt=number,
            at=time.time(),
            outcome="failed",
            error="WhatsApp channel not configured for this account",
            code="channel_not_configured",
        )
        await messages.finish_attempt(
            ctx.redis, message, failure, MessageStatus.FAILED, ctx.message_ttl_s
        )
        return Outcome(MessageStatus.FAILED)

    if message.template_name is not None:
        payload = template_payload(
            to, message.template_name, message.language or "en", message.parameters
        )
    else:
        payload = text_payload(to, message.text or "")

    started = time.perf_counter()
    try:
        result = await ctx.whatsapp.send(config, payload)
    except DeliveryError as exc:
        latency_ms = (time.perf_counter() - started) * 1000
        retryable = exc if isinstance(exc, RetryableError) else None
        retry = retryable is not None and not ctx.whatsapp_retry.exhausted(number)
        attempt = Attempt(
            attempt=number,
            at=time.time(),
            outcome="retry" if retry else "failed",
            latency_ms=round(latency_ms, 1),
            error=exc.reason,
            code=exc.code,
            provider_code=exc.provider_code,
        )
        if retry and retryable is not None:
            delay_s = ctx.whatsapp_retry.delay_s(number, retryable.retry_after_s)
            attempt.retry_in_s = round(delay_s, 3)
        status = MessageStatus.RETRYING if retry else MessageStatus.FAILED
        await messages.finish_attempt(ctx.redis, message, attempt, status, ctx.message_ttl_s)
        log.info(
            "whatsapp %s to %s attempt %d: %s (%s)",
            message_id,
            mask_phone(to),
            number,
            attempt.outcome,
            exc.code,
        )
        return Outcome(status, attempt.retry_in_s)

    attempt = Attempt(
        attempt=number,
        at=time.time(),
        outcome="sent",
        latency_ms=round(result.latency_ms, 1),
        provider_message_id=result.provider_message_id,
    )
    await messages.finish_attempt(
        ctx.redis, message, attempt, MessageStatus.SENT, ctx.message_ttl_s
    )
    log.info(
        "whatsapp %s to %s attempt %d: sent in %.0f ms",
        message_id,
        mask_phone(to),
        number,
        result.latency_ms,
    )
    return Outcome(MessageStatus.SENT)
