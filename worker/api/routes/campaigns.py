"""Campaigns (scope ``send``): one WhatsApp template or one push to an audience.

A campaign is created as a draft (editable), then sent now or at ``send_at``; while
it runs it can be paused, resumed or cancelled. The audience is walked by a job on
the ``bulk`` queue, never by the API.
"""

from __future__ import annotations

import time
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from redis.asyncio import Redis

from worker.api.deps import CeleryDep, RedisDep, SendKey, SettingsDep
from worker.api.errors import ApiError
from worker.api.routes.whatsapp import check_template
from worker.api.views import campaign_detail
from worker.delivery.fanout import FANOUT_TASK
from worker.enqueue import enqueue
from worker.ids import new_id
from worker.models import (
    CampaignCreate,
    CampaignPatch,
    CampaignSend,
    CampaignStatus,
    PushContent,
    WhatsAppContent,
)
from worker.push_payload import MAX_PAYLOAD_BYTES, Notification, oversized
from worker.store import campaigns, channels, delayed
from worker.store.campaigns import Campaign

router = APIRouter(prefix="/api/v1/campaigns", tags=["campaigns"])
CampaignIdPath = Annotated[str, Path(pattern=r"^cmp_[a-z0-9]{1,64}$")]
# If the API dies between marking a campaign as sending and publishing its walk, this
# copy of the job (a no-op otherwise) starts it.
_SAFETY_NET_S = 60.0


def _not_found(campaign_id: str) -> ApiError:
    return ApiError(404, f"Campaign '{campaign_id}' not found", "campaign_not_found")


async def _load(redis: Redis, account: str, campaign_id: str) -> Campaign:
    campaign = await campaigns.load(redis, account, campaign_id)
    if campaign is None:
        raise _not_found(campaign_id)
    return campaign


async def _detail(redis: Redis, campaign: Campaign) -> dict[str, Any]:
    progress = await campaigns.progress(redis, campaign.account, campaign.id)
    skipped = await campaigns.skip_reasons(redis, campaign.account, campaign.id)
    return campaign_detail(campaign, progress, skipped)


async def _check_content(redis: Redis, account: str, body: CampaignCreate) -> None:
    """What can be known before any contact is read: the template, the payload size."""
    content = body.content
    if isinstance(content, WhatsAppContent):
        await check_template(
            redis, account, content.template_name, content.language, len(content.parameters)
        )
    elif isinstance(content, PushContent):
        note = Notification(content.title, content.message, content.url, content.icon, content.data)
        if oversized(note):
            raise ApiError(
                400,
                f"Notification payload exceeds {MAX_PAYLOAD_BYTES} bytes before any "
                "placeholder is filled in; shorten the title, message or data",
                "payload_too_large",
            )


async def _check_channel(redis: Redis, campaign: Campaign) -> None:
    if campaign.channel.value == "whatsapp":
        if not await channels.whatsapp_configured(redis, campaign.account):
            raise ApiError(
                403, "WhatsApp channel not configured for this account", "channel_not_configured"
            )
    elif not await channels.push_platforms(redis, campaign.account):
        raise ApiError(403, "Push notifications not enabled for this account", "push_not_enabled")


def _conflict(campaign_id: str, status: CampaignStatus | None, action: str) -> ApiError:
    if status is None:
        return _not_found(campaign_id)
    return ApiError(
        409,
        f"Campaign '{campaign_id}' is {status.value}: it cannot be {action}",
        "campaign_state_conflict",
        status=status.value,
    )


@router.post("")
async def create_campaign(body: CampaignCreate, key: SendKey, redis: RedisDep) -> JSONResponse:
    await _check_content(redis, key.account, body)
    campaign = await campaigns.create(redis, key.account, new_id("cmp"), body)
    return JSONResponse({"success": True, "campaign": await _detail(redis, campaign)}, 201)


@router.get("")
async def list_campaigns(
    key: SendKey,
    redis: RedisDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    items, total = await campaigns.page(redis, key.account, page, limit)
    progress = await campaigns.progress_many(redis, key.account, [c.id for c in items])
    return {
        "success": True,
        "campaigns": [campaign_detail(c, p) for c, p in zip(items, progress, strict=True)],
        "page": page,
        "limit": limit,
        "total": total,
    }


@router.get("/{campaign_id}")
async def get_campaign(
    campaign_id: CampaignIdPath, key: SendKey, redis: RedisDep
) -> dict[str, Any]:
    campaign = await _load(redis, key.account, campaign_id)
    return {"success": True, "campaign": await _detail(redis, campaign)}


@router.patch("/{campaign_id}")
async def update_campaign(
    campaign_id: CampaignIdPath, body: CampaignPatch, key: SendKey, redis: RedisDep
) -> dict[str, Any]:
    campaign = await _load(redis, key.account, campaign_id)
    if campaign.status is not CampaignStatus.DRAFT:
        raise _conflict(campaign_id, campaign.status, "edited (only a draft can)")
    merged = campaign.definition.model_dump(mode="json")
    merged["content"].pop("channel", None)
    merged.update(body.model_dump(mode="json", exclude_unset=True, exclude_none=True))
    if body.channel is not None and body.content is None and body.channel != campaign.channel:
        raise ApiError(
            400,
            "Changing the channel needs new 'content' for it",
            "invalid_request",
            field="content",
        )
    try:
        definition = CampaignCreate.model_validate(merged)
    except ValidationError as exc:
        # The same 400 naming the field as a malformed create body gets.
        raise RequestValidationError(exc.errors()) from exc
    await _check_content(redis, key.account, definition)
    if not await campaigns.replace_definition(redis, campaign, definition):
        raise _conflict(
            campaign_id, await campaigns.status(redis, key.account, campaign_id), "edited"
        )
    return {
        "success": True,
        "campaign": await _detail(redis, await _load(redis, key.account, campaign_id)),
    }


@router.post("/{campaign_id}/send")
async def send_campaign(
    campaign_id: CampaignIdPath,
    key: SendKey,
    redis: RedisDep,
    celery: CeleryDep,
    settings: SettingsDep,
    body: Annotated[CampaignSend | None, Body()] = None,
) -> JSONResponse:
    """Send now (202, status ``sending``) or at ``send_at`` (202, status ``scheduled``)."""
    campaign = await _load(redis, key.account, campaign_id)
    await _check_channel(redis, campaign)
    now = time.time()
    send_at = body.send_at.timestamp() if body and body.send_at else None
    if body and body.send_at and body.send_at.tzinfo is None:
        send_at = body.send_at.replace(tzinfo=UTC).timestamp()
    if send_at is not None and send_at > now + 1:
        moved = await campaigns.transition(redis, key.account, campaign_id, "schedule", send_at)
        if not moved.ok:
            raise _conflict(campaign_id, moved.status, "scheduled")
        await delayed.schedule(redis, FANOUT_TASK, key.account, campaign_id, send_at)
    else:
        moved = await campaigns.transition(redis, key.account, campaign_id, "send")
        if not moved.ok:
            raise _conflict(campaign_id, moved.status, "sent")
        await delayed.schedule(redis, FANOUT_TASK, key.account, campaign_id, now + _SAFETY_NET_S)
        enqueue(celery, FANOUT_TASK, key.account, campaign_id)
    detail = await _detail(redis, await _load(redis, key.account, campaign_id))
    return JSONResponse({"success": True, "campaign": detail}, 202)


async def _move(
    redis: Redis, celery: Any, account: str, campaign_id: str, action: str, verb: str
) -> dict[str, Any]:
    moved = await campaigns.transition(redis, account, campaign_id, action)
    if not moved.ok:
        raise _conflict(campaign_id, moved.status, verb)
    for job in moved.parked:
        task, job_account, job_id = delayed.parse(job)
        enqueue(celery, task, job_account, job_id)
    return {
        "success": True,
        "campaign": await _detail(redis, await _load(redis, account, campaign_id)),
    }


@router.post("/{campaign_id}/pause")
async def pause_campaign(
    campaign_id: CampaignIdPath, key: SendKey, redis: RedisDep, celery: CeleryDep
) -> dict[str, Any]:
    """Stop sending within seconds; what is not sent yet waits for ``resume``."""
    return await _move(redis, celery, key.account, campaign_id, "pause", "paused")


@router.post("/{campaign_id}/resume")
async def resume_campaign(
    campaign_id: CampaignIdPath, key: SendKey, redis: RedisDep, celery: CeleryDep
) -> dict[str, Any]:
    return await _move(redis, celery, key.account, campaign_id, "resume", "resumed")


@router.post("/{campaign_id}/cancel")
async def cancel_campaign(
    campaign_id: CampaignIdPath, key: SendKey, redis: RedisDep, celery: CeleryDep
) -> dict[str, Any]:
    """Stop for good: what is not sent yet is counted as cancelled."""
    return await _move(redis, celery, key.account, campaign_id, "cancel", "cancelled")


@router.delete("/{campaign_id}")
async def delete_campaign(
    campaign_id: CampaignIdPath, key: SendKey, redis: RedisDep
) -> dict[str, Any]:
    campaign = await _load(redis, key.account, campaign_id)
    if campaign.status in (CampaignStatus.SENDING, CampaignStatus.PAUSED):
        raise _conflict(campaign_id, campaign.status, "deleted (cancel it first)")
    if campaign.status is CampaignStatus.CANCELLED and campaign.finished_at is None:
        raise _conflict(campaign_id, campaign.status, "deleted until its jobs have stopped")
    await campaigns.delete(redis, key.account, campaign_id)
    return {"success": True, "id": campaign_id, "deleted": True}
