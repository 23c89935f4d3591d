"""Campaigns (scope ``send``): one WhatsApp template or one push to an audience.

A campaign is created as a draft (editable), then sent now or at ``send_at``; while
it runs it can be paused, resumed or cancelled. The audience is walked by a job on
the ``bulk`` queue, never by the API. The checks live in ``worker.services.campaigns``,
shared with the CLI.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from worker.api.deps import CampaignsKey, RedisDep
from worker.codes import Code
from worker.errors import Rejected
from worker.models import CampaignCreate, CampaignPatch, CampaignSend, CampaignStatus
from worker.services import campaigns as ops
from worker.store import campaigns

router = APIRouter(prefix="/api/v1/campaigns", tags=["campaigns"])
CampaignIdPath = Annotated[str, Path(pattern=r"^cmp_[a-z0-9]{1,64}$")]


def _ok(campaign: dict[str, Any], status_code: int = 200) -> JSONResponse:
    return JSONResponse({"success": True, "campaign": campaign}, status_code)


@router.post("")
async def create_campaign(body: CampaignCreate, key: CampaignsKey, redis: RedisDep) -> JSONResponse:
    campaign = await ops.create(redis, key.account, body)
    return _ok(await ops.detail(redis, campaign), 201)


@router.get("")
async def list_campaigns(
    key: CampaignsKey,
    redis: RedisDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """Newest first, each with its progress counters."""
    items, total = await campaigns.page(redis, key.account, page, limit)
    progress = await campaigns.progress_many(redis, key.account, [c.id for c in items])
    return {
        "success": True,
        "campaigns": [ops.campaign_detail(c, p) for c, p in zip(items, progress, strict=True)],
        "page": page,
        "limit": limit,
        "total": total,
    }


@router.get("/{campaign_id}")
async def get_campaign(
    campaign_id: CampaignIdPath, key: CampaignsKey, redis: RedisDep
) -> JSONResponse:
    return _ok(await ops.detail(redis, await ops.load(redis, key.account, campaign_id)))


@router.patch("/{campaign_id}")
async def update_campaign(
    campaign_id: CampaignIdPath, body: CampaignPatch, key: CampaignsKey, redis: RedisDep
) -> JSONResponse:
    """Change a draft's name, channel, content, audience or category (each replaced whole)."""
    campaign = await ops.load(redis, key.account, campaign_id)
    if campaign.status is not CampaignStatus.DRAFT:
        raise ops.conflict(campaign_id, campaign.status, "edited (only a draft can)")
    if body.channel is not None and body.channel != campaign.channel and body.content is None:
        raise Rejected(
            Code.INVALID_REQUEST,
            "content: changing the channel needs new content for it",
            field="content",
        )
    merged = campaign.definition.model_dump(mode="json")
    merged["content"].pop("channel", None)
    merged.update(body.model_dump(mode="json", exclude_unset=True, exclude_none=True))
    try:
        definition = CampaignCreate.model_validate(merged)
    except ValidationError as exc:
        # The same 400 naming the field as a malformed create body gets.
        raise RequestValidationError(exc.errors()) from exc
    await ops.check_content(redis, key.account, definition)
    if not await campaigns.replace_definition(redis, campaign, definition):
        status = await campaigns.status(redis, key.account, campaign_id)
        raise ops.conflict(campaign_id, status, "edited")
    return _ok(await ops.detail(redis, await ops.load(redis, key.account, campaign_id)))


@router.post("/{campaign_id}/send")
async def send_campaign(
    campaign_id: CampaignIdPath,
    key: CampaignsKey,
    redis: RedisDep,
    body: Annotated[CampaignSend | None, Body()] = None,
) -> JSONResponse:
    """Send now (202, status ``sending``) or at ``send_at`` (202, status ``scheduled``)."""
    send_at = body.send_at if body else None
    campaign = await ops.send(redis, key.account, campaign_id, send_at)
    return _ok(await ops.detail(redis, campaign), 202)


@router.post("/{campaign_id}/pause")
async def pause_campaign(
    campaign_id: CampaignIdPath, key: CampaignsKey, redis: RedisDep
) -> JSONResponse:
    """Stop sending within seconds; what is not sent yet waits for ``resume``."""
    campaign = await ops.move(redis, key.account, campaign_id, "pause")
    return _ok(await ops.detail(redis, campaign))


@router.post("/{campaign_id}/resume")
async def resume_campaign(
    campaign_id: CampaignIdPath, key: CampaignsKey, redis: RedisDep
) -> JSONResponse:
    campaign = await ops.move(redis, key.account, campaign_id, "resume")
    return _ok(await ops.detail(redis, campaign))


@router.post("/{campaign_id}/cancel")
async def cancel_campaign(
    campaign_id: CampaignIdPath, key: CampaignsKey, redis: RedisDep
) -> JSONResponse:
    """Stop for good: what is not sent yet is counted as cancelled."""
    campaign = await ops.move(redis, key.account, campaign_id, "cancel")
    return _ok(await ops.detail(redis, campaign))


@router.delete("/{campaign_id}")
async def delete_campaign(
    campaign_id: CampaignIdPath, key: CampaignsKey, redis: RedisDep
) -> dict[str, Any]:
    """A draft, scheduled or finished campaign; a running one is cancelled first."""
    await ops.delete(redis, key.account, campaign_id)
    return {"success": True, "id": campaign_id, "deleted": True}
