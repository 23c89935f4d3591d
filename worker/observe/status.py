"""What an operator asks first — are we keeping up? — read from Redis in a few round trips.

One snapshot feeds `dispatch status`, the API's `/readyz` and the gauges of `/metrics`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from redis.asyncio import Redis

from worker.store import joberrors, jobs, keys, throughput
from worker.store import restarts as child_restarts
from worker.store.heartbeats import WorkerBeat, alive

QUEUES = jobs.QUEUES
# A rate-limit key's schedule (GCRA) booked up to now, less a little: its sends are paced.
_AT_CAP_S = -0.05
_RUNNING = ("sending", "paused", "scheduled")
# Past this share of its maxmemory, Redis is close to refusing writes: status warns.
MEMORY_WARN_RATIO = 0.9


@dataclass(frozen=True)
class CampaignState:
    account: str
    id: str
    name: str
    status: str
    counts: dict[str, int]


@dataclass(frozen=True)
class AutomationState:
    account: str
    id: str
    name: str
    active: bool
    in_progress: int  # runs not finished (at a step, or waiting)
    steps_done: int
    steps_failed: int


@dataclass(frozen=True)
class RateKey:
    name: str
    ahead_s: float  # how far the key's schedule is booked past now
    penalty: float  # >1: slowed down after a provider 429


@dataclass
class Snapshot:
    redis_ok: bool
    queues: dict[str, int] = field(default_factory=dict)
    delayed: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    workers: list[WorkerBeat] = field(default_factory=list)
    campaigns: list[CampaignState] = field(default_factory=list)
    automations: list[AutomationState] = field(default_factory=list)
    rates: dict[tuple[str, str], float] = field(default_factory=dict)
    busy_limits: list[RateKey] = field(default_factory=list)
    # Redis's INFO memory: bytes in use, and its maxmemory (0: no limit).
    memory_used_bytes: int = 0
    memory_max_bytes: int = 0
    # Children `dispatch up` started again after they exited (none under compose).
    restarts: list[child_restarts.ChildRestarts] = field(default_factory=list)
    # Jobs (and stream entries) that failed on a bug, ever, by account; the newest few.
    job_errors: dict[str, int] = field(default_factory=dict)
    latest_job_errors: list[joberrors.JobError] = field(default_factory=list)
    # Event webhooks: events in the outbox not yet moved to endpoints, and each endpoint's
    # deliveries waiting (account, endpoint, queued, between attempts).
    webhook_outbox: int = 0
    webhook_backlog: list[tuple[str, str, int, int]] = field(default_factory=list)
    error: str = ""

    @property
    def memory_ratio(self) -> float | None:
        """How full Redis is (1.0: it refuses writes); None without a limit."""
        return self.memory_used_bytes / self.memory_max_bytes if self.memory_max_bytes else None

    @property
    def memory_high(self) -> bool:
        ratio = self.memory_ratio
        return ratio is not None and ratio >= MEMORY_WARN_RATIO

    def workers_by_queue(self) -> dict[str, int]:
        count = Counter(q for w in self.workers for q in w.queues)
        return {q: count.get(q, 0) for q in QUEUES}

    def unserved(self) -> list[str]:
        return [q for q, n in self.workers_by_queue().items() if n == 0]


async def take(redis: Redis, *, campaigns: bool = True, rates: bool = True) -> Snapshot:
    async with redis.pipeline(transaction=False) as pipe:
        for queue in QUEUES:
            pipe.llen(queue)
        pipe.zcard(keys.delayed())
        pipe.info("memory")
        pipe.smembers(keys.accounts())
        depths = await pipe.execute()
    accounts = sorted(depths[-1])
    memory = depths[-2]
    snap = Snapshot(
        redis_ok=True,
        queues=dict(zip(QUEUES, (int(n) for n in depths[: len(QUEUES)]), strict=True)),
        delayed=int(depths[len(QUEUES)]),
        memory_used_bytes=int(memory.get("used_memory", 0)),
        memory_max_bytes=int(memory.get("maxmemory", 0)),
    )
    async with redis.pipeline(transaction=False) as pipe:
        for account in accounts:
            pipe.zcard(keys.dead_letters(account))
        dead = await pipe.execute()
    snap.dead_letters = {a: int(n) for a, n in zip(accounts, dead, strict=True)}
    snap.workers = await alive(redis)
    snap.restarts = await child_restarts.read(redis)
    snap.job_errors = await joberrors.counts(redis)
    if snap.job_errors:
        snap.latest_job_errors = await joberrors.newest(redis, sorted(snap.job_errors))
    snap.webhook_outbox, snap.webhook_backlog = await _webhook_backlog(redis)
    if campaigns:
        snap.campaigns = await _running_campaigns(redis, accounts)
        snap.automations = await _automations(redis, accounts)
    if rates:
        snap.rates = await throughput.last_minute(redis)
        snap.busy_limits = await _busy_limits(redis)
    return snap


async def _webhook_backlog(redis: Redis) -> tuple[int, list[tuple[str, str, int, int]]]:
    """The outbox's length, and the backlog of every endpoint of the accounts with one
    active (an account's endpoints are at most 20): three round trips, whatever the
    number of endpoints."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xlen(keys.webhook_events())
        pipe.smembers(keys.webhook_accounts())
        outbox, accounts = await pipe.execute()
    accounts = sorted(map(str, accounts))
    async with redis.pipeline(transaction=False) as pipe:
        for account in accounts:
            pipe.zrange(keys.webhooks(account), 0, -1)
        endpoint_ids = await pipe.execute()
    endpoints = [
        (account, str(endpoint_id))
        for account, ids in zip(accounts, endpoint_ids, strict=True)
        for endpoint_id in ids
    ]
    async with redis.pipeline(transaction=False) as pipe:
        for account, endpoint_id in endpoints:
            pipe.llen(keys.webhook_queue(account, endpoint_id))
            pipe.zcard(keys.webhook_retry(account, endpoint_id))
        sizes = await pipe.execute()
    backlog = [
        (account, endpoint_id, int(sizes[2 * i]), int(sizes[2 * i + 1]))
        for i, (account, endpoint_id) in enumerate(endpoints)
    ]
    return int(outbox), backlog


async def _newest_with_counts(
    redis: Redis,
    index_key: str,
    limit: int,
    record_key: Callable[[str], str],
    fields: tuple[str, ...],
    counts_key: Callable[[str], str],
) -> list[tuple[str, list[str | None], dict[str, str]]]:
    """The ``limit`` newest ids of a sorted set, each with some fields of its record and
    its counts hash, in one round trip after the ids."""
    ids = [str(i) for i in await redis.zrevrange(index_key, 0, limit - 1)]
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for item in ids:
            pipe.hmget(record_key(item), *fields)
            pipe.hgetall(counts_key(item))
        replies = await pipe.execute()
    return [(item, replies[2 * i], replies[2 * i + 1]) for i, item in enumerate(ids)]


async def _running_campaigns(redis: Redis, accounts: list[str]) -> list[CampaignState]:
    out: list[CampaignState] = []
    for account in accounts:
        # The 50 newest campaigns of each account: a running one is recent.
        for cid, (status, name), counts in await _newest_with_counts(
            redis,
            keys.campaigns(account),
            50,
            partial(keys.campaign, account),
            ("status", "name"),
            partial(keys.campaign_counts, account),
        ):
            if status in _RUNNING:
                values = {k: int(v) for k, v in counts.items()}
                out.append(CampaignState(account, cid, name or "", status, values))
    return out


async def _automations(redis: Redis, accounts: list[str]) -> list[AutomationState]:
    """Each account's active automations, and inactive ones with runs still going (the 100
    newest of each account): runs in progress and steps done or failed, from the counts
    per step that each step's record keeps."""
    out: list[AutomationState] = []
    for account in accounts:
        for automation_id, (name, active), counts in await _newest_with_counts(
            redis,
            keys.automations(account),
            100,
            partial(keys.automation, account),
            ("name", "active"),
            partial(keys.automation_counts, account),
        ):
            totals: Counter[str] = Counter()
            for step_state, n in counts.items():
                totals[step_state.partition(":")[2]] += int(n)
            if active == "1" or totals["waiting"] > 0:
                out.append(
                    AutomationState(
                        account,
                        automation_id,
                        name or "",
                        active == "1",
                        totals["waiting"],
                        totals["done"],
                        totals["failed"],
                    )
                )
    return out


async def _busy_limits(redis: Redis) -> list[RateKey]:
    """Rate-limit keys holding sends back now: their schedule is booked up to the present
    (every send waits for its slot), or a provider 429 slowed them down."""
    now_s, now_us = await redis.time()
    now_ms = now_s * 1000 + now_us / 1000
    prefix = keys.rate_limit("")
    names = [
        n[len(prefix) :]
        async for n in redis.scan_iter(match=keys.rate_limit("*"), count=500)
        if not n.endswith(":penalty")
    ]
    if not names:
        return []
    tats = await redis.mget([keys.rate_limit(n) for n in names])
    penalties = await redis.mget([keys.rate_limit_penalty(n) for n in names])
    busy = []
    for name, tat, penalty in zip(names, tats, penalties, strict=True):
        ahead = (float(tat) - now_ms) / 1000 if tat else -1.0
        if ahead >= _AT_CAP_S or penalty:
            busy.append(RateKey(name, round(ahead, 3), float(penalty or 1)))
    return sorted(busy, key=lambda r: (-r.penalty, -r.ahead_s))


async def ready(redis: Redis) -> Snapshot:
    """The cheap part of a snapshot, for `/readyz`: Redis answers, and each queue has a
    worker group alive."""
    try:
        return await take(redis, campaigns=False, rates=False)
    except Exception as exc:
        return Snapshot(redis_ok=False, error=f"{type(exc).__name__}: {exc}")
