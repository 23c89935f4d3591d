"""When a single send (the API's, an automation step's) goes, in which language, and until
when it is worth sending, from the account's settings (docs/audience.md): its own expiry, else its
category's default; put off to the end of quiet hours when it is not transactional and
would go inside them, in the contact's zone (attribute ``timezone``) or the window's."""

from __future__ import annotations

import time
from datetime import datetime

from redis.asyncio import Redis

from worker.models import TRANSACTIONAL, Channel, expiry_of, locales, timing
from worker.store import account_settings, keys, templates
from worker.store.messages import Message


async def settle_timing(
    redis: Redis,
    message: Message,
    consent: str,
    ttl_s: int | None,
    expires_at: datetime | None,
    *,
    now: float | None = None,
) -> None:
    """Set ``message.expires_at`` and, when quiet hours put it off, ``deferred_until``
    (and ``not_before``). ``consent``: the category whose preferences the send respects
    ("" for none: a transactional send, which quiet hours do not hold either).
    ``ttl_s``: the send's own (a push's ``ttl_s`` of 0 asks for no expiry)."""
    settings = await account_settings.load_cached(redis, message.account)
    message.expires_at = expiry_of(message.created_at, ttl_s, expires_at)
    if ttl_s is None and expires_at is None:
        default = settings.default_ttl.get(message.send_category or TRANSACTIONAL)
        if default:
            message.expires_at = message.created_at + default
    window = settings.quiet_hours
    if not consent or window is None:
        return
    zone = window.zone
    if message.contact_id:
        stored = await redis.hget(
            keys.contact(message.account, message.contact_id), timing.TIMEZONE_FIELD
        )
        zone = timing.contact_zone(
            stored.decode() if isinstance(stored, bytes) else stored, window.zone
        )
    end = window.end_of(time.time() if now is None else now, zone)
    if end is not None:
        message.deferred_until = end
        if message.channel is Channel.WHATSAPP:
            message.not_before = end


async def template_language(
    redis: Redis, account: str, contact_id: str, template_name: str
) -> str | None:
    """The language a send of ``template_name`` that names none goes in for this contact:
    its ``locale`` picks among the template's synced languages (models/locales.py); None
    when the contact has no locale (the default, ``en``, applies) or none fits."""
    stored = await redis.hget(keys.contact(account, contact_id), locales.LOCALE_FIELD)
    locale = locales.stored_locale(stored.decode() if isinstance(stored, bytes) else stored)
    if locale is None:
        return None
    return locales.pick(locale, await templates.approved_languages(redis, account, template_name))
