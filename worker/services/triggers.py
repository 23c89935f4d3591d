"""Enrolling contacts when something happens to them.

``event.tracked`` enrols from the API request itself (each enrolment one atomic script).
Contact creations and new tags are written by the contact's own script to the
``contact_events`` stream when an active automation may want them, and the beat enrols
from there (``process_contact_events``): the trigger is stored with the change, so a crash
between the two cannot lose it. An event read again after a crash enrols nobody twice: its
runs' ids come from the event's id, and enrolment skips a run that exists.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis

from worker.ids import new_id
from worker.models import ACCOUNT_ID_RE
from worker.outages import is_infrastructure
from worker.store import automations, joberrors, keys, streams

log = logging.getLogger(__name__)
_CONSUMER = "beat"


def _matches(trigger: dict[str, Any], facts: dict[str, str]) -> bool:
    return all(facts.get(name) == value for name, value in trigger.get("filters", {}).items())


async def fire(
    redis: Redis,
    account: str,
    trigger: str,
    contact_id: str,
    *,
    facts: dict[str, str] | None = None,
    event: dict[str, Any] | None = None,
    run_id_base: str | None = None,
) -> list[str]:
    """Enrol the contact in every active automation with this trigger whose filters match
    ``facts`` (``{"tag": …}``, ``{"event": …}``); returns the new runs' ids. With
    ``run_id_base`` the run ids are derived from it (the same event, the same runs)."""
    started = []
    for automation in await automations.active_for(redis, account, trigger):
        if not _matches(automation.trigger, facts or {}):
            continue
        if run_id_base is None:
            run_id = new_id("run")
        else:
            run_id = f"run_{run_id_base}{automation.id.removeprefix('aut_')}"
        outcome = await automations.enroll(redis, account, automation.id, contact_id, run_id, event)
        if outcome == "ok":
            started.append(run_id)
            log.info(
                "automation %s: contact enrolled (%s), run %s",
                automation.id,
                trigger,
                run_id,
                extra={"event": "automation.enrolled", "account": account},
            )
    return started


async def process_contact_events(redis: Redis, count: int = 200) -> int:
    """Enrol from the contact-events stream: first what an earlier run of this consumer
    read but did not acknowledge (it died), then new events. Returns how many were done."""
    stream = keys.contact_events()
    handled = 0
    async for entry_id, fields in streams.entries(
        redis, stream, keys.CONTACT_EVENTS_GROUP, _CONSUMER, count
    ):
        try:
            await _one(redis, entry_id, fields)
        except Exception as exc:
            if is_infrastructure(exc):
                raise  # read again once the store is back
            # A bug (or an entry no script of ours wrote): read again, it would fail
            # again, first, every time, and stop every enrolment behind it.
            await _quarantine(redis, entry_id, fields, exc)
        async with redis.pipeline(transaction=True) as pipe:
            streams.done(pipe, stream, keys.CONTACT_EVENTS_GROUP, entry_id)
            await pipe.execute()
        handled += 1
    return handled


async def _quarantine(
    redis: Redis, entry_id: str, fields: dict[str, str], exc: BaseException
) -> None:
    """Log the entry and keep its error among its account's job errors; it is then
    acknowledged like any other."""
    account = fields.get("account")
    if not isinstance(account, str) or not ACCOUNT_ID_RE.match(account):
        account = None
    log.exception(
        "contact event %s could not be processed; skipped",
        entry_id,
        extra={"event": "contact_event.failed", "account": account},
    )
    await joberrors.record(
        redis, account, "contact_events", entry_id, f"{type(exc).__name__}: {exc}"
    )


async def _one(redis: Redis, entry_id: str, fields: dict[str, str]) -> None:
    account, contact_id = fields["account"], fields["contact"]
    base = entry_id.replace("-", "x")
    if fields.get("created") == "1":
        await fire(redis, account, "contact.created", contact_id, run_id_base=f"{base}c")
    for i, tag in enumerate(t for t in fields.get("tags", "").split("\t") if t):
        await fire(
            redis,
            account,
            "contact.tag_added",
            contact_id,
            facts={"tag": tag},
            run_id_base=f"{base}t{i}",
        )
