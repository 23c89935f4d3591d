"""Campaign records, their status moves and their progress counters.

The counters are only ever incremented, by the job that made the change and in
the same transaction as the change itself (a device's result, a message's final
state), so progress is exact after a crash and costs nothing to read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic import BaseModel
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from worker.models import MARKETING, Audience, CampaignCreate, CampaignStatus, Channel, Content
from worker.models.timing import QuietHours
from worker.store import keys, scripts
from worker.store.client import fields, hgetall_str

COUNTERS = (
    "total",
    "enqueued",
    "skipped",
    "deferred",
    "recipients",
    "sent",
    "delivered",
    "failed",
    "cancelled",
)
# Sends per second are averaged over this many whole seconds.
RATE_WINDOW_S = 5


class Campaign(BaseModel):
    id: str
    account: str
    name: str
    channel: Channel
    content: Content
    audience: Audience
    status: CampaignStatus
    created_at: float
    category: str = MARKETING
    quiet_hours: QuietHours | Literal[False] | None = None
    send_at_local: str | None = None
    updated_at: float
    send_at: float | None = None
    started_at: float | None = None
    paused_at: float | None = None
    cancelled_at: float | None = None
    finished_at: float | None = None
    fanout_cursor: int = 0
    fanout_done: bool = False
    batches: int = 0
    # The latest time a send of it was put off to (quiet hours, a local send time).
    deferred_until: float | None = None
    # The last crash of one of its jobs (a bug): shown, so a stalled campaign is not silent.
    last_error: str | None = None
    last_error_at: float | None = None

    @property
    def definition(self) -> CampaignCreate:
        return CampaignCreate(
            name=self.name,
            channel=self.channel,
            content=self.content,
            audience=self.audience,
            category=self.category,
            quiet_hours=self.quiet_hours,
            send_at_local=self.send_at_local,
        )


@dataclass
class Progress:
    counts: dict[str, int]
    rate_per_s: float

    @property
    def done(self) -> int:
        return self.counts["sent"] + self.counts["failed"] + self.counts["cancelled"]

    @property
    def pending(self) -> int:
        return max(0, self.counts["recipients"] - self.done)

    def remaining_estimate(self) -> int:
        """Sends still to make, counting the part of the audience not walked yet at the
        sends-per-contact ratio seen so far."""
        walked, total = self.counts["enqueued"], self.counts["total"]
        ratio = self.counts["recipients"] / walked if walked else 1.0
        return self.pending + round(max(0, total - walked) * ratio)

    def eta_s(self, deferred_until: float | None = None) -> float | None:
        """Seconds until the last send, at the recent rate; at least until the latest
        time a send was put off to (quiet hours, a local send time)."""
        remaining = self.remaining_estimate()
        if remaining == 0:
            return 0.0
        wait = max(0.0, (deferred_until or 0.0) - time.time())
        if self.rate_per_s > 0:
            return max(remaining / self.rate_per_s, wait)
        return wait or None


_JSON = {"content", "audience", "quiet_hours"}


def _encode(campaign: Campaign) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in campaign.model_dump(mode="json").items():
        if value is None:
            continue
        if name in _JSON:
            out[name] = json.dumps(value)
        elif isinstance(value, bool):
            out[name] = "1" if value else "0"
        else:
            out[name] = str(value)
    return out


def _decode(raw: dict[str, str]) -> Campaign:
    data: dict[str, Any] = dict(raw)
    for name in _JSON & data.keys():
        data[name] = json.loads(data[name])
    data["fanout_done"] = data.get("fanout_done") == "1"
    return Campaign.model_validate(data)


async def create(redis: Redis, account_id: str, campaign_id: str, body: CampaignCreate) -> Campaign:
    now = time.time()
    campaign = Campaign(
        id=campaign_id,
        account=account_id,
        name=body.name,
        channel=body.channel,
        content=body.content,
        audience=body.audience,
        category=body.category,
        quiet_hours=body.quiet_hours,
        send_at_local=body.send_at_local,
        status=CampaignStatus.DRAFT,
        created_at=now,
        updated_at=now,
    )
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.campaign(account_id, campaign_id), mapping=fields(_encode(campaign)))
        pipe.zadd(keys.campaigns(account_id), {campaign_id: now})
        await pipe.execute()
    return campaign


async def replace_definition(redis: Redis, campaign: Campaign, body: CampaignCreate) -> bool:
    """A draft's new name, content and audience; False when it is no longer a draft."""
    key = keys.campaign(campaign.account, campaign.id)
    values = {
        "name": body.name,
        "channel": body.channel.value,
        "content": body.content.model_dump_json(),
        "audience": body.audience.model_dump_json(),
        "category": body.category,
        "quiet_hours": "" if body.quiet_hours is None else json.dumps(_quiet(body.quiet_hours)),
        "send_at_local": body.send_at_local or "",
        "updated_at": repr(time.time()),
    }
    edited = await scripts.CAMPAIGN_EDIT.run(
        redis, keys={"campaign": key}, args={"values": json.dumps(values)}
    )
    return bool(edited)


def _quiet(value: QuietHours | Literal[False]) -> Any:
    return False if value is False else value.model_dump()


async def load(redis: Redis, account_id: str, campaign_id: str) -> Campaign | None:
    raw = await hgetall_str(redis, keys.campaign(account_id, campaign_id))
    return _decode(raw) if raw else None


async def status(redis: Redis, account_id: str, campaign_id: str) -> CampaignStatus | None:
    raw = await redis.hget(keys.campaign(account_id, campaign_id), "status")
    return CampaignStatus(raw.decode() if isinstance(raw, bytes) else raw) if raw else None


async def page(
    redis: Redis, account_id: str, page_no: int, limit: int
) -> tuple[list[Campaign], int]:
    """Newest first."""
    start = (page_no - 1) * limit
    ids = cast(
        list[str], await redis.zrevrange(keys.campaigns(account_id), start, start + limit - 1)
    )
    total: int = await redis.zcard(keys.campaigns(account_id))
    async with redis.pipeline(transaction=False) as pipe:
        for campaign_id in ids:
            pipe.hgetall(keys.campaign(account_id, campaign_id))
        raws = cast(list[dict[str, str]], await pipe.execute())
    return [_decode(raw) for raw in raws if raw], total


async def progress_many(redis: Redis, account_id: str, campaign_ids: list[str]) -> list[Progress]:
    now = int(time.time())
    # Whole seconds only: the current one is still filling up.
    window = [str(now - i) for i in range(1, RATE_WINDOW_S + 1)]
    async with redis.pipeline(transaction=False) as pipe:
        for campaign_id in campaign_ids:
            pipe.hmget(keys.campaign_counts(account_id, campaign_id), list(COUNTERS))
            pipe.hmget(keys.campaign_seconds(account_id, campaign_id), window)
        raw = await pipe.execute()
    out = []
    for counts, seconds in zip(raw[::2], raw[1::2], strict=True):
        out.append(
            Progress(
                counts={name: int(v or 0) for name, v in zip(COUNTERS, counts, strict=True)},
                rate_per_s=sum(int(v or 0) for v in seconds) / RATE_WINDOW_S,
            )
        )
    return out


async def progress(redis: Redis, account_id: str, campaign_id: str) -> Progress:
    [one] = await progress_many(redis, account_id, [campaign_id])
    return one


@dataclass(frozen=True)
class Reasons:
    """Contacts skipped, and contacts whose send was put off, by reason."""

    skipped: dict[str, int]
    deferred: dict[str, int]


async def reasons(redis: Redis, account_id: str, campaign_id: str) -> Reasons:
    raw = cast(dict[str, str], await redis.hgetall(keys.campaign_counts(account_id, campaign_id)))

    def under(prefix: str) -> dict[str, int]:
        return {k[len(prefix) :]: int(v) for k, v in raw.items() if k.startswith(prefix)}

    return Reasons(under("skipped:"), under("deferred:"))


async def deferred_jobs(redis: Redis, account_id: str, campaign_id: str) -> list[str]:
    """The campaign's batch jobs put off to a later time (``task account id``)."""
    members = await redis.smembers(keys.campaign_deferred(account_id, campaign_id))
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)


async def delete(redis: Redis, account_id: str, campaign_id: str) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(
            keys.campaign(account_id, campaign_id),
            keys.campaign_counts(account_id, campaign_id),
            keys.campaign_seconds(account_id, campaign_id),
            keys.campaign_parked(account_id, campaign_id),
            keys.campaign_deferred(account_id, campaign_id),
        )
        pipe.zrem(keys.campaigns(account_id), campaign_id)
        await pipe.execute()


@dataclass(frozen=True)
class Transition:
    ok: bool
    status: CampaignStatus | None
    parked: list[str]


def _with_parked(account_id: str, campaign_id: str) -> dict[str, str]:
    """The keys of the scripts that move a campaign or park its jobs."""
    return {
        "campaign": keys.campaign(account_id, campaign_id),
        "parked": keys.campaign_parked(account_id, campaign_id),
    }


async def transition(
    redis: Redis, account_id: str, campaign_id: str, action: str, send_at: float | None = None
) -> Transition:
    raw = await scripts.CAMPAIGN_TRANSITION.run(
        redis,
        keys={
            **_with_parked(account_id, campaign_id),
            "outbox": keys.webhook_events(),
            "webhook_accounts": keys.webhook_accounts(),
        },
        args={
            "action": action,
            "now": repr(time.time()),
            "send_at": repr(send_at or 0),
            "account": account_id,
            "campaign_id": campaign_id,
        },
    )
    ok, status, *parked = (v.decode() if isinstance(v, bytes) else v for v in raw)
    return Transition(bool(int(ok)), CampaignStatus(status) if status else None, list(parked))


async def park(redis: Redis, account_id: str, campaign_id: str, job: str) -> CampaignStatus | None:
    """Leave ``job`` for resume if the campaign is paused; returns the campaign's status."""
    raw = await scripts.CAMPAIGN_PARK.run(
        redis, keys=_with_parked(account_id, campaign_id), args={"job": job}
    )
    return CampaignStatus(raw.decode() if isinstance(raw, bytes) else raw) if raw else None


def count(
    pipe: Pipeline,
    account_id: str,
    campaign_id: str,
    incr: dict[str, int],
    set_fields: dict[str, str] | None = None,
) -> None:
    """Add to the counters (part of the caller's transaction); finishes the campaign when
    everything planned is done."""
    scripts.CAMPAIGN_COUNT.queue(
        pipe,
        keys={
            "campaign": keys.campaign(account_id, campaign_id),
            "counts": keys.campaign_counts(account_id, campaign_id),
            "seconds": keys.campaign_seconds(account_id, campaign_id),
            "outbox": keys.webhook_events(),
            "webhook_accounts": keys.webhook_accounts(),
        },
        args={
            "now": repr(time.time()),
            "change": json.dumps({"incr": incr, "set": set_fields or {}}),
            "account": account_id,
            "campaign_id": campaign_id,
        },
    )


async def count_now(
    redis: Redis,
    account_id: str,
    campaign_id: str,
    incr: dict[str, int],
    set_fields: dict[str, str] | None = None,
) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        count(pipe, account_id, campaign_id, incr, set_fields)
        await pipe.execute()
