"""A page of the audience walk on real Valkey: who is in it, who is skipped and why, and
what each recipient's content comes to (only the fields the content names are read)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from worker.config import Settings
from worker.delivery import fanout
from worker.delivery.context import DeliveryContext
from worker.ids import new_id
from worker.models import CampaignCreate, ContactBody
from worker.store import campaigns, contacts
from worker.store.client import create_redis


def _context(settings: Settings) -> DeliveryContext:
    redis = create_redis(settings)
    return DeliveryContext(
        redis=redis,
        settings=settings,
        whatsapp=None,  # type: ignore[arg-type]
        whatsapp_retry=None,  # type: ignore[arg-type]
        push=None,  # type: ignore[arg-type]
        push_retry=None,  # type: ignore[arg-type]
        limiter=None,  # type: ignore[arg-type]
    )


def _token(n: int) -> dict[str, str]:
    return {"platform": "fcm", "token": f"page{n:04d}:APA91b-page-test-token"}


def test_a_page_keeps_the_segment_and_skips_with_reasons(settings: Settings) -> None:
    async def scenario() -> None:
        ctx = _context(settings)
        account = new_id("acc").lower().replace("_", "-")
        people: dict[str, dict[str, Any]] = {
            "a": {"name": "Ann", "attributes": {"tier": "gold", "city": "Pune"}, "t": 1},
            "b": {"name": "Bo", "attributes": {"tier": "silver"}, "t": 2},
            "c": {"name": "Cy", "attributes": {"tier": "gold"}},  # no token
            "d": {"attributes": {"tier": "gold"}, "t": 4},  # no name
        }
        for cid, p in people.items():
            tokens = [_token(p["t"])] if "t" in p else None
            body = ContactBody(name=p.get("name"), attributes=p["attributes"], push_tokens=tokens)
            await contacts.upsert(ctx.redis, account, cid, body)
        create = CampaignCreate.model_validate(
            {
                "name": "gold",
                "channel": "push",
                "content": {"title": "Hi {{name}}", "message": "From {{city|your town}}"},
                "audience": {"segment": {"attributes": {"tier": "gold"}}},
            }
        )
        campaign = await campaigns.create(ctx.redis, account, new_id("cmp"), create)
        page, write = await fanout._make_batch(ctx, campaign, None, ["a", "b", "c", "d", "gone"], 0)
        assert page.contacts == 3  # a, c, d are gold; b is not; "gone" does not exist
        assert page.recipients == 1
        assert dict(page.skipped) == {"no_push_token": 1, "missing_field": 1}
        assert write

        # The named contacts, one of them unknown: counted and skipped as not found.
        listed = CampaignCreate.model_validate(
            {**create.model_dump(mode="json"), "audience": {"contact_ids": ["a", "gone"]}}
        )
        campaign = await campaigns.create(ctx.redis, account, new_id("cmp"), listed)
        page, _ = await fanout._make_batch(ctx, campaign, None, ["a", "gone"], 0)
        assert (page.contacts, page.recipients) == (2, 1)
        assert dict(page.skipped) == {"contact_not_found": 1}
        fields = fanout._fields_needed(campaign, {"tier": "gold"})
        assert fields == ["attr:city", "attr:name", "attr:tier", "city", "id", "name"]
        read, members = await fanout._read_page(
            ctx.redis, account, ["a", "gone"], fields, tokens=True
        )
        assert read == [
            {"id": "a", "name": "Ann", "attr:city": json.dumps("Pune"), "attr:tier": '"gold"'},
            {},
        ]
        assert members == [[f"fcm:{_token(1)['token']}"], []]
        await ctx.redis.aclose()

    asyncio.run(scenario())
