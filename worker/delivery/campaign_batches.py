"""A campaign's batch jobs: send to a page of its audience, unless it was paused or cancelled.

A push batch is one push message holding all the page's devices, sent by the same
algorithm as a single push (slices, global limits, per-device retries, pruning).
A WhatsApp batch is a list of one message per recipient, each sent as a single
WhatsApp send is, several at once, each taking its slot of the number's limit.

A paused campaign's job parks itself (``resume`` publishes it again); a cancelled
campaign's job ends what it had not sent as cancelled. Both are checked before each
slice or message, so a pause takes effect within a slice's time. A job that has run for
``Settings.campaign_job_run_s`` hands the rest to a fresh job at the same point, so that no batch
(of any size, on however slow a provider) runs into the hard time limit: a job killed
there sends again what it had in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

from worker.delivery.context import BUSY_RETRY_S, DeliveryContext, Outcome, claimed
from worker.delivery.failures import record_crash, record_failed_job
from worker.delivery.fanout import parse_batch_id
from worker.delivery.push import PushRun
from worker.delivery.whatsapp import send_whatsapp
from worker.models import CampaignStatus, MessageStatus
from worker.outages import is_infrastructure
from worker.store import campaigns, jobs, keys, locks, messages

log = logging.getLogger(__name__)

# How often a running batch asks whether its campaign was paused or cancelled.
_STATUS_EVERY_S = 0.5


class _Watch:
    """Whether the job stops here: its campaign no longer sending (the status read at most
    every ``_STATUS_EVERY_S``), or the job past ``Settings.campaign_job_run_s`` since it
    ``started`` (monotonic): counted from the job's start, not from its lease, since waiting
    out a dead holder's lease (up to its time to live) counts towards the time limits too."""

    def __init__(
        self, ctx: DeliveryContext, account_id: str, campaign_id: str, started: float
    ) -> None:
        self.ctx, self.account_id, self.campaign_id = ctx, account_id, campaign_id
        self._at = 0.0
        self._halted = False
        self._deadline = started + ctx.settings.campaign_job_run_s

    async def halted(self) -> bool:
        if time.monotonic() > self._deadline:
            return True  # a fresh job goes on (or parks, or cancels)
        if not self._halted and time.monotonic() - self._at >= _STATUS_EVERY_S:
            self._at = time.monotonic()
            state = await campaigns.status(self.ctx.redis, self.account_id, self.campaign_id)
            self._halted = state is not CampaignStatus.SENDING
        return self._halted


async def send_push_batch(ctx: DeliveryContext, account_id: str, message_id: str) -> Outcome:
    started = time.monotonic()
    async with claimed(ctx, account_id, message_id) as message:
        if isinstance(message, Outcome):
            return message
        campaign_id = message.campaign or parse_batch_id(message_id)[0]
        job = f"{jobs.CAMPAIGN_PUSH} {account_id} {message_id}"
        state = await campaigns.park(ctx.redis, account_id, campaign_id, job)
        run = PushRun(ctx, message, _Watch(ctx, account_id, campaign_id, started).halted)
        if state is CampaignStatus.PAUSED:
            return Outcome(message.status)  # parked: resume publishes it again
        if state is not CampaignStatus.SENDING:
            return await run.cancel()
        return await run.run()


async def send_whatsapp_batch(ctx: DeliveryContext, account_id: str, batch: str) -> Outcome:
    started = time.monotonic()
    campaign_id, number = parse_batch_id(batch)
    lock_key = keys.campaign_lock(account_id, batch)
    async with locks.held(ctx.redis, lock_key, ctx.settings.lease_ttl_s) as token:
        if token is None:
            return Outcome(MessageStatus.QUEUED, BUSY_RETRY_S)
        ids = cast(
            list[str],
            await ctx.redis.lrange(keys.campaign_batch(account_id, campaign_id, number), 0, -1),
        )
        todo = [
            m for m in await messages.load_many(ctx.redis, account_id, ids) if not m.status.is_final
        ]
        if not todo:
            return Outcome(MessageStatus.SENT)
        job = f"{jobs.CAMPAIGN_WHATSAPP} {account_id} {batch}"
        state = await campaigns.park(ctx.redis, account_id, campaign_id, job)
        if state is CampaignStatus.PAUSED:
            return Outcome(MessageStatus.QUEUED)
        if state is not CampaignStatus.SENDING:
            await messages.cancel_many(ctx.redis, todo, campaign_id)
            return Outcome(MessageStatus.FAILED)
        return await _send_all(ctx, account_id, campaign_id, [m.id for m in todo], started)


async def _send_all(
    ctx: DeliveryContext,
    account_id: str,
    campaign_id: str,
    message_ids: list[str],
    started: float,
) -> Outcome:
    """Send each message as a single send is (several at once; the number's rate limit
    paces them); returns when the batch must run again, if it must."""
    watch = _Watch(ctx, account_id, campaign_id, started)
    gate = asyncio.Semaphore(ctx.settings.campaign_whatsapp_in_flight)
    again_in: list[float] = []

    async def one(message_id: str) -> None:
        async with gate:
            if await watch.halted():
                again_in.append(0.0)  # a fresh job goes on (or parks, or cancels)
                return
            try:
                outcome = await send_whatsapp(ctx, account_id, message_id)
            except Exception as exc:
                if is_infrastructure(exc):
                    raise  # the whole batch is given back
                # A bug on one message costs that message, not the batch's others.
                log.exception("campaign %s: message %s crashed", campaign_id, message_id)
                await record_failed_job(
                    ctx, jobs.CAMPAIGN_WHATSAPP, account_id, message_id, exc, record_crash
                )
                return
            if outcome.retry_in_s is not None:
                again_in.append(outcome.retry_in_s)

    # A task group, not gather: when one send raises, the others stop before the batch
    # ends (gather would leave them running on this loop into the next job).
    try:
        async with asyncio.TaskGroup() as group:
            for message_id in message_ids:
                group.create_task(one(message_id))
    except ExceptionGroup as failed:
        # The first failure is the batch's (an outage: the job is given back), as itself.
        raise failed.exceptions[0] from None
    if again_in:
        # The earliest: a message not due yet when the job comes back waits on its own.
        return Outcome(MessageStatus.RETRYING, min(again_in))
    return Outcome(MessageStatus.SENT)
