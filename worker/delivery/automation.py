"""Running an automation: ``automation.step`` advances one run as far as it can go now.

The run's state is in Redis (``worker.store.automations``); a job carries only the
account and the run id (or a batch of runs whose waits ended together). The steps Redis
can do by itself (waits, tags, the end) run in one script for a whole batch
(``automation_advance.lua``); a run stops there at the first step that needs the worker
(a send, a condition, a webhook, a field), which the job executes under the run's lease,
records, and hands back to the script, until the run waits (its next job goes into the
delayed set, which ``dispatch beat`` pumps), needs to look again later, or ends.

Each step takes effect once. A send step's message id is derived from the run and the
step: a job redelivered after a crash finds the message already there and does not
create another, and the message itself goes through the normal send path (its own
lease, retries, rate limits, dead letters). Tags and fields are idempotent; a webhook
is retried with the same ``Idempotency-Key`` header, for the receiver to deduplicate.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from typing import Any

from worker.codes import Code
from worker.delivery import render
from worker.delivery.context import BUSY_RETRY_S, DeliveryContext, Outcome
from worker.delivery.failures import record_run_crash
from worker.models import MARKETING, Channel, MessageStatus, locales, timing
from worker.models.timing import QuietHours
from worker.observe import metrics
from worker.outages import is_infrastructure
from worker.providers.outbound import OutboundError
from worker.store import (
    account_settings,
    automations,
    caps,
    contacts,
    delayed,
    jobs,
    keys,
    locks,
    messages,
    preferences,
    push,
    sends,
    templates,
)
from worker.store.automations import Run
from worker.store.client import hgetall_str

log = logging.getLogger(__name__)

# How often a condition on a send still in flight looks again, and for how long.
_PENDING_RECHECK_S = 2.0
_WEBHOOK_ATTEMPTS = 5
_STEPS_PER_JOB = 50  # a safety net against a definition that never waits


def step_message_id(run_id: str, index: int) -> str:
    """The message a send step makes: the same for every execution of that step."""
    return f"msg_{run_id.removeprefix('run_')}s{index}"


# Runs of a batch handed over to the worker (sends, conditions…) advanced at once: their
# Redis round trips overlap.
_BATCH_CONCURRENCY = 32
_RUNS_PER_SCRIPT = 100


async def run_batch(ctx: DeliveryContext, account: str, batch_id: str) -> Outcome:
    """``automation.batch``: the runs whose waits ended together (listed by the beat).
    A run that needs to come back later (its lease busy, a condition on a send still in
    flight, a webhook to retry) goes back to the delayed set on its own."""
    key = keys.automation_batch(account, batch_id)
    run_ids = [str(r) for r in await ctx.redis.lrange(key, 0, -1)]
    comeback = await advance_runs(ctx, account, run_ids)
    if comeback:
        now = time.time()
        await ctx.redis.zadd(
            keys.delayed(),
            {
                delayed.member(jobs.AUTOMATION_STEP, account, run_id): now + retry_in_s
                for run_id, retry_in_s in comeback.items()
            },
        )
    await ctx.redis.delete(key)
    return Outcome(MessageStatus.SENT)


async def run_automation(ctx: DeliveryContext, account: str, run_id: str) -> Outcome:
    """``automation.step``: one run (its first step, or a run that came back)."""
    retry_in_s = (await advance_runs(ctx, account, [run_id])).get(run_id)
    if retry_in_s is None:
        return Outcome(MessageStatus.SENT)
    return Outcome(MessageStatus.QUEUED, retry_in_s)


async def advance_runs(ctx: DeliveryContext, account: str, run_ids: list[str]) -> dict[str, float]:
    """Advance each run as far as it can go now; returns the runs to come back to, with the
    delay. Redis runs the steps it can by itself for all of them in one call (waits, tags:
    a hundred runs whose waits ended cost one round trip); the worker executes the rest
    (sends, conditions, webhooks) one run at a time under its lease."""
    handed_over: dict[str, int] = {}
    comeback: dict[str, float] = {}
    # A hundred runs per script call: Redis does nothing else while a script runs (~4 ms).
    for start in range(0, len(run_ids), _RUNS_PER_SCRIPT):
        chunk = run_ids[start : start + _RUNS_PER_SCRIPT]
        advanced = await _advance_simple(ctx, account, chunk, None)
        handed_over.update(advanced.handed_over)
        comeback.update(dict.fromkeys(advanced.later, BUSY_RETRY_S))
    gate = asyncio.Semaphore(_BATCH_CONCURRENCY)

    async def one(run_id: str, index: int) -> None:
        async with gate:
            try:
                retry_in_s = await _advance_handed_over(ctx, account, run_id, index)
            except Exception as exc:
                if is_infrastructure(exc):
                    raise  # the job is given back and done again: each step is idempotent
                log.exception("automation run %s crashed", run_id)
                await record_run_crash(ctx, account, run_id, exc)
                return
            if retry_in_s is not None:
                comeback[run_id] = retry_in_s

    await asyncio.gather(*(one(r, i) for r, i in handed_over.items()))
    return comeback


async def _advance_simple(
    ctx: DeliveryContext, account: str, run_ids: list[str], token: str | None
) -> automations.Advanced:
    advanced = await automations.advance(
        ctx.redis, account, run_ids, token, max_steps=_STEPS_PER_JOB
    )
    by_outcome = Counter((kind, state) for _, _, kind, state in advanced.steps)
    for (kind, state), n in by_outcome.items():
        metrics.AUTOMATION_STEPS.labels(kind, state).inc(n)
    if log.isEnabledFor(logging.INFO):
        for run_id, index, kind, state in advanced.steps:
            _log_step(account, run_id, index, kind, state)
    for run_id, problem in advanced.broken.items():
        log.error("automation run %s: %s", run_id, problem)
        await record_run_crash(ctx, account, run_id, RuntimeError(problem))
    return advanced


def _log_step(account: str, run_id: str, index: int, kind: str, state: str) -> None:
    log.info(
        "automation run %s step %d (%s): %s",
        run_id,
        index,
        kind,
        state,
        extra={"event": "automation.step", "account": account, "outcome": state},
    )


async def _advance_handed_over(
    ctx: DeliveryContext, account: str, run_id: str, index: int
) -> float | None:
    """Under the run's lease: execute step ``index`` (one Redis could not do), then let
    Redis go on, and so on until the run waits or ends. Returns when to come back."""
    lock_key = keys.run_lock(account, run_id)
    # The lease and the run in one round trip: read after the SET in the same pipeline, the
    # run is as the previous holder left it (only a holder writes it).
    token, run = await automations.lease_and_load(
        ctx.redis, account, run_id, lock_key, ctx.settings.lease_ttl_s
    )
    if token is None:
        return BUSY_RETRY_S
    async with locks.kept(ctx.redis, lock_key, token, ctx.settings.lease_ttl_s):
        for _ in range(_STEPS_PER_JOB):
            if run is None or run.status in automations.RUN_FINAL:
                return None
            definition = await _definition(ctx, account, run.automation, run.version)
            steps: list[dict[str, Any]] = definition["steps"] if definition else []
            # The run may have moved since it was handed over (another job): then only
            # the script looks at it again. (A run handed over while "waiting" waited at a
            # send step for quiet hours to end: the script ends time waits itself.)
            if run.status in ("active", "waiting") and run.step == index < len(steps):
                outcome = await _execute(ctx, run, index, steps[index], len(steps))
                if outcome is not None:
                    return outcome.retry_in_s
                if run.status in automations.RUN_FINAL:
                    return None
            advanced = await _advance_simple(ctx, account, [run_id], token)
            if run_id not in advanced.handed_over:
                return BUSY_RETRY_S if run_id in advanced.later else None
            index = advanced.handed_over[run_id]
            run = await automations.load_run(ctx.redis, account, run_id)
        return BUSY_RETRY_S  # many steps without a wait: go on in a new job


# A version never changes once stored: each worker process keeps the ones it has read.
_definitions: dict[tuple[str, str, int], dict[str, Any]] = {}
_DEFINITIONS_MAX = 1000


async def _definition(
    ctx: DeliveryContext, account: str, automation_id: str, version: int
) -> dict[str, Any] | None:
    cache_key = (account, automation_id, version)
    found = _definitions.get(cache_key)
    if found is None:
        found = await automations.definition(ctx.redis, account, automation_id, version)
        if found is not None:
            if len(_definitions) >= _DEFINITIONS_MAX:
                _definitions.clear()
            _definitions[cache_key] = found
    return found


def _after(index: int, n_steps: int) -> tuple[int | None, str]:
    """Where a run goes after step ``index``: the next step, or the end (done)."""
    return (index + 1, "active") if index + 1 < n_steps else (None, "done")


async def _execute(
    ctx: DeliveryContext, run: Run, index: int, step: dict[str, Any], n_steps: int
) -> Outcome | None:
    """Run step ``index`` (one the script hands over); None when the run moved on (or
    ended) and can continue now."""
    kind = step["type"]
    if kind == "wait":
        return await _wait_until(ctx, run, index, step)
    if kind == "condition":
        return await _condition(ctx, run, index, step, n_steps)
    try:
        if kind in ("send_whatsapp", "send_push"):
            held = await _audience(ctx, run, index, step)
            if isinstance(held, Outcome):
                return held
            if held is not None:
                result = held
            elif kind == "send_whatsapp":
                result = await _send_whatsapp(ctx, run, index, step)
            else:
                result = await _send_push(ctx, run, index, step)
        elif kind == "update_field":
            result = await _update_field(ctx, run, step)
        elif kind == "webhook":
            webhook = await _webhook(ctx, run, index, step)
            if isinstance(webhook, Outcome):
                return webhook
            result = webhook
        else:  # pragma: no cover - the script does the other types
            result = {"status": "failed", "error": f"unknown step type {kind}"}
    except render.MissingField as missing:
        result = {"status": "failed", "error": f"missing field {missing.name}"}
    next_step, status = _after(index, n_steps)
    await automations.record_step(ctx.redis, run, index, result, next_step=next_step, status=status)
    metrics.AUTOMATION_STEPS.labels(kind, result["status"]).inc()
    _log_step(run.account, run.id, index, kind, result["status"])
    return None


# --- audience control (docs/audience.md) ------------------------------------------------


async def _audience(
    ctx: DeliveryContext, run: Run, index: int, step: dict[str, Any]
) -> Outcome | dict[str, Any] | None:
    """What the account's audience rules make of a send step, unless it is transactional:
    a contact opted out of it → the step is ``skipped`` (``opted_out``) and the run goes
    on; inside quiet hours → the run waits at this step for the window's end; over the
    frequency cap → ``skipped`` (``frequency_cap``), counted with the campaigns' sends, or
    with the account's ``over_cap: defer`` the run waits for the cap's next window.
    None: send."""
    consent = preferences.consent_category(step.get("category", MARKETING))
    if not consent:
        return None
    now = time.time()
    if run.status == "waiting" and run.due_at is not None and run.due_at > now + 0.5:
        return Outcome(MessageStatus.QUEUED)  # a copy of its job that came early
    if await messages.load(ctx.redis, run.account, step_message_id(run.id, index)) is not None:
        return None  # sent by an earlier execution: the send step records it
    channel = "whatsapp" if step["type"] == "send_whatsapp" else "push"
    raw = await hgetall_str(ctx.redis, keys.contact(run.account, run.contact))
    stopped = channel == "whatsapp" and bool(
        await preferences.number_opt_outs(ctx.redis, run.account, [raw.get("phone", "")])
    )
    refusal = preferences.opted_out(raw, channel, consent, stopped)
    if refusal is not None:
        return {"status": "skipped", "reason": "opted_out", "opted_out": refusal}
    settings = await account_settings.load_cached(ctx.redis, run.account)
    own = step.get("quiet_hours")
    window = settings.quiet_window(QuietHours.model_validate(own) if own else own)
    if window is not None:
        zone = timing.contact_zone(raw.get(timing.TIMEZONE_FIELD), window.zone)
        end = window.end_of(now, zone)
        if end is not None:
            return await _hold(ctx, run, index, step, end, "quiet_hours")
    cap = (await caps.load(ctx.redis, run.account)).get(channel)
    if cap is not None:
        sender = f"{run.id}:{index}"
        if not await caps.take(ctx.redis, run.account, channel, cap, sender, [run.contact]):
            if not settings.defer_over_cap:
                return {"status": "skipped", "reason": "frequency_cap"}
            # The account defers: the run waits for the cap's next window and tries again.
            next_window = (cap.window_of(now) + 1) * cap.window_s
            return await _hold(ctx, run, index, step, next_window, "frequency_cap")
    return None


async def _hold(
    ctx: DeliveryContext, run: Run, index: int, step: dict[str, Any], until: float, reason: str
) -> Outcome:
    """The run waits at send step ``index`` until ``until`` (for ``reason``), then executes
    the step again."""
    await automations.record_step(
        ctx.redis,
        run,
        index,
        {"status": "waiting", "until": until, "reason": reason},
        next_step=index,
        status="waiting",
        due_at=until,
    )
    metrics.AUTOMATION_STEPS.labels(step["type"], "waiting").inc()
    return Outcome(MessageStatus.QUEUED)


# --- the values placeholders draw from ---------------------------------------------------


async def _values(ctx: DeliveryContext, run: Run) -> tuple[dict[str, str], dict[str, str]]:
    """(placeholder values: ``contact.*`` and ``event.*``, the contact's raw hash)."""
    raw = await hgetall_str(ctx.redis, keys.contact(run.account, run.contact))
    values = {f"contact.{k}": v for k, v in render.fields_of(raw).items()}
    for name, value in run.event.get("properties", {}).items():
        values[f"event.{name}"] = value if isinstance(value, str) else json.dumps(value)
    if "event" in run.event:
        values["event.name"] = str(run.event["event"])
    return values, raw


# --- sends ---------------------------------------------------------------------------------


async def _send_whatsapp(
    ctx: DeliveryContext, run: Run, index: int, step: dict[str, Any]
) -> dict[str, Any]:
    message_id = step_message_id(run.id, index)
    if await messages.load(ctx.redis, run.account, message_id) is not None:
        return {"status": "done", "message_id": message_id}  # made by an earlier execution
    values, raw = await _values(ctx, run)
    phone = raw.get("phone")
    if not phone:
        return {
            "status": "failed",
            "error": "the contact has no phone number",
            "code": Code.NO_PHONE,
        }
    attempts: list[tuple[str | None, list[str], str | None]] = []
    if step.get("template_name"):
        attempts.append((step["template_name"], step.get("parameters", []), None))
    else:
        attempts.append((None, [], step["text"]))
        if step.get("fallback_template"):
            attempts.append((step["fallback_template"], step.get("fallback_parameters", []), None))
    problem = "refused"
    locale = locales.stored_locale(raw.get(locales.LOCALE_FIELD))
    for template, parameters, text in attempts:
        language = step.get("language")
        if template and not language:
            # Only the template named: the contact's locale picks (else the default, en).
            synced = await templates.approved_languages(ctx.redis, run.account, template)
            language = locales.pick(locale, synced) or locales.DEFAULTS[0]
        message = messages.new(
            run.account,
            Channel.WHATSAPP,
            message_id,
            to=phone,
            contact_id=run.contact,
            template_name=template,
            language=language if template else None,
            parameters=[render.render(p, values) for p in parameters],
            text=render.render(text, values) if text else None,
        )
        refused = await sends.accept_whatsapp(
            ctx.redis,
            message,
            ctx.message_ttl_s,
            key_hash=None,
            window_phone=phone if template is None else None,
        )
        if refused is None:
            return {"status": "done", "message_id": message_id, "template": template}
        problem = refused.problem
    return {"status": "failed", "error": f"not sent: {problem}", "code": problem}


async def _send_push(
    ctx: DeliveryContext, run: Run, index: int, step: dict[str, Any]
) -> dict[str, Any]:
    message_id = step_message_id(run.id, index)
    if await messages.load(ctx.redis, run.account, message_id) is not None:
        return {"status": "done", "message_id": message_id}
    members = await contacts.active_tokens(ctx.redis, run.account, run.contact)
    if not members:
        return {"status": "failed", "error": "the contact has no push token", "code": Code.NO_TOKEN}
    values, _ = await _values(ctx, run)
    message = messages.new(
        run.account,
        Channel.PUSH,
        message_id,
        contact_id=run.contact,
        title=render.render(step["title"], values),
        text=render.render(step["message"], values),
        url=render.render(step["url"], values) if step.get("url") else None,
        data=render.render_data(step.get("data"), values),
        device_count=len(members),
    )
    await push.create_push(ctx.redis, message, members, ctx.message_ttl_s, publish=True)
    return {"status": "done", "message_id": message_id}


# --- waits and conditions ------------------------------------------------------------------


async def _wait_until(ctx: DeliveryContext, run: Run, index: int, step: dict[str, Any]) -> Outcome:
    """A wait until a time of day (a wait in seconds, and the end of every wait, the
    script does): the run parks in the delayed set until then."""
    due_at = await _next_time_of_day(ctx, run, step, time.time())
    await automations.record_step(
        ctx.redis,
        run,
        index,
        {"status": "waiting", "until": due_at},
        next_step=index,
        status="waiting",
        due_at=due_at,
    )
    metrics.AUTOMATION_STEPS.labels("wait", "waiting").inc()
    return Outcome(MessageStatus.QUEUED)


async def _next_time_of_day(
    ctx: DeliveryContext, run: Run, step: dict[str, Any], now: float
) -> float:
    """In the contact's time zone (its ``timezone`` attribute) if it names a real one,
    else the step's, else UTC."""
    stored = await ctx.redis.hget(keys.contact(run.account, run.contact), timing.TIMEZONE_FIELD)
    default = timing.zone_named(step.get("timezone") or "UTC") or timing.zone_named("UTC")
    assert default is not None
    zone = timing.contact_zone(stored.decode() if isinstance(stored, bytes) else stored, default)
    return timing.next_time_of_day(now, step["until"], zone)


async def _condition(
    ctx: DeliveryContext, run: Run, index: int, step: dict[str, Any], n_steps: int
) -> Outcome | None:
    check = step["if"]
    if "step" in check and check["step"] is not None:
        earlier = run.steps.get(int(check["step"]), {})
        message_id = earlier.get("message_id")
        if earlier.get("status") == "failed" or message_id is None:
            outcome = "failed"
        else:
            message = await messages.load(ctx.redis, run.account, message_id)
            if (
                message is None
                or message.status is MessageStatus.FAILED
                or message.delivery_status == "failed"  # accepted, then reported undeliverable
            ):
                outcome = "failed"
            elif message.status is MessageStatus.SENT:  # accepted, no failure reported
                outcome = "delivered"
            else:
                return Outcome(MessageStatus.QUEUED, _PENDING_RECHECK_S)  # still in flight
        holds = outcome == check["outcome"]
    elif "tag" in check and check["tag"] is not None:
        holds = bool(
            await ctx.redis.sismember(keys.contact_tags(run.account, run.contact), check["tag"])
        )
    else:
        raw = await hgetall_str(ctx.redis, keys.contact(run.account, run.contact))
        value = render.fields_of(raw).get(check["field"])
        expected = check.get("equals")
        holds = value == expected if expected is not None else bool(value)
    target = step.get("then", "next") if holds else step.get("else", "end")
    result = {"status": "done", "holds": holds}
    metrics.AUTOMATION_STEPS.labels("condition", "done").inc()
    if target == "end":
        await automations.record_step(ctx.redis, run, index, result, next_step=None, status="done")
        return None
    if target == "next":
        next_step, status = _after(index, n_steps)
    else:
        next_step, status = int(target), "active"
    await automations.record_step(ctx.redis, run, index, result, next_step=next_step, status=status)
    return None


# --- contact changes and webhooks -------------------------------------------------------------


async def _update_field(ctx: DeliveryContext, run: Run, step: dict[str, Any]) -> dict[str, Any]:
    values, _ = await _values(ctx, run)
    value = render.render(step["value"], values) if step.get("value") is not None else None
    await contacts.set_field(ctx.redis, run.account, run.contact, step["field"], value)
    return {"status": "done", "field": step["field"]}


async def _webhook(
    ctx: DeliveryContext, run: Run, index: int, step: dict[str, Any]
) -> dict[str, Any] | Outcome:
    values, _ = await _values(ctx, run)
    body = json.dumps(
        {
            "run_id": run.id,
            "automation_id": run.automation,
            "step": index,
            "contact_id": run.contact,
            "event": run.event or None,
            "data": render.render_data(step.get("body"), values),
        },
        separators=(",", ":"),
    ).encode()
    signature = hmac.new(step["secret"].encode(), body, hashlib.sha256).hexdigest()
    attempts = int(run.steps.get(index, {}).get("attempts", 0)) + 1
    try:
        reply = await ctx.outbound.post(
            step["url"],
            body,
            {
                "Content-Type": "application/json",
                "X-Dispatch-Signature": f"sha256={signature}",
                "Idempotency-Key": f"{run.id}:{index}",
            },
        )
        if reply.status < 300:
            return {"status": "done", "http_status": reply.status, "attempts": attempts}
        # A redirect is not followed: the URL is the one the tenant gave.
        error = f"HTTP {reply.status}"
        retryable = reply.status >= 500 or reply.status == 429
    except OutboundError as exc:
        # Refused (a private address) or out of time: this attempt failed, nothing else.
        error, retryable = exc.reason, exc.retryable
    if retryable and attempts < _WEBHOOK_ATTEMPTS:
        # Remember the attempt (the step stays current), and come back with backoff.
        await ctx.redis.hset(
            keys.run_steps(run.account, run.id),
            str(index),
            json.dumps({"status": "retrying", "attempts": attempts, "error": error}),
        )
        return Outcome(MessageStatus.RETRYING, min(60.0, 2.0**attempts))
    return {"status": "failed", "error": error, "attempts": attempts}
