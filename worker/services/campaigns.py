"""What can be done to a campaign, with its checks: shared by the API and the CLI.

Refusals are ``Rejected`` (a code and a message; the code's status is in
``worker.codes``): the API answers them with that status, the CLI prints them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from worker.codes import Code
from worker.errors import Rejected
from worker.ids import new_id
from worker.models import (
    CampaignCreate,
    CampaignStatus,
    Channel,
    PushContent,
    WhatsAppContent,
    iso,
)
from worker.models.push_payload import MAX_PAYLOAD_BYTES, Notification, oversized
from worker.models.timing import QuietHours
from worker.services.templates import check_template_any_language
from worker.store import campaigns, channels, delayed, jobs
from worker.store.campaigns import Campaign, Progress
from worker.store.jobs import publish

# If the process dies between marking a campaign as sending and publishing its walk,
# this delayed copy of the job (a no-op otherwise) starts it.
SAFETY_NET_S = 60.0


def not_found(campaign_id: str) -> Rejected:
    return Rejected(Code.CAMPAIGN_NOT_FOUND, f"Campaign '{campaign_id}' not found")


def conflict(campaign_id: str, status: CampaignStatus | None, action: str) -> Rejected:
    if status is None:
        return not_found(campaign_id)
    return Rejected(
        Code.CAMPAIGN_STATE_CONFLICT,
        f"Campaign '{campaign_id}' is {status.value}: it cannot be {action}",
        status=status.value,
    )


async def load(redis: Redis, account: str, campaign_id: str) -> Campaign:
    campaign = await campaigns.load(redis, account, campaign_id)
    if campaign is None:
        raise not_found(campaign_id)
    return campaign


async def detail(redis: Redis, campaign: Campaign) -> dict[str, Any]:
    progress = await campaigns.progress(redis, campaign.account, campaign.id)
    why = await campaigns.reasons(redis, campaign.account, campaign.id)
    return campaign_detail(campaign, progress, why)


async def check_content(redis: Redis, account: str, body: CampaignCreate) -> None:
    """What can be known before any contact is read: the template, the payload size."""
    content = body.content
    if isinstance(content, WhatsAppContent):
        await check_template_any_language(
            redis, account, content.template_name, content.language, len(content.parameters)
        )
    elif isinstance(content, PushContent):
        note = Notification(
            content.title,
            content.message,
            content.url,
            content.icon,
            content.data,
            content.collapse_id,
            **content.push_options(),
        )
        if oversized(note):
            raise Rejected(
                Code.PAYLOAD_TOO_LARGE,
                f"Notification payload exceeds {MAX_PAYLOAD_BYTES} bytes before any "
                "placeholder is filled in; shorten the title, message or data",
            )


async def create(redis: Redis, account: str, body: CampaignCreate) -> Campaign:
    await check_content(redis, account, body)
    return await campaigns.create(redis, account, new_id("cmp"), body)


async def _check_channel(redis: Redis, campaign: Campaign) -> None:
    if campaign.channel is Channel.WHATSAPP:
        if not await channels.whatsapp_configured(redis, campaign.account):
            raise Rejected(Code.CHANNEL_NOT_CONFIGURED)
    elif not await channels.push_platforms(redis, campaign.account):
        raise Rejected(Code.PUSH_NOT_ENABLED)


async def send(redis: Redis, account: str, campaign_id: str, send_at: datetime | None) -> Campaign:
    """Send now, or at ``send_at`` (a time without a zone is UTC; a past one means now)."""
    campaign = await load(redis, account, campaign_id)
    await _check_channel(redis, campaign)
    now = time.time()
    at = None
    if send_at is not None:
        at = (send_at if send_at.tzinfo else send_at.replace(tzinfo=UTC)).timestamp()
    if at is not None and at > now + 1:
        moved = await campaigns.transition(redis, account, campaign_id, "schedule", at)
        if not moved.ok:
            raise conflict(campaign_id, moved.status, "scheduled")
        await delayed.schedule(redis, jobs.CAMPAIGN_FANOUT, account, campaign_id, at)
    else:
        moved = await campaigns.transition(redis, account, campaign_id, "send")
        if not moved.ok:
            raise conflict(campaign_id, moved.status, "sent")
        await delayed.schedule(
            redis, jobs.CAMPAIGN_FANOUT, account, campaign_id, now + SAFETY_NET_S
        )
        await publish(redis, jobs.CAMPAIGN_FANOUT, account, campaign_id)
    return await load(redis, account, campaign_id)


_VERBS = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}


async def move(redis: Redis, account: str, campaign_id: str, action: str) -> Campaign:
    """Pause, resume or cancel; the jobs parked by a pause are published again."""
    moved = await campaigns.transition(redis, account, campaign_id, action)
    if not moved.ok:
        raise conflict(campaign_id, moved.status, _VERBS[action])
    jobs_now = list(moved.parked)
    if action == "cancel":
        # Batches put off (quiet hours, a local time) end now as cancelled, not at their time.
        jobs_now += await campaigns.deferred_jobs(redis, account, campaign_id)
    for job in jobs_now:
        task, job_account, job_id = delayed.parse(job)
        await publish(redis, task, job_account, job_id)
    return await load(redis, account, campaign_id)


async def delete(redis: Redis, account: str, campaign_id: str) -> None:
    campaign = await load(redis, account, campaign_id)
    if campaign.status in (CampaignStatus.SENDING, CampaignStatus.PAUSED):
        raise conflict(campaign_id, campaign.status, "deleted (cancel it first)")
    if campaign.status is CampaignStatus.CANCELLED and campaign.finished_at is None:
        raise conflict(campaign_id, campaign.status, "deleted until its jobs have stopped")
    await campaigns.delete(redis, account, campaign_id)


def campaign_detail(
    campaign: Campaign, progress: Progress, why: campaigns.Reasons | None = None
) -> dict[str, Any]:
    """A campaign with its progress: counters of contacts (total, enqueued, skipped,
    deferred) and of sends (recipients planned: WhatsApp numbers or push devices; sent,
    delivered, failed, cancelled, pending), the recent rate and an estimate of the time
    left (at least until the latest time a send was put off to)."""
    eta = progress.eta_s(campaign.deferred_until)
    stats: dict[str, Any] = {
        **progress.counts,
        "pending": progress.pending,
        "rate_per_s": round(progress.rate_per_s, 1),
        "eta_s": None if eta is None else round(eta, 1),
        "deferred_until": iso(campaign.deferred_until),
    }
    if why is not None:
        stats["skipped_by_reason"] = why.skipped
        stats["deferred_by_reason"] = why.deferred
    return {
        "id": campaign.id,
        "name": campaign.name,
        "channel": campaign.channel.value,
        "status": campaign.status.value,
        "category": campaign.category,
        "quiet_hours": (
            campaign.quiet_hours.model_dump()
            if isinstance(campaign.quiet_hours, QuietHours)
            else campaign.quiet_hours
        ),
        "send_at_local": campaign.send_at_local,
        "content": campaign.content.model_dump(exclude={"channel"}, exclude_none=True),
        "audience": campaign.audience.model_dump(exclude_none=True, exclude_defaults=True)
        or {"all": True},
        "stats": stats,
        "send_at": iso(campaign.send_at),
        "created_at": iso(campaign.created_at),
        "updated_at": iso(campaign.updated_at),
        "started_at": iso(campaign.started_at),
        "finished_at": iso(campaign.finished_at),
        "last_error": campaign.last_error,
        "last_error_at": iso(campaign.last_error_at),
    }
