"""Send one WhatsApp message by id: load it, wait for a slot of the number's rate limit,
call the Graph API, record what happened.

One job at a time holds the message; nothing is sent before the message's
``not_before`` (a provider's Retry-After); a send that runs out of attempts or of
age goes to the dead-letter list with its last error.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from worker.codes import Code
from worker.codes import message as fixed_message
from worker.delivery import policy
from worker.delivery.context import DeliveryContext, Outcome, claimed
from worker.errors import DeliveryError, RetryableError
from worker.masking import mask_phone
from worker.models import Attempt, MessageStatus, WhatsAppConfig, iso
from worker.observe import metrics
from worker.providers.whatsapp import template_payload, text_payload
from worker.store import channels, messages, preferences
from worker.store.messages import Message

log = logging.getLogger(__name__)


async def send_whatsapp(ctx: DeliveryContext, account_id: str, message_id: str) -> Outcome:
    async with claimed(ctx, account_id, message_id) as message:
        if isinstance(message, Outcome):
            return message
        return await _send(ctx, message)


async def _fail(
    ctx: DeliveryContext,
    message: Message,
    error: str,
    code: str,
    *,
    dead_letter: bool,
    number: int | None = None,
) -> Outcome:
    """Fail the message for good; ``number``: the attempt this ends, when no new one was
    made (the next by default)."""
    attempt = Attempt(
        attempt=number or message.attempts + 1,
        at=time.time(),
        outcome="failed",
        error=error,
        code=code,
    )
    await messages.finish_attempt(
        ctx.redis,
        message,
        attempt,
        MessageStatus.FAILED,
        ctx.message_ttl_s,
        dead_letter=dead_letter,
    )
    metrics.SENDS.labels("whatsapp", "failed").inc()
    log.info(
        "whatsapp %s failed: %s",
        message.id,
        error,
        extra=_event(message, attempt.attempt, "failed", code=code),
    )
    if dead_letter:
        metrics.DEAD_LETTERED.labels("whatsapp").inc()
        _dead_letter(message, code)
    return Outcome(MessageStatus.FAILED)


def _dead_letter(message: Message, code: str | None) -> None:
    log.warning(
        "whatsapp %s moved to the dead letters (%s)",
        message.id,
        code,
        extra={
            "event": "send.dead_letter",
            "message_id": message.id,
            "account": message.account,
            "channel": "whatsapp",
            "code": code,
        },
    )


def _too_late(ctx: DeliveryContext, message: Message, now: float) -> tuple[str, bool] | None:
    """Why the message is no longer worth an attempt, and whether that makes it a dead
    letter: past the expiry its sender gave (not: it asked for it to end so, an OTP),
    past the service's maximum age (yes: nobody chose it); None while it is worth one."""
    if message.expired(now):
        said, dead_letter = f"Expired at {iso(message.expires_at)} before it could be sent", False
    elif message.age_s(now) > ctx.settings.whatsapp_max_age_s:
        said, dead_letter = f"Not sent within {ctx.settings.whatsapp_max_age_s:.0f}s", True
    else:
        return None
    return said + (f"; last error: {message.error}" if message.error else ""), dead_letter


async def _send(ctx: DeliveryContext, message: Message) -> Outcome:
    if message.attempts > 0:
        # An earlier attempt may have gone through with no answer (and any attempt since
        # may have failed otherwise): the provider's report naming the message says so.
        wamid = await messages.unanswered_confirmation(ctx.redis, message.account, message.id)
        if wamid is not None:
            return await _confirmed(ctx, message, wamid)
        if ctx.whatsapp_retry.exhausted(message.budget_attempts):
            # Its attempts were used up by one that may have gone through: this pass only
            # looked for the report, and none came. It fails with that attempt's error.
            return await _fail(
                ctx,
                message,
                message.error or fixed_message(Code.SEND_FAILED),
                message.code or Code.SEND_FAILED,
                dead_letter=True,
                number=message.attempts,
            )
    now = time.time()
    ended = _too_late(ctx, message, now)
    if ended is not None:
        error, dead_letter = ended
        return await _fail(ctx, message, error, Code.EXPIRED, dead_letter=dead_letter)
    if message.not_before is not None and now < message.not_before:
        # Delivered early (a duplicate job, or a countdown that fired soon): not yet.
        return Outcome(message.status, message.not_before - now)
    if message.deferred_until is not None and message.attempts == 0:
        # Put off (quiet hours, a local send time): an opt-out given meanwhile holds.
        refusal = await preferences.opted_out_now(
            ctx.redis,
            message.account,
            "whatsapp",
            preferences.consent_category(message.send_category),
            {message.contact_id or "": message.to or ""},
        )
        if refusal:
            said = f"The recipient opted out of {next(iter(refusal.values()))} meanwhile"
            return await _fail(ctx, message, said, Code.RECIPIENT_OPTED_OUT, dead_letter=False)
    config = await channels.load_whatsapp(ctx.redis, message.account)
    if config is None:
        return await _fail(
            ctx,
            message,
            fixed_message(Code.CHANNEL_NOT_CONFIGURED),
            Code.CHANNEL_NOT_CONFIGURED,
            dead_letter=False,
        )
    to = message.to or ""
    suspended = await channels.suspension(ctx.redis, message.account, channels.WHATSAPP)
    if suspended is not None:
        return await _fail(ctx, message, suspended, Code.CHANNEL_AUTH_FAILED, dead_letter=True)

    if message.template_name is not None:
        payload = template_payload(
            to,
            message.template_name,
            message.language or "en",
            message.parameters,
            callback_data=message.id,
        )
    else:
        payload = text_payload(to, message.text or "", callback_data=message.id)

    wait_s = await _wait_for_slot(ctx, config, to)
    if wait_s is not None:
        return Outcome(message.status, wait_s)

    # Nothing but the HTTP call between taking the rate-limit slot and the provider: work
    # done in between (a Redis round trip, say) would shift sends off their slots. The
    # lease makes this job the only one counting the message's attempts.
    number = message.attempts + 1
    started = time.perf_counter()
    try:
        result = await ctx.whatsapp.send(config, payload)
    except DeliveryError as exc:
        return await _after_error(ctx, message, config, to, number, exc, started)

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
    metrics.SENDS.labels("whatsapp", "sent").inc()
    metrics.PROVIDER_LATENCY.labels("whatsapp").observe(result.latency_ms / 1000)
    log.info(
        "whatsapp %s to %s attempt %d: sent in %.0f ms",
        message.id,
        mask_phone(to),
        number,
        result.latency_ms,
        extra=_event(message, number, "sent", latency_ms=attempt.latency_ms),
    )
    return Outcome(MessageStatus.SENT)


async def _confirmed(ctx: DeliveryContext, message: Message, wamid: str) -> Outcome:
    """The provider reported the message sent (a status webhook naming it) after its last
    attempt got no answer: that attempt went through, and nothing is sent again."""
    attempt = Attempt(
        attempt=message.attempts,
        at=time.time(),
        outcome="sent",
        provider_message_id=wamid,
        confirmed_by="status_report",
    )
    await messages.finish_attempt(
        ctx.redis, message, attempt, MessageStatus.SENT, ctx.message_ttl_s
    )
    metrics.SENDS.labels("whatsapp", "sent").inc()
    log.info(
        "whatsapp %s to %s attempt %d: sent (its answer never came; the provider's status "
        "report says it went)",
        message.id,
        mask_phone(message.to or ""),
        attempt.attempt,
        extra=_event(message, attempt.attempt, "sent", confirmed_by=attempt.confirmed_by),
    )
    return Outcome(MessageStatus.SENT)


async def _unconfirmed_wait_s(
    ctx: DeliveryContext, message: Message, exc: DeliveryError
) -> float | None:
    """How long the next attempt of a send that may have been delivered (no answer came)
    waits for the status report that would say so; None when it need not wait (the send
    surely failed, waiting is off, or the account's number posts no status webhooks)."""
    wait_s = ctx.settings.whatsapp_unconfirmed_wait_s
    if not (isinstance(exc, RetryableError) and exc.maybe_delivered and wait_s > 0):
        return None
    return wait_s if await messages.reports_status(ctx.redis, message.account) else None


def _event(message: Message, number: int, outcome: str, **fields: object) -> dict[str, object]:
    """The structured fields of an attempt's log line (see worker.observe.logs)."""
    return {
        "event": "send.attempt",
        "message_id": message.id,
        "account": message.account,
        "channel": "whatsapp",
        "campaign": message.campaign,
        "attempt": number,
        "outcome": outcome,
        **fields,
    }


async def _wait_for_slot(ctx: DeliveryContext, config: WhatsAppConfig, to: str) -> float | None:
    """Wait for this send's slot of the number's limit (after the recipient's pacing, if
    on); or return how long until a slot, when that is too long to wait here."""
    if ctx.settings.whatsapp_pair_rate_per_s:
        # Pacing per recipient first: its waits are long and must not hold a number slot.
        slot = await ctx.limiter.acquire(
            _pair_key(config, to),
            ctx.settings.whatsapp_pair_rate_per_s,
            burst=ctx.settings.whatsapp_pair_burst,
            max_wait_s=0,
        )
        if not slot.granted:
            return slot.wait_s
    return await ctx.limiter.take(
        f"wa:{config.phone_number_id}", config.rate_per_s or ctx.settings.whatsapp_rate_per_s
    )


def _pair_key(config: WhatsAppConfig, to: str) -> str:
    return f"wa_pair:{config.phone_number_id}:{to}"


async def _after_error(
    ctx: DeliveryContext,
    message: Message,
    config: WhatsAppConfig,
    to: str,
    number: int,
    exc: DeliveryError,
    started: float,
) -> Outcome:
    latency_ms = (time.perf_counter() - started) * 1000
    # Attempts are counted from the message's last manual retry (a dead letter sent again).
    decision = policy.after_error(exc, number - message.attempt_base, ctx.whatsapp_retry)
    await _slow_or_stop(ctx, message.account, config, to, exc, decision)
    unconfirmed_s = await _unconfirmed_wait_s(ctx, message, exc)
    if unconfirmed_s is not None:
        # It may have gone through: no job tries again before the wait for its report,
        # and out of attempts it still gets that pass, which only looks (see _send).
        decision = dataclasses.replace(
            decision,
            retry_in_s=max(decision.retry_in_s or 0.0, unconfirmed_s),
            not_before_s=max(decision.not_before_s or 0.0, unconfirmed_s),
            dead_letter=False,
        )
    retry = decision.retry
    attempt = Attempt(
        attempt=number,
        at=time.time(),
        outcome="retry" if retry else "failed",
        latency_ms=round(latency_ms, 1),
        error=exc.reason,
        code=exc.code,
        provider_code=exc.provider_code,
    )
    not_before = None
    if decision.retry_in_s is not None:
        attempt.retry_in_s = round(decision.retry_in_s, 3)
        if decision.not_before_s:
            # The provider's Retry-After (or the wait for a status report) is a floor for
            # any job, including a duplicate one.
            not_before = attempt.at + decision.not_before_s
    status = MessageStatus.RETRYING if retry else MessageStatus.FAILED
    dead_letter = decision.dead_letter
    await messages.finish_attempt(
        ctx.redis,
        message,
        attempt,
        status,
        ctx.message_ttl_s,
        not_before=not_before,
        dead_letter=dead_letter,
    )
    _report_failed(message, to, number, attempt, exc.code, latency_ms, dead_letter=dead_letter)
    return Outcome(status, attempt.retry_in_s)


async def _slow_or_stop(
    ctx: DeliveryContext,
    account: str,
    config: WhatsAppConfig,
    to: str,
    exc: DeliveryError,
    decision: policy.Decision,
) -> None:
    """What the error does beyond this message: the account's channel stopped, the
    recipient's pacing emptied, or the number's rate slowed for a while."""
    if decision.suspend:
        await channels.suspend(
            ctx.redis,
            account,
            channels.WHATSAPP,
            f"WhatsApp refused this account's credentials: {exc.reason}",
            ctx.settings.account_stop_s,
        )
        log.error("whatsapp for account %s suspended: %s", account, exc.reason)
    if decision.exhaust_pair and ctx.settings.whatsapp_pair_rate_per_s:
        # Meta counts this recipient as full (sends from elsewhere, a burst we did not
        # see): its own pacing starts from empty; the number and other recipients go on.
        await ctx.limiter.exhaust(
            _pair_key(config, to),
            ctx.settings.whatsapp_pair_rate_per_s,
            ctx.settings.whatsapp_pair_burst,
        )
    if decision.penalize:
        factor = await ctx.limiter.penalize(f"wa:{config.phone_number_id}")
        log.warning(
            "whatsapp number %s throttled by the provider: rate / %g for a while",
            config.phone_number_id,
            factor,
        )


def _report_failed(
    message: Message,
    to: str,
    number: int,
    attempt: Attempt,
    code: str,
    latency_ms: float,
    *,
    dead_letter: bool,
) -> None:
    """Metrics and the log line of a failed attempt (the record is written already)."""
    metrics.SENDS.labels("whatsapp", attempt.outcome).inc()
    metrics.PROVIDER_LATENCY.labels("whatsapp").observe(latency_ms / 1000)
    if attempt.outcome == "retry":
        metrics.RETRIES.labels("whatsapp", code).inc()
    log.info(
        "whatsapp %s to %s attempt %d: %s (%s)",
        message.id,
        mask_phone(to),
        number,
        attempt.outcome,
        code,
        extra=_event(
            message,
            number,
            attempt.outcome,
            code=code,
            latency_ms=attempt.latency_ms,
            retry_in_s=attempt.retry_in_s,
        ),
    )
    if dead_letter:
        metrics.DEAD_LETTERED.labels("whatsapp").inc()
        _dead_letter(message, code)
