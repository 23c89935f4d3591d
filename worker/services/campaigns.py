"""What can be done to a campaign, with its checks: shared by the API and the CLI.

Refusals are ``ApiError`` (status, message, code): the API returns them as they
are, the CLI prints the message.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from worker.api.errors import ApiError
from worker.api.routes.whatsapp import check_template
from worker.api.views import campaign_detail
from worker.ids import new_id
from worker.models import CampaignCreate, CampaignStatus, Channel, PushContent, WhatsAppContent
from worker.models.push_payload import MAX_PAYLOAD_BYTES, Notification, oversized
from worker.store import campaigns, channels, delayed, jobs
from worker.store.campaigns import Campaign
from worker.store.enqueue import publish

# If the process dies between marking a campaign as sending and publishing its walk,
# this delayed copy of the job (a no-op otherwise) starts it.
SAFETY_NET_S = 60.0


def not_found(campaign_id: str) -> ApiError:
    return ApiError(404, f"Campaign '{campaign_id}' not found", "campaign_not_found")


def conflict(campaign_id: str, status: CampaignStatus | None, action: str) -> ApiError:
    if status is None:
        return not_found(campaign_id)
    return ApiError(
        409,
        f"Campaign '{campaign_id}' is {status.value}: it cannot be {action}",
        "campaign_state_conflict",
        status=status.value,
    )


async def load(redis: Redis, account: str, campaign_id: str) -> Campaign:
    campaign = await campaigns.load(redis, account, campaign_id)
    if campaign is None:
        raise not_found(campaign_id)
    return campaign


async def detail(redis: Redis, campaign: Campaign) -> dict[str, Any]:
    progress = await campaigns.progress(redis, campaign.account, campaign.id)
    skipped = await campaigns.skip_reasons(redis, campaign.account, campaign.id)
    return campaign_detail(campaign, progress, skipped)


async def check_content(redis: Redis, account: str, body: CampaignCreate) -> None:
    """What can be known before any contact is read: the template, the payload size."""
    content = body.content
    if isinstance(content, WhatsAppContent):
        await check_template(
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
        )
        if oversized(note):
            raise ApiError(
                400,
                f"Notification payload exceeds {MAX_PAYLOAD_BYTES} bytes before any "
                "placeholder is filled in; shorten the title, message or data",
                "payload_too_large",
            )


async def create(redis: Redis, account: str, body: CampaignCreate) -> Campaign:
    await check_content(redis, account, body)
    return await campaigns.create(redis, account, new_id("cmp"), body)


async def _check_channel(redis: Redis, campaign: Campaign) -> None:
    if campaign.channel is Channel.WHATSAPP:
        if not await channels.whatsapp_configured(redis, campaign.account):
            raise ApiError(
                403, "WhatsApp channel not configured for this account", "channel_not_configured"
            )
    elif not await channels.push_platforms(redis, campaign.account):
        raise ApiError(403, "Push notifications not enabled for this account", "push_not_enabled")


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
    for job in moved.parked:
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
