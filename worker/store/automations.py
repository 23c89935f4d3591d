"""Automations and their runs in Redis.

An automation's definition is versioned: each edit stores a new version, and a run keeps
the version it started with. A run is durable state (current step, status, what each step
did), not a sleeping task: a wait is a member of the delayed set, like a retry.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from redis.asyncio import Redis

from worker.models.automations import AutomationCreate, Wait
from worker.store import delayed, keys, scripts
from worker.store.client import hgetall_str
from worker.store.jobs import AUTOMATION_STEP, job_payload, queue_for

RUN_FINAL = ("done", "failed", "cancelled")


@dataclass
class Automation:
    id: str
    account: str
    name: str
    active: bool
    allow_reentry: bool
    version: int
    definition: dict[str, Any]  # {"trigger": …, "steps": […]} as stored
    created_at: float
    updated_at: float

    @property
    def trigger(self) -> dict[str, Any]:
        trigger: dict[str, Any] = self.definition["trigger"]
        return trigger

    @property
    def steps(self) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = self.definition["steps"]
        return steps


@dataclass
class Run:
    id: str
    account: str
    automation: str
    version: int
    contact: str
    step: int
    status: str  # active | waiting | done | failed | cancelled
    event: dict[str, Any]
    created_at: float
    updated_at: float
    due_at: float | None = None
    error: str | None = None
    steps: dict[int, dict[str, Any]] = field(default_factory=dict)


def _first_wait_s(body: AutomationCreate) -> str:
    """Seconds of the first step if it is a wait in seconds (enrolment parks the run at
    once, without a job), else 0."""
    first = body.steps[0]
    return repr(first.seconds) if isinstance(first, Wait) and first.seconds else "0"


def _definition(body: AutomationCreate) -> dict[str, Any]:
    return {
        "trigger": body.trigger.model_dump(mode="json"),
        "steps": [s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in body.steps],
    }


def _automation(account: str, raw: dict[str, str]) -> Automation:
    return Automation(
        id=raw["id"],
        account=account,
        name=raw["name"],
        active=raw.get("active") == "1",
        allow_reentry=raw.get("allow_reentry") == "1",
        version=int(raw["version"]),
        definition=json.loads(raw["definition"]),
        created_at=float(raw["created_at"]),
        updated_at=float(raw["updated_at"]),
    )


async def create(redis: Redis, account: str, automation_id: str, body: AutomationCreate) -> None:
    now = time.time()
    definition = json.dumps(_definition(body))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.automation(account, automation_id),
            mapping={
                "id": automation_id,
                "name": body.name,
                "active": "0",
                "allow_reentry": "1" if body.allow_reentry else "0",
                "version": "1",
                "first_wait_s": _first_wait_s(body),
                "definition": definition,
                "created_at": repr(now),
                "updated_at": repr(now),
            },
        )
        pipe.set(keys.automation_version(account, automation_id, 1), definition)
        pipe.zadd(keys.automations(account), {automation_id: now})
        await pipe.execute()


async def load(redis: Redis, account: str, automation_id: str) -> Automation | None:
    raw = await hgetall_str(redis, keys.automation(account, automation_id))
    return _automation(account, raw) if raw else None


async def page(redis: Redis, account: str, page_: int, limit: int) -> tuple[list[Automation], int]:
    start = (page_ - 1) * limit
    ids = [
        str(i) for i in await redis.zrevrange(keys.automations(account), start, start + limit - 1)
    ]
    total = int(await redis.zcard(keys.automations(account)))
    return await _load_many(redis, account, ids), total


async def _load_many(redis: Redis, account: str, ids: list[str]) -> list[Automation]:
    """The automations of ``ids`` that exist, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for automation_id in ids:
            pipe.hgetall(keys.automation(account, automation_id))
        raws = await pipe.execute()
    return [_automation(account, r) for r in raws if r]


async def update(redis: Redis, automation: Automation, body: AutomationCreate) -> Automation:
    """A new version; runs in flight keep theirs. The trigger index follows the trigger."""
    account, automation_id = automation.account, automation.id
    version = automation.version + 1
    definition = json.dumps(_definition(body))
    old_trigger, new_trigger = automation.trigger["type"], body.trigger.type
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.automation(account, automation_id),
            mapping={
                "name": body.name,
                "allow_reentry": "1" if body.allow_reentry else "0",
                "version": str(version),
                "first_wait_s": _first_wait_s(body),
                "definition": definition,
                "updated_at": repr(time.time()),
            },
        )
        pipe.set(keys.automation_version(account, automation_id, version), definition)
        if automation.active and old_trigger != new_trigger:
            pipe.srem(keys.automation_triggers(account, old_trigger), automation_id)
            pipe.sadd(keys.automation_triggers(account, new_trigger), automation_id)
        await pipe.execute()
    loaded = await load(redis, account, automation_id)
    assert loaded is not None
    return loaded


async def set_active(redis: Redis, automation: Automation, active: bool) -> None:
    trigger_key = keys.automation_triggers(automation.account, automation.trigger["type"])
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.automation(automation.account, automation.id),
            mapping={"active": "1" if active else "0", "updated_at": repr(time.time())},
        )
        if active:
            pipe.sadd(trigger_key, automation.id)
        else:
            pipe.srem(trigger_key, automation.id)
        await pipe.execute()


async def delete(redis: Redis, automation: Automation) -> None:
    """The automation goes, its waiting runs are cancelled (their history stays until
    it expires with the runs' keys)."""
    await cancel_runs(redis, automation)
    account, automation_id = automation.account, automation.id
    async with redis.pipeline(transaction=True) as pipe:
        pipe.srem(keys.automation_triggers(account, automation.trigger["type"]), automation_id)
        pipe.zrem(keys.automations(account), automation_id)
        pipe.delete(
            keys.automation(account, automation_id),
            keys.automation_enrolled(account, automation_id),
            keys.automation_counts(account, automation_id),
        )
        await pipe.execute()


async def active_for(redis: Redis, account: str, trigger: str) -> list[Automation]:
    ids = sorted(str(i) for i in await redis.smembers(keys.automation_triggers(account, trigger)))
    return [a for a in await _load_many(redis, account, ids) if a.active]


async def definition(
    redis: Redis, account: str, automation_id: str, version: int
) -> dict[str, Any] | None:
    raw = await redis.get(keys.automation_version(account, automation_id, version))
    return json.loads(raw) if raw else None


async def _members(redis: Redis, key: str, *, newest_first: bool = False) -> list[str]:
    raw = await (redis.zrevrange(key, 0, -1) if newest_first else redis.zrange(key, 0, -1))
    return [str(i) for i in raw]


# --- runs ----------------------------------------------------------------------------------


# A parked first step's record; the script fills in the due time.
_PARKED = json.dumps({"status": "waiting", "until": 0.0}).replace("0.0", "%s")


def _enroll_call(
    account: str, automation_id: str, contact_id: str, run_id: str, now: str, event_json: str
) -> tuple[dict[str, str], dict[str, str]]:
    queue = queue_for(AUTOMATION_STEP)
    return (
        {
            "automation": keys.automation(account, automation_id),
            "enrolled": keys.automation_enrolled(account, automation_id),
            "run": keys.run(account, run_id),
            "runs": keys.automation_runs(account, automation_id),
            "counts": keys.automation_counts(account, automation_id),
            "queue": queue,
            "run_steps": keys.run_steps(account, run_id),
            "delayed": keys.delayed(),
        },
        {
            "contact_id": contact_id,
            "run_id": run_id,
            "now": now,
            "job": job_payload(AUTOMATION_STEP, account, run_id, queue),
            "event": event_json,
            "automation_id": automation_id,
            "delayed_member": delayed.member(AUTOMATION_STEP, account, run_id),
            "parked_record": _PARKED,
        },
    )


async def enroll(
    redis: Redis,
    account: str,
    automation_id: str,
    contact_id: str,
    run_id: str,
    event: dict[str, Any] | None = None,
) -> str:
    """ "ok", or why not: not_found, inactive, already_enrolled. The run and its first job
    (or its place in the delayed set, when it starts with a wait) are stored in one step."""
    script_keys, args = _enroll_call(
        account, automation_id, contact_id, run_id, repr(time.time()), json.dumps(event or {})
    )
    reply = await scripts.AUTOMATION_ENROLL.run(redis, keys=script_keys, args=args)
    return str(reply[0])


async def enroll_many(
    redis: Redis,
    account: str,
    automation_id: str,
    enrolments: list[tuple[str, str]],
    event: dict[str, Any] | None = None,
) -> list[str]:
    """``enroll`` for many (contact id, run id) pairs in one round trip (each atomic on its
    own): a segment enrolled at once, a bench."""
    sha = await scripts.AUTOMATION_ENROLL.load(redis)
    now, event_json = repr(time.time()), json.dumps(event or {})
    async with redis.pipeline(transaction=False) as pipe:
        for contact_id, run_id in enrolments:
            script_keys, args = _enroll_call(
                account, automation_id, contact_id, run_id, now, event_json
            )
            scripts.AUTOMATION_ENROLL.queue(pipe, keys=script_keys, args=args, sha=sha)
        replies = await pipe.execute()
    return [str(r[0]) for r in replies]


def _run(account: str, raw: dict[str, str], steps: dict[str, str]) -> Run:
    return Run(
        id=raw["id"],
        account=account,
        automation=raw["automation"],
        version=int(raw["version"]),
        contact=raw["contact"],
        step=int(raw["step"]),
        status=raw["status"],
        event=json.loads(raw.get("event") or "{}"),
        created_at=float(raw["created_at"]),
        updated_at=float(raw["updated_at"]),
        due_at=float(raw["due_at"]) if raw.get("due_at") else None,
        error=raw.get("error") or None,
        steps={int(k): json.loads(v) for k, v in steps.items()},
    )


async def lease_and_load(
    redis: Redis, account: str, run_id: str, lock_key: str, lease_s: float
) -> tuple[str | None, Run | None]:
    """Take the run's lease and read the run in one round trip: (the lease's token, or
    None when another job holds it; the run as it stands)."""
    token = secrets.token_hex(8)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(lock_key, token, nx=True, px=int(lease_s * 1000))
        pipe.hgetall(keys.run(account, run_id))
        pipe.hgetall(keys.run_steps(account, run_id))
        acquired, raw, steps = await pipe.execute()
    if not acquired:
        return None, None
    return token, (_run(account, raw, steps) if raw else None)


async def load_run(redis: Redis, account: str, run_id: str) -> Run | None:
    found = await _load_runs(redis, account, [run_id])
    return found[0] if found else None


async def runs_page(
    redis: Redis, account: str, automation_id: str, status: str | None, page_: int, limit: int
) -> tuple[list[Run], int]:
    """Newest first. Without ``status`` only the page is read; with it, the automation's
    runs are scanned (pipelined, a thousand at a time) and filtered."""
    key = keys.automation_runs(account, automation_id)
    start = (page_ - 1) * limit
    if status is None:
        ids = [str(i) for i in await redis.zrevrange(key, start, start + limit - 1)]
        return await _load_runs(redis, account, ids), int(await redis.zcard(key))
    page_ids: list[str] = []
    total = 0
    ids = await _members(redis, key, newest_first=True)
    for chunk in range(0, len(ids), 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for run_id in ids[chunk : chunk + 1000]:
                pipe.hget(keys.run(account, run_id), "status")
            statuses = await pipe.execute()
        for run_id, run_status in zip(ids[chunk : chunk + 1000], statuses, strict=True):
            if run_status == status:
                if start <= total < start + limit:
                    page_ids.append(run_id)
                total += 1
    return await _load_runs(redis, account, page_ids), total


async def _load_runs(redis: Redis, account: str, ids: list[str]) -> list[Run]:
    """A page of runs in one round trip (not one per run)."""
    async with redis.pipeline(transaction=False) as pipe:
        for run_id in ids:
            pipe.hgetall(keys.run(account, run_id))
            pipe.hgetall(keys.run_steps(account, run_id))
        replies = await pipe.execute()
    return [
        _run(account, raw, steps)
        for raw, steps in zip(replies[::2], replies[1::2], strict=True)
        if raw
    ]


async def step_counts(redis: Redis, account: str, automation_id: str) -> dict[int, dict[str, int]]:
    raw = await hgetall_str(redis, keys.automation_counts(account, automation_id))
    out: dict[int, dict[str, int]] = {}
    for name, n in raw.items():
        index, _, state = name.partition(":")
        out.setdefault(int(index), {"waiting": 0, "done": 0, "failed": 0})[state] = int(n)
    return out


@lru_cache(maxsize=1024)
def _templates(account: str) -> tuple[str, ...]:
    """The key names the automation scripts build, with ``%s`` for the ids (the account's
    own part escaped, should it hold a ``%``)."""
    hole = "\0"

    def template(name: str) -> str:
        return name.replace("%", "%%").replace(hole, "%s")

    return tuple(
        template(name)
        for name in (
            keys.run(account, hole),
            keys.run_steps(account, hole),
            keys.run_lock(account, hole),
            keys.automation_counts(account, hole),
            keys.automation_version(account, hole, hole),
            keys.contact_tags(account, hole),
            keys.tag_members(account, hole),
            delayed.member(AUTOMATION_STEP, account, hole),
        )
    )


def _lib_args(account: str, now: float) -> dict[str, str]:
    """The arguments of automation_lib.lua, which the advance and record scripts share."""
    run, steps, lock, counts, definition, tags, tag_members, member = _templates(account)
    return {
        "now": repr(now),
        "run_key": run,
        "steps_key": steps,
        "lock_key": lock,
        "counts_key": counts,
        "definition_key": definition,
        "tags_key": tags,
        "tag_members_key": tag_members,
        "delayed_member": member,
        "contact_events": keys.contact_events(),
        "tag_triggers": keys.automation_triggers(account, "contact.tag_added"),
        "account": account,
        "outbox": keys.webhook_events(),
        "webhook_accounts": keys.webhook_accounts(),
    }


async def record_step(
    redis: Redis,
    run: Run,
    index: int,
    result: dict[str, Any],
    *,
    next_step: int | None,
    status: str,
    due_at: float | None = None,
    error: str | None = None,
) -> None:
    """Step ``index`` is over (``result["status"]`` done | failed | waiting); the run moves
    to ``next_step`` (None: it ends with ``status``) — atomically, by the same script code
    that records the steps Redis runs itself (``advance``)."""
    now = time.time()
    await scripts.AUTOMATION_RECORD.run(
        redis,
        keys={"delayed": keys.delayed()},
        args={
            **_lib_args(run.account, now),
            "run_id": run.id,
            "automation_id": run.automation,
            "step_index": index,
            "record_status": result["status"],
            "record": json.dumps({**result, "at": now}),
            "next_step": "" if next_step is None else next_step,
            "run_status": status,
            "due_at": "" if due_at is None else repr(due_at),
            "error": error or "",
        },
    )
    run.step = next_step if next_step is not None else index
    run.status = status
    if due_at is not None:
        run.due_at = due_at


@dataclass
class Advanced:
    """What ``advance`` did with a set of runs."""

    steps: list[tuple[str, int, str, str]]  # each step done: run, index, type, status
    handed_over: dict[str, int]  # run -> the step the worker has to execute
    later: list[str]  # held by another job (or many steps in a row): look again shortly
    broken: dict[str, str]  # run -> the script's error


async def advance(
    redis: Redis, account: str, run_ids: list[str], token: str | None = None, max_steps: int = 50
) -> Advanced:
    """Run the steps Redis does by itself (a wait ended or begun, tags, the end) for each
    run, in one round trip; each run stops at the first step that needs the worker.
    ``token``: the caller holds these runs' lease (else a leased run is left alone)."""
    if not run_ids:
        return Advanced([], {}, [], {})
    done, handed, later, broken = await scripts.AUTOMATION_ADVANCE.run(
        redis,
        keys={"delayed": keys.delayed()},
        args={
            **_lib_args(account, time.time()),
            "token": token or "",
            "max_steps": max_steps,
            "run_ids": run_ids,
        },
    )
    return Advanced(
        steps=[
            (str(done[i]), int(done[i + 1]), str(done[i + 2]), str(done[i + 3]))
            for i in range(0, len(done), 4)
        ],
        handed_over={str(handed[i]): int(handed[i + 1]) for i in range(0, len(handed), 2)},
        later=[str(r) for r in later],
        broken={str(broken[i]): str(broken[i + 1]) for i in range(0, len(broken), 2)},
    )


async def cancel_runs(redis: Redis, automation: Automation) -> int:
    """Stop the automation's runs that have not finished; returns how many."""
    account = automation.account
    cancelled = 0
    for run_id in [
        str(i) for i in await redis.zrange(keys.automation_runs(account, automation.id), 0, -1)
    ]:
        run = await load_run(redis, account, run_id)
        if run is None or run.status in RUN_FINAL:
            continue
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.run(account, run_id),
                mapping={"status": "cancelled", "updated_at": repr(time.time())},
            )
            pipe.zrem(keys.delayed(), delayed.member(AUTOMATION_STEP, account, run_id))
            pipe.hincrby(keys.automation_counts(account, automation.id), f"{run.step}:waiting", -1)
            await pipe.execute()
        cancelled += 1
    return cancelled
