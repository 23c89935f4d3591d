"""``dispatch beat``: puts delayed jobs back on the queue when their time comes.

Long retry delays (a provider's ``Retry-After`` of a minute, a rate-limit slot
seconds away) wait in the delayed set in Redis rather than in a worker's memory.
Publishing comes before removal: a beat that dies in between publishes the job
again, and the job's lease makes the second copy a no-op. Running two beats is
safe for the same reason, only wasteful.

It also enrols contacts in the automations their creation or new tags trigger (from the
stream their own script wrote, ``worker.services.triggers``), and sweeps for messages that were
stored but whose job never ran (the API died, or its publish failed, between the two) and
publishes them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import defaultdict
from typing import cast

from redis.asyncio import Redis

from worker.config import Settings
from worker.ids import new_id
from worker.masking import mask_token
from worker.observe import heap, metrics
from worker.outages import is_infrastructure
from worker.services import triggers
from worker.store import (
    accounts,
    delayed,
    joberrors,
    jobs,
    keys,
    messages,
    tokens,
    webhook_deliveries,
)
from worker.store.client import create_redis
from worker.store.jobs import add_job, publish

log = logging.getLogger(__name__)
BATCH = 500
# Runs per automation.batch job: Celery's own cost per job (kombu's bookkeeping, the pool's
# pipes) was most of the bulk worker's CPU at 100.
RUN_BATCH = 500
SWEEP_EVERY_S = 5.0
TOKEN_EXPIRY_EVERY_S = 3600.0


async def pump_once(redis: Redis, now: float) -> int:
    """Publish every job due by ``now`` (up to a batch); returns how many. Automation runs
    whose waits ended together go as batches, a job per ``RUN_BATCH`` runs: a job per run
    cost more in Celery than the step itself."""
    members = await delayed.due(redis, now, BATCH)
    if members:
        runs: dict[str, list[str]] = defaultdict(list)
        async with redis.pipeline(transaction=False) as pipe:
            for item in members:
                parsed = delayed.try_parse(item)
                if parsed is None:
                    await _malformed(redis, "delayed", item)
                    continue  # taken below with the rest: it would never parse
                task, account_id, job_id = parsed
                if task == jobs.AUTOMATION_STEP:
                    runs[account_id].append(job_id)
                else:
                    add_job(pipe, task, account_id, job_id)
            for account_id, run_ids in runs.items():
                for start in range(0, len(run_ids), RUN_BATCH):
                    batch_id = new_id("ab")
                    key = keys.automation_batch(account_id, batch_id)
                    pipe.rpush(key, *run_ids[start : start + RUN_BATCH])
                    pipe.expire(key, 86400)
                    add_job(pipe, jobs.AUTOMATION_BATCH, account_id, batch_id)
            await pipe.execute()
    await delayed.take(redis, now, members)
    return len(members)


# How long an endpoint whose sender was published waits before it is published again, if
# that sender never reports (it died): the sender sets the real next time when it ends.
WEBHOOK_SENDER_HOLD_S = 30.0


async def publish_webhook_fanout(redis: Redis) -> int:
    """A fan-out job when the outbox has events, at most one a second (a job still
    running when the next comes holds the outbox's lease: the next one ends at once)."""
    if not await redis.xlen(keys.webhook_events()):
        return 0
    if not await redis.set(keys.webhook_fanout_published(), "1", nx=True, ex=1):
        return 0
    await publish(redis, jobs.WEBHOOK_FANOUT, "", "outbox")
    return 1


async def publish_webhook_senders(redis: Redis, now: float) -> int:
    """A sender job for each endpoint with deliveries due; returns how many."""
    published = 0
    for member in await webhook_deliveries.claim_due(redis, now, BATCH, WEBHOOK_SENDER_HOLD_S):
        parsed = webhook_deliveries.parse_work_member(member)
        if parsed is None:
            await redis.zrem(keys.webhook_work(), member)
            await _malformed(redis, "webhook_work", member)
            continue
        account, endpoint_id = parsed
        await publish(redis, jobs.WEBHOOK_DELIVER, account, endpoint_id)
        published += 1
    return published


async def _malformed(redis: Redis, where: str, item: str) -> None:
    log.error("beat: dropped a malformed %s entry %r", where, item[:200])
    await joberrors.record(redis, None, f"beat.{where}", item[:200], "malformed entry; dropped")


async def sweep_unstarted(redis: Redis, now: float, older_than_s: float) -> int:
    """Publish again the jobs of messages that no job has touched for ``older_than_s``:
    the API stored them but its publish was lost (a crash or a broker error in between).
    A duplicate job is harmless: the message's lease and state make it a no-op."""
    stale = cast(
        list[str],
        await redis.zrangebyscore(keys.unstarted(), "-inf", now - older_than_s, start=0, num=BATCH),
    )
    published = 0
    for item in stale:
        parsed = delayed.try_parse(item)
        if parsed is None:
            await _malformed(redis, "unstarted", item)
            await redis.zrem(keys.unstarted(), item)
            continue
        task, account_id, message_id = parsed
        message = await messages.load(redis, account_id, message_id)
        if message is None or message.status.is_final or message.attempts:
            await redis.zrem(keys.unstarted(), item)
            continue
        await publish(redis, task, account_id, message_id)
        await redis.zadd(keys.unstarted(), {item: now})  # look again after as long
        published += 1
    return published


async def expire_tokens(redis: Redis, settings: Settings, now: float) -> int:
    """Every account's device tokens idle past ``push_token_max_idle_days``: no longer
    sent to, counted and logged (``token.expired``). Returns how many."""
    max_idle_s = settings.push_token_max_idle_days * 86400
    if not max_idle_s:
        return 0
    count = 0
    for account_id in await accounts.list_accounts(redis):
        for t in await tokens.expire_inactive(redis, account_id, now, max_idle_s):
            metrics.TOKENS_PRUNED.labels(t.platform).inc()
            log.info(
                "token %s of %s expired: no delivery in %g days",
                mask_token(t.token),
                account_id,
                settings.push_token_max_idle_days,
                extra={
                    "event": "token.expired",
                    "account": account_id,
                    "platform": t.platform,
                    "token": mask_token(t.token),
                },
            )
            count += 1
    return count


async def _expire_tokens_hourly(redis: Redis, settings: Settings, stopping: asyncio.Event) -> None:
    """Beside the pump, so a long scan never holds up a due job."""
    while not stopping.is_set():
        try:
            expired = await expire_tokens(redis, settings, time.time())
            if expired:
                log.warning("beat: %d device token(s) idle too long, no longer sent to", expired)
        except Exception as exc:  # a bug here must not stop the beat's other work
            if is_infrastructure(exc):
                log.warning("beat: token expiry skipped, Redis unavailable or full (%s)", exc)
            else:
                log.exception("beat: token expiry failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), TOKEN_EXPIRY_EVERY_S)


async def run(settings: Settings) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    redis = create_redis(settings, max_connections=4)
    heap.freeze_startup()
    log.warning("beat: moving due jobs from the delayed set every %.1fs", settings.beat_interval_s)
    next_sweep = time.monotonic()
    expiry = asyncio.create_task(_expire_tokens_hourly(redis, settings, stopping))
    try:
        while not stopping.is_set():
            try:
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_EVERY_S
                    lost = await sweep_unstarted(redis, time.time(), settings.unstarted_after_s)
                    if lost:
                        log.warning("beat: %d job(s) published again (never picked up)", lost)
                moved = await pump_once(redis, time.time())
                # Contacts created or tagged: the automations their change triggers.
                moved += await triggers.process_contact_events(redis)
                # A job to move events to each endpoint's queue, and a sender for each
                # endpoint due (both run by the webhooks worker, not here: the beat only
                # schedules, at the CPU priority of the sends).
                moved += await publish_webhook_fanout(redis)
                moved += await publish_webhook_senders(redis, time.time())
            except Exception as exc:
                moved = 0
                if is_infrastructure(exc):
                    # Redis away or full: what was due is still in Redis, moved next time.
                    log.warning("beat: Redis unavailable or full (%s); retrying", exc)
                else:
                    # A bug must not stop delayed retries, schedules and enrolments for
                    # every tenant: logged, kept among the job errors, and the beat goes on.
                    log.exception("beat: a round failed; going on")
                    with contextlib.suppress(Exception):
                        await joberrors.record(redis, None, "beat", "round", exc)
            if moved:
                log.info("beat: %d delayed job(s) back on the queue", moved)
            if moved < BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), settings.beat_interval_s)
    finally:
        stopping.set()
        await expiry
        await redis.aclose()
