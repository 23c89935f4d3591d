"""What happens to a message whose job crashed on an unexpected error (a bug)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

from worker.codes import Code
from worker.delivery.context import DeliveryContext
from worker.models import Attempt, MessageStatus
from worker.store import joberrors, jobs, keys, messages

log = logging.getLogger(__name__)


def _internal_error(exc: BaseException) -> str:
    return f"internal error: {type(exc).__name__}: {exc}"


async def record_crash(
    ctx: DeliveryContext, account_id: str, message_id: str, exc: BaseException
) -> None:
    """Fail the message with the error and list it among the dead letters: an operator
    sees it and can redrive it once the cause is fixed; the job is not retried blindly."""
    message = await messages.load(ctx.redis, account_id, message_id)
    if message is None or message.status.is_final:
        return
    attempt = Attempt(
        attempt=message.attempts + 1,
        at=time.time(),
        outcome="failed",
        error=_internal_error(exc),
        code=Code.INTERNAL_ERROR,
    )
    await messages.finish_attempt(
        ctx.redis, message, attempt, MessageStatus.FAILED, ctx.message_ttl_s, dead_letter=True
    )


async def record_walk_crash(
    ctx: DeliveryContext, account_id: str, campaign_id: str, exc: BaseException
) -> None:
    """A campaign's audience walk crashed on a bug: the campaign shows the error
    (``last_error``), so that a stalled campaign is never silent."""
    from worker.store import campaigns

    await campaigns.count_now(
        ctx.redis,
        account_id,
        campaign_id,
        {"job_crashes": 1},
        {"last_error": f"{type(exc).__name__}: {exc}", "last_error_at": repr(time.time())},
    )


async def record_batch_crash(
    ctx: DeliveryContext, account_id: str, batch_id: str, exc: BaseException
) -> None:
    """A campaign's push batch crashed on a bug: the batch (a message) fails like any
    message, and the campaign shows the error."""
    from worker.delivery.fanout import parse_batch_id

    # The error first: failing the batch may complete the campaign, and a completed
    # campaign must already say why part of it failed.
    await record_walk_crash(ctx, account_id, parse_batch_id(batch_id)[0], exc)
    await record_crash(ctx, account_id, batch_id, exc)


async def record_whatsapp_batch_crash(
    ctx: DeliveryContext, account_id: str, batch_id: str, exc: BaseException
) -> None:
    """A campaign's WhatsApp batch crashed on a bug: each of its messages not sent yet fails
    with the error and goes to the dead letters (counted failed, so the campaign completes),
    and the campaign shows the error."""
    from worker.delivery.fanout import parse_batch_id

    campaign_id, number = parse_batch_id(batch_id)
    # The error first, as for a push batch: the last failed message completes the campaign.
    await record_walk_crash(ctx, account_id, campaign_id, exc)
    ids = cast(
        list[str],
        await ctx.redis.lrange(keys.campaign_batch(account_id, campaign_id, number), 0, -1),
    )
    for message_id in ids:
        try:
            await record_crash(ctx, account_id, message_id, exc)
        except ValueError:  # its record is what the batch choked on
            await messages.fail_unreadable(
                ctx.redis, account_id, message_id, campaign_id, _internal_error(exc)
            )


async def record_run_crash(
    ctx: DeliveryContext, account_id: str, run_id: str, exc: BaseException
) -> None:
    """An automation run whose step crashed on a bug fails at that step, with the error."""
    from worker.store import automations

    run = await automations.load_run(ctx.redis, account_id, run_id)
    if run is None or run.status in automations.RUN_FINAL:
        return
    error = _internal_error(exc)
    await automations.record_step(
        ctx.redis,
        run,
        run.step,
        {"status": "failed", "error": error},
        next_step=None,
        status="failed",
        error=error,
    )


async def record_automation_batch_crash(
    ctx: DeliveryContext, account_id: str, batch_id: str, exc: BaseException
) -> None:
    """Each run of a batch fails on its own (``run_batch``); a crash of the batch itself
    (reading its list) leaves the runs waiting where they are, visible in their status."""
    log.error("automation batch %s/%s crashed: %s", account_id, batch_id, exc)


Crash = Callable[[DeliveryContext, str, str, BaseException], Coroutine[Any, Any, None]]

# What a job that failed on a bug leaves behind, by task: its message failed and
# dead-lettered, its campaign's batch counted failed, its run failed at its step. The same
# recorder serves a job quarantined after killing its worker process (tasks.quarantine).
# A sender crashed mid-round (a bug): its deliveries stay where they were and are made by a
# later job; the endpoint is given a minute before it is tried again, not the next beat.
_WEBHOOK_CRASH_PAUSE_S = 60.0


async def record_webhook_crash(
    ctx: DeliveryContext, account_id: str, endpoint_id: str, exc: BaseException
) -> None:
    from worker.store import webhook_deliveries

    log.error("webhook sender for %s/%s crashed: %r", account_id, endpoint_id, exc)
    await webhook_deliveries.set_work(
        ctx.redis, account_id, endpoint_id, time.time() + _WEBHOOK_CRASH_PAUSE_S
    )


async def record_fanout_crash(
    ctx: DeliveryContext, account_id: str, job_id: str, exc: BaseException
) -> None:
    """The outbox entry it was on stays unacknowledged: the next fan-out job reads it again
    (an unreadable entry is dropped with a log, not crashed on)."""
    log.error("webhook fan-out crashed: %r", exc)


CRASH_RECORDERS: dict[str, Crash] = {
    jobs.WHATSAPP_SEND: record_crash,
    jobs.PUSH_SEND: record_crash,
    jobs.CAMPAIGN_FANOUT: record_walk_crash,
    jobs.CAMPAIGN_PUSH: record_batch_crash,
    jobs.CAMPAIGN_WHATSAPP: record_whatsapp_batch_crash,
    jobs.AUTOMATION_STEP: record_run_crash,
    jobs.AUTOMATION_BATCH: record_automation_batch_crash,
    jobs.WEBHOOK_DELIVER: record_webhook_crash,
    jobs.WEBHOOK_FANOUT: record_fanout_crash,
}


async def record_failed_job(
    ctx: DeliveryContext,
    task_name: str,
    account_id: str,
    job_id: str,
    exc: BaseException,
    on_crash: Crash | None = None,
) -> None:
    """A job (or one message of a batch) that failed on a bug: what it worked on is settled
    by its crash recorder (the task's, unless ``on_crash`` says), and the error goes to the
    account's job errors for `dispatch status`."""
    recorder = on_crash or CRASH_RECORDERS.get(task_name, record_crash)
    await recorder(ctx, account_id, job_id, exc)
    await joberrors.record(ctx.redis, account_id, task_name, job_id, exc)
