"""Contacts: one hash per contact, attributes one field each, push tokens in a set."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

from redis.asyncio import Redis

from worker.models import ContactBody
from worker.store import keys, preferences, scripts, tokens

_ATTR = "attr:"
_SCALARS = ("phone", "email", "name")


@dataclass
class Contact:
    id: str
    created_at: float
    updated_at: float
    phone: str | None = None
    email: str | None = None
    name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    # Active tokens as ``platform:token`` members, sorted.
    push_tokens: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    # Its opt-outs as stored (``optout:<channel>:<category>`` → ``<time> <source>``).
    opt_outs: dict[str, str] = field(default_factory=dict)


class Upsert(Enum):
    CREATED = 1
    UPDATED = 0
    EXISTS = -1


def _hash_fields(body: ContactBody, source: str) -> dict[str, str | None]:
    """Only the fields the client sent: PATCH leaves the others alone. ``source``: how
    its opt-outs were given (``api``, ``import``)."""
    sent = body.model_fields_set
    fields: dict[str, str | None] = {name: getattr(body, name) for name in _SCALARS if name in sent}
    for attr, value in (body.attributes or {}).items():
        fields[_ATTR + attr] = None if value is None else json.dumps(value)
    if body.preferences is not None:
        fields.update(preferences.patch_fields(body.preferences, source))
    return fields


def _upsert_call(
    account_id: str, contact_id: str, body: ContactBody, create_only: bool, source: str = "api"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keys and arguments of the contact_upsert script for one contact."""
    sent = body.push_tokens or []
    members = list(dict.fromkeys(tokens.member(t.platform, t.token) for t in sent))
    prefix, suffix = keys.contact_push_tokens_parts(account_id)
    return (
        {
            "contact": keys.contact(account_id, contact_id),
            "contacts": keys.contacts(account_id),
            "contact_tokens": keys.contact_push_tokens(account_id, contact_id),
            "account_tokens": keys.push_tokens(account_id),
            "contact_tags": keys.contact_tags(account_id, contact_id),
            "token_keys": [keys.push_token(account_id, m) for m in members],
        },
        {
            "contact_id": contact_id,
            "now": repr(time.time()),
            "mode": "create" if create_only else "upsert",
            "fields": json.dumps(_hash_fields(body, source)),
            "contact_tokens_prefix": prefix,
            "contact_tokens_suffix": suffix,
            "tags": json.dumps(list(dict.fromkeys(body.tags or []))),
            "tag_members_prefix": keys.tag_members(account_id, ""),
            "contact_events": keys.contact_events(),
            "created_triggers": keys.automation_triggers(account_id, "contact.created"),
            "tag_added_triggers": keys.automation_triggers(account_id, "contact.tag_added"),
            "account": account_id,
            "token_members": members,
        },
    )


async def upsert(
    redis: Redis, account_id: str, contact_id: str, body: ContactBody, *, create_only: bool = False
) -> Upsert:
    script_keys, args = _upsert_call(account_id, contact_id, body, create_only)
    result, _moved = await scripts.CONTACT_UPSERT.run(redis, keys=script_keys, args=args)
    return Upsert(int(result))


async def upsert_many(
    redis: Redis, account_id: str, contacts: list[tuple[str, ContactBody]], source: str = "api"
) -> list[Upsert]:
    """Create or update many contacts in one round trip (each one atomic on its own)."""
    sha = await scripts.CONTACT_UPSERT.load(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for contact_id, body in contacts:
            script_keys, args = _upsert_call(account_id, contact_id, body, False, source)
            scripts.CONTACT_UPSERT.queue(pipe, keys=script_keys, args=args, sha=sha)
        results = await pipe.execute()
    return [Upsert(int(created)) for created, _moved in results]


async def get(redis: Redis, account_id: str, contact_id: str) -> Contact | None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.contact(account_id, contact_id))
        pipe.smembers(keys.contact_push_tokens(account_id, contact_id))
        pipe.smembers(keys.contact_tags(account_id, contact_id))
        raw, tokens, tags = await pipe.execute()
    if not raw:
        return None
    return _contact(raw, tokens, tags)


def _contact(raw: dict[str, str], tokens: set[str], tags: set[str]) -> Contact:
    return Contact(
        id=raw["id"],
        created_at=float(raw["created_at"]),
        updated_at=float(raw.get("updated_at", raw["created_at"])),
        phone=raw.get("phone"),
        email=raw.get("email"),
        name=raw.get("name"),
        attributes={
            name[len(_ATTR) :]: json.loads(value)
            for name, value in raw.items()
            if name.startswith(_ATTR)
        },
        push_tokens=sorted(tokens),
        tags=sorted(tags),
        opt_outs={k: v for k, v in raw.items() if k.startswith(preferences.FIELD_PREFIX)},
    )


async def exists(redis: Redis, account_id: str, contact_id: str) -> bool:
    return bool(await redis.exists(keys.contact(account_id, contact_id)))


async def page(redis: Redis, account_id: str, page: int, limit: int) -> tuple[list[Contact], int]:
    start = (page - 1) * limit
    ids = cast(list[str], await redis.zrange(keys.contacts(account_id), start, start + limit - 1))
    total: int = await redis.zcard(keys.contacts(account_id))
    async with redis.pipeline(transaction=False) as pipe:
        for contact_id in ids:
            pipe.hgetall(keys.contact(account_id, contact_id))
            pipe.smembers(keys.contact_push_tokens(account_id, contact_id))
            pipe.smembers(keys.contact_tags(account_id, contact_id))
        results = await pipe.execute()
    contacts = [
        _contact(raw, tokens, tags)
        for raw, tokens, tags in zip(results[::3], results[1::3], results[2::3], strict=True)
        if raw
    ]
    return contacts, total


async def delete(redis: Redis, account_id: str, contact_id: str) -> bool:
    """Delete the contact and the device tokens it owns."""
    deleted = await scripts.CONTACT_DELETE.run(
        redis,
        keys={
            "contact": keys.contact(account_id, contact_id),
            "contacts": keys.contacts(account_id),
            "contact_tokens": keys.contact_push_tokens(account_id, contact_id),
            "account_tokens": keys.push_tokens(account_id),
            "contact_tags": keys.contact_tags(account_id, contact_id),
        },
        args={
            "contact_id": contact_id,
            "token_prefix": keys.push_token(account_id, ""),
            "tag_members_prefix": keys.tag_members(account_id, ""),
        },
    )
    return bool(deleted)


async def remove_token(redis: Redis, account_id: str, contact_id: str, token: str) -> str | None:
    """Unregister ``token`` (either platform) from the contact; returns its member if it had it."""
    for platform in ("fcm", "apns"):
        m = tokens.member(platform, token)
        removed = await scripts.TOKEN_REMOVE.run(
            redis,
            keys={
                "contact_tokens": keys.contact_push_tokens(account_id, contact_id),
                "token": keys.push_token(account_id, m),
                "account_tokens": keys.push_tokens(account_id),
            },
            args={"member": m},
        )
        if removed:
            return m
    return None


async def active_tokens(redis: Redis, account_id: str, contact_id: str) -> list[str]:
    return sorted(
        cast(set[str], await redis.smembers(keys.contact_push_tokens(account_id, contact_id)))
    )


async def set_field(
    redis: Redis, account_id: str, contact_id: str, name: str, value: str | None
) -> None:
    """One field: ``name``, ``email``, ``phone`` (as given), or else an attribute."""
    field_name = name if name in ("name", "email", "phone") else _ATTR + name
    key = keys.contact(account_id, contact_id)
    if value is None:
        await redis.hdel(key, field_name)
    else:
        stored = value if field_name == name else json.dumps(value)
        await redis.hset(key, field_name, stored)
