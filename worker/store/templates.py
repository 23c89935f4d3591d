"""WhatsApp message templates known for an account (synced from the Graph API)."""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from worker.models import Template
from worker.store import keys
from worker.store.client import fields, hgetall_str


async def replace_templates(redis: Redis, account_id: str, templates: Iterable[Template]) -> int:
    """Swap in a full new set atomically: a send never sees a half-synced list."""
    mapping = {keys.template_field(t.name, t.language): t.model_dump_json() for t in templates}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.templates(account_id))
        if mapping:
            pipe.hset(keys.templates(account_id), mapping=fields(mapping))
        await pipe.execute()
    return len(mapping)


async def get_template(redis: Redis, account_id: str, name: str, language: str) -> Template | None:
    raw = await redis.hget(keys.templates(account_id), keys.template_field(name, language))
    return Template.model_validate_json(raw) if raw else None


async def list_templates(redis: Redis, account_id: str) -> list[Template]:
    raw = await hgetall_str(redis, keys.templates(account_id))
    return sorted(
        (Template.model_validate_json(v) for v in raw.values()),
        key=lambda t: (t.name, t.language),
    )


async def approved_languages(redis: Redis, account_id: str, name: str) -> dict[str, Template]:
    """The template's synced, approved languages: language → template."""
    return {
        t.language: t
        for t in await list_templates(redis, account_id)
        if t.name == name and t.status.upper() == "APPROVED"
    }
