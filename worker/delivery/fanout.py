"""A campaign's audience walk: pages of contacts become batch jobs on the ``bulk`` queue.

The walk keeps a cursor in the campaign record. Each page's batch, its job, the
counters and the cursor's move are written in one transaction: a walk that dies
redoes at most the page it was reading, and nothing of it was written. Pages are
read by rank from the sorted set of the audience (all contacts, or one tag's), so
a million contacts are never held in memory. Contacts added during the walk come
last and are included; a contact deleted during the walk shifts the ranks after it
by one, so one contact of the next page may be missed (no snapshot of the audience
is taken: for a million contacts it would block Redis for a second).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from worker.delivery import render
from worker.delivery.context import BUSY_RETRY_S, DeliveryContext, Outcome
from worker.models import (
    MARKETING,
    CampaignStatus,
    Channel,
    MessageStatus,
    PushContent,
    Template,
    WhatsAppContent,
    locales,
    timing,
)
from worker.models.timing import QuietHours
from worker.store import (
    account_settings,
    campaigns,
    caps,
    delayed,
    jobs,
    keys,
    locks,
    messages,
    preferences,
    scripts,
    templates,
    usage,
)
from worker.store.campaigns import Campaign
from worker.store.push import Device, encode_roster
from worker.store.tokens import split

log = logging.getLogger(__name__)

# How a batch job is published, as part of a transaction (the bench swaps in a queue
# nobody serves).
Publish = Callable[[Pipeline, str, str, str], None]
# How often the walk looks whether its campaign was paused or cancelled.
_STATUS_EVERY_S = 0.5


def batch_id(campaign_id: str, number: int) -> str:
    return f"{campaign_id}_{number}"


def parse_batch_id(value: str) -> tuple[str, int]:
    campaign_id, _, number = value.rpartition("_")
    return campaign_id, int(number)


@dataclass
class Page:
    """What one page of the audience came to."""

    contacts: int = 0  # in the audience (after a segment's attribute filter)
    recipients: int = 0  # sends planned: WhatsApp numbers, or push devices
    skipped: Counter[str] = field(default_factory=Counter)
    # Contacts whose send was put off to a later time, by reason (quiet_hours, local_time).
    deferred: Counter[str] = field(default_factory=Counter)
    deferred_until: float = 0.0  # the latest of those times


@dataclass(frozen=True)
class _Batch:
    """One batch job of a page, written into the page's transaction: published at once,
    or (``due``) left in the delayed set for its time."""

    number: int
    write: Callable[[Pipeline], None]
    due: float | None = None


async def run_fanout(
    ctx: DeliveryContext, account_id: str, campaign_id: str, publish: Publish = jobs.add_job
) -> Outcome:
    # The job's run is counted from here: waiting out a dead walker's lease counts
    # towards the time limits too.
    deadline = time.monotonic() + ctx.settings.campaign_job_run_s
    lock_key = keys.campaign_lock(account_id, f"{campaign_id}:fanout")
    async with locks.held(ctx.redis, lock_key, ctx.settings.lease_ttl_s) as token:
        if token is None:
            return Outcome(MessageStatus.QUEUED, BUSY_RETRY_S)
        return await _walk(ctx, publish, account_id, campaign_id, deadline)


async def _walk(
    ctx: DeliveryContext, publish: Publish, account_id: str, campaign_id: str, deadline: float
) -> Outcome:
    redis = ctx.redis
    campaign = await campaigns.load(redis, account_id, campaign_id)
    if campaign is None or campaign.fanout_done:
        return Outcome(MessageStatus.SENT)
    if campaign.status is CampaignStatus.SCHEDULED:
        due_in = (campaign.send_at or 0) - time.time()
        if due_in > 1:  # a copy of the job that came early (the send time was moved)
            return Outcome(MessageStatus.QUEUED, due_in)
        await campaigns.transition(redis, account_id, campaign_id, "start")
    size = ctx.settings.campaign_batch_size
    cursor = campaign.fanout_cursor
    if cursor == 0 and _total_known(campaign):
        await campaigns.count_now(
            redis, account_id, campaign_id, {"total": await _audience_size(redis, campaign)}
        )
    timing = await _timing(redis, campaign)
    deferred_until = campaign.deferred_until or 0.0
    looked_at = 0.0
    while True:
        if time.monotonic() - looked_at >= _STATUS_EVERY_S:
            looked_at = time.monotonic()
            job = _job(account_id, campaign_id)
            state = await campaigns.park(redis, account_id, campaign_id, job)
            if state is CampaignStatus.PAUSED:
                log.info("campaign %s paused: audience walk stopped at %d", campaign_id, cursor)
                return Outcome(MessageStatus.QUEUED)
            if state is not CampaignStatus.SENDING:
                # Cancelled (or deleted): nothing more is walked; what is queued is cancelled.
                await campaigns.count_now(redis, account_id, campaign_id, {}, {"fanout_done": "1"})
                return Outcome(MessageStatus.FAILED)
        ids = await _page_ids(redis, campaign, cursor, size)
        number = cursor // size
        page, batches = await _make_batch(ctx, campaign, timing, ids, number)
        cursor += len(ids)
        last = len(ids) < size
        incr = {
            "enqueued": page.contacts,
            "recipients": page.recipients,
            "skipped": sum(page.skipped.values()),
            **{f"skipped:{reason}": n for reason, n in page.skipped.items()},
            "deferred": sum(page.deferred.values()),
            **{f"deferred:{reason}": n for reason, n in page.deferred.items()},
        }
        if not _total_known(campaign):
            incr["total"] = page.contacts
        done = {"fanout_done": "1", "fanout_finished_at": repr(time.time())} if last else {}
        if page.deferred_until > deferred_until:
            deferred_until = page.deferred_until
            done["deferred_until"] = repr(deferred_until)
        task = jobs.CAMPAIGN_PUSH if campaign.channel is Channel.PUSH else jobs.CAMPAIGN_WHATSAPP
        async with redis.pipeline(transaction=True) as pipe:
            for batch in batches:
                batch.write(pipe)
                job_id = batch_id(campaign_id, batch.number)
                if batch.due is None:
                    publish(pipe, task, account_id, job_id)
                else:
                    member = delayed.member(task, account_id, job_id)
                    pipe.zadd(keys.delayed(), {member: batch.due})
                    deferred_key = keys.campaign_deferred(account_id, campaign_id)
                    pipe.sadd(deferred_key, member)
                    pipe.expire(deferred_key, ctx.message_ttl_s)
            campaigns.count(
                pipe,
                account_id,
                campaign_id,
                incr,
                {"fanout_cursor": str(cursor), "batches": str(number + 1), **done},
            )
            await pipe.execute()
        if last:
            log.info("campaign %s: audience walked, %d contacts", campaign_id, cursor)
            return Outcome(MessageStatus.SENT)
        if time.monotonic() > deadline:
            return Outcome(MessageStatus.QUEUED, 0.0)  # a fresh job goes on from the cursor


def _job(account_id: str, campaign_id: str) -> str:
    return f"{jobs.CAMPAIGN_FANOUT} {account_id} {campaign_id}"


def _total_known(campaign: Campaign) -> bool:
    """The audience's size is known before walking it, unless attributes filter it."""
    segment = campaign.audience.segment
    return segment is None or not segment.attributes


def _walked_set(campaign: Campaign) -> str:
    segment = campaign.audience.segment
    if segment is not None and segment.tag is not None:
        return keys.tag_members(campaign.account, segment.tag)
    return keys.contacts(campaign.account)


async def _audience_size(redis: Redis, campaign: Campaign) -> int:
    if campaign.audience.contact_ids is not None:
        return len(campaign.audience.contact_ids)
    return int(await redis.zcard(_walked_set(campaign)))


async def _page_ids(redis: Redis, campaign: Campaign, cursor: int, size: int) -> list[str]:
    if campaign.audience.contact_ids is not None:
        return campaign.audience.contact_ids[cursor : cursor + size]
    return cast(list[str], await redis.zrange(_walked_set(campaign), cursor, cursor + size - 1))


def _matches(raw: dict[str, str], wanted: dict[str, Any]) -> bool:
    for name, value in wanted.items():
        stored = raw.get(f"attr:{name}")
        if stored is None or json.loads(stored) != value:
            return False
    return True


@dataclass(frozen=True)
class _Reading:
    """What a campaign's pages need read of each contact, the same for every page."""

    wanted: dict[str, Any]  # the segment's attributes a contact must match
    push: PushContent | None  # None: a WhatsApp campaign
    templated: bool  # the content has placeholders to fill per contact
    # Whether to read each contact's hash at all: a plain push to all contacts needs only
    # their tokens, but an attribute filter, a placeholder, an explicit list of ids
    # (which may name contacts that do not exist) or opt-outs to check needs the hash.
    need_hash: bool
    # The category whose opt-outs skip a contact ("" for a transactional campaign).
    consent: str


def _reading(campaign: Campaign) -> _Reading:
    content = campaign.content
    segment = campaign.audience.segment
    wanted = segment.attributes if segment is not None else {}
    push = content if isinstance(content, PushContent) else None
    templated = push is None or render.has_placeholders(*_texts(content))
    consent = preferences.consent_category(campaign.category)
    need_hash = (
        bool(wanted) or templated or campaign.audience.contact_ids is not None or bool(consent)
    )
    return _Reading(wanted, push, templated, need_hash, consent)


@dataclass(frozen=True)
class _Timing:
    """When a campaign's contacts get their send, in their own zone: at the next
    ``local_at`` after the campaign started (a local send time), and not inside
    ``quiet`` (quiet hours: put off to the window's end)."""

    quiet: QuietHours | None
    local_at: str | None
    started_at: float
    default_zone: ZoneInfo

    def due(self, zone: ZoneInfo, now: float) -> tuple[float, str] | None:
        """When a contact in ``zone`` gets its send and why, if not now."""
        at, why = now, ""
        if self.local_at is not None:
            local = timing.next_time_of_day(self.started_at, self.local_at, zone)
            if local > now:
                at, why = local, "local_time"
        end = self.quiet.end_of(at, zone) if self.quiet is not None else None
        if end is not None:
            at, why = end, "quiet_hours"
        return (at, why) if at > now + _NOW_S else None


_UTC = ZoneInfo("UTC")
# A send due within this is sent now (the delayed set would give it back about as late).
_NOW_S = 1.0
# A page's put-off batches are numbered from here (a page's own is its page number).
DEFERRED_BASE = 10**9
_DEFERRED_PER_PAGE = 10_000  # > the largest page (DISPATCH_CAMPAIGN_BATCH_SIZE ≤ 5,000)


async def _timing(redis: Redis, campaign: Campaign) -> _Timing | None:
    """The campaign's timing rules (None: every contact now). Quiet hours are the
    campaign's own (``false``: none), else the account's; a transactional campaign has
    none. Contacts without a ``timezone`` of their own are in the quiet hours' zone."""
    settings = await account_settings.load(redis, campaign.account)
    quiet = settings.quiet_window(campaign.quiet_hours)
    if not preferences.consent_category(campaign.category):
        quiet = None
    if quiet is None and campaign.send_at_local is None:
        return None
    account_window = quiet or settings.quiet_hours
    zone = account_window.zone if account_window is not None else _UTC
    return _Timing(quiet, campaign.send_at_local, campaign.started_at or time.time(), zone)


async def _languages(ctx: DeliveryContext, campaign: Campaign) -> dict[str, Template]:
    """The template in the languages a WhatsApp campaign's page may send it in: the one
    it names, else every synced, approved one (each contact's locale picks). Read once a
    page: the template as it is now (it was checked when the campaign was made)."""
    content = campaign.content
    assert isinstance(content, WhatsAppContent)
    if content.language is None:
        return await templates.approved_languages(
            ctx.redis, campaign.account, content.template_name
        )
    found = await templates.get_template(
        ctx.redis, campaign.account, content.template_name, content.language
    )
    return {content.language: found} if found is not None else {}


async def _make_batch(
    ctx: DeliveryContext, campaign: Campaign, when: _Timing | None, ids: list[str], number: int
) -> tuple[Page, list[_Batch]]:
    """Read the page's contacts: what they come to, and how to write their batch into the
    caller's transaction (None when nobody on the page gets a send)."""
    redis, account = ctx.redis, campaign.account
    how = _reading(campaign)
    need_hash = how.need_hash or when is not None
    message_id = batch_id(campaign.id, number)
    channel = "push" if how.push is not None else "whatsapp"
    fields = _fields_needed(campaign, how.wanted) if need_hash else []
    fields += preferences.consent_fields(channel, how.consent)
    if when is not None:
        fields.append(timing.TIMEZONE_FIELD)
    hashes, tokens = await _read_page(redis, account, ids, fields, tokens=how.push is not None)
    # The numbers that wrote STOP: their WhatsApp marketing is skipped (one read a page).
    stopped = (
        await preferences.number_opt_outs(redis, account, (h.get("phone", "") for h in hashes))
        if channel == "whatsapp" and how.consent == MARKETING
        else {}
    )
    page = Page()
    devices: list[Device] = []
    recipients: list[messages.Message] = []
    languages = await _languages(ctx, campaign) if how.push is None else {}
    for i, contact_id in enumerate(ids):
        raw: dict[str, str] = hashes[i] if need_hash else {"id": contact_id}
        if not _in_audience(campaign, how, raw, page):
            continue
        page.contacts += 1
        if preferences.opted_out(raw, channel, how.consent, raw.get("phone", "") in stopped):
            page.skipped["opted_out"] += 1
            continue
        values = render.fields_of(raw) if how.templated else {}
        try:
            if how.push is not None:
                devices.extend(_push_devices(how, contact_id, tokens[i], values, page))
            else:
                recipient = _whatsapp_recipient(
                    campaign, f"{message_id}_{i}", contact_id, raw, values, languages, page
                )
                if recipient is not None:
                    recipients.append(recipient)
        except render.MissingField as missing:
            page.skipped["missing_field"] += 1
            log.debug("campaign %s: %s lacks %s", campaign.id, contact_id, missing.name)
    # Each contact's time: now, or put off (its zone read once per distinct value a page).
    now = time.time()
    due_of: dict[str, float] = {}
    why_of: dict[str, str] = {}
    zone_of: dict[str, ZoneInfo] = {}
    if when is not None:
        sending = {d.contact for d in devices} | {r.contact_id for r in recipients}
        by_zone: dict[str | None, tuple[ZoneInfo, tuple[float, str] | None]] = {}
        for i, contact_id in enumerate(ids):
            if contact_id not in sending:
                continue
            stored = hashes[i].get(timing.TIMEZONE_FIELD)
            if stored not in by_zone:
                zone = timing.contact_zone(stored, when.default_zone)
                by_zone[stored] = (zone, when.due(zone, now))
            zone_of[contact_id], put_off = by_zone[stored]
            if put_off is not None:
                due_of[contact_id], why_of[contact_id] = put_off
    devices, recipients = await _within_caps(
        ctx, campaign, channel, how, (devices, recipients), page, (now, due_of, why_of)
    )
    if when is not None and when.quiet is not None:
        # A send moved to the cap's next window may land in quiet hours there.
        for contact_id, why in why_of.items():
            if why == "frequency_cap":
                end = when.quiet.end_of(due_of[contact_id], zone_of[contact_id])
                due_of[contact_id] = end or due_of[contact_id]
    page.recipients = len(devices) + len(recipients)
    if not page.recipients:
        return page, []
    for contact_id in {d.contact or "" for d in devices} | {r.contact_id or "" for r in recipients}:
        if contact_id in due_of:
            page.deferred[why_of[contact_id]] += 1
            page.deferred_until = max(page.deferred_until, due_of[contact_id])
    groups: dict[float | None, tuple[list[Device], list[messages.Message]]] = {}
    for device in devices:
        groups.setdefault(due_of.get(device.contact or ""), ([], []))[0].append(device)
    for recipient in recipients:
        groups.setdefault(due_of.get(recipient.contact_id or ""), ([], []))[1].append(recipient)
    out: list[_Batch] = []
    ttl = ctx.message_ttl_s
    # A page's put-off batches are numbered apart from every page's own (a page has at most
    # as many distinct times as contacts, fewer than _DEFERRED_PER_PAGE).
    dues = sorted(d for d in groups if d is not None)
    for due, (group_devices, group_recipients) in groups.items():
        k = number if due is None else DEFERRED_BASE + number * _DEFERRED_PER_PAGE + dues.index(due)
        if how.push is not None:
            write = _push_batch_writer(
                campaign, batch_id(campaign.id, k), how.push, group_devices, ttl, due
            )
        else:
            for recipient in group_recipients:
                recipient.not_before = recipient.deferred_until = due
            write = _whatsapp_batch_writer(campaign, k, group_recipients, ttl)
        out.append(_Batch(k, write, due))
    return page, out


async def _within_caps(
    ctx: DeliveryContext,
    campaign: Campaign,
    channel: str,
    how: _Reading,
    sends: tuple[list[Device], list[messages.Message]],
    page: Page,
    times: tuple[float, dict[str, float], dict[str, str]],
) -> tuple[list[Device], list[messages.Message]]:
    """The page's sends less those of contacts over the account's frequency cap for this
    channel; the others are counted against it, each in the window of the time it goes
    (``times``: now, and the contacts put off with when and why). Over the cap, a contact
    is skipped (``frequency_cap``), or with the account's ``over_cap: defer`` put off to
    the next window's start and counted there (skipped if full there too).
    A transactional campaign is not capped."""
    devices, recipients = sends
    now, due_of, why_of = times
    if not how.consent or not (devices or recipients):
        return devices, recipients
    cap = (await caps.load(ctx.redis, campaign.account)).get(channel)
    if cap is None:
        return devices, recipients
    wanted = list(
        dict.fromkeys([d.contact or "" for d in devices] + [r.contact_id or "" for r in recipients])
    )
    by_window: dict[int, list[str]] = {}
    for contact_id in wanted:
        by_window.setdefault(cap.window_of(due_of.get(contact_id, now)), []).append(contact_id)
    allowed: set[str] = set()
    over: dict[int, list[str]] = {}
    for window, members in by_window.items():
        taken = await caps.take(
            ctx.redis, campaign.account, channel, cap, campaign.id, members, window=window
        )
        allowed |= taken
        over[window] = [c for c in members if c not in taken]
    if (await account_settings.load_cached(ctx.redis, campaign.account)).defer_over_cap:
        for window, members in over.items():
            if not members:
                continue
            later = await caps.take(
                ctx.redis, campaign.account, channel, cap, campaign.id, members, window=window + 1
            )
            for contact_id in later:
                due_of[contact_id] = float((window + 1) * cap.window_s)
                why_of[contact_id] = "frequency_cap"
            allowed |= later
    if len(allowed) < len(wanted):
        page.skipped["frequency_cap"] += len(wanted) - len(allowed)
        devices = [d for d in devices if d.contact in allowed]
        recipients = [r for r in recipients if r.contact_id in allowed]
    return devices, recipients


def _in_audience(campaign: Campaign, how: _Reading, raw: dict[str, str], page: Page) -> bool:
    """Whether the contact read as ``raw`` is in the audience. A contact that no longer
    exists is left out, but counted as skipped when the campaign named it by id: the
    sender asked for it, so the report says why it got nothing."""
    if how.need_hash and not raw:
        if campaign.audience.contact_ids is not None:
            page.contacts += 1
            page.skipped["contact_not_found"] += 1
        return False  # deleted while the campaign runs: no longer in the audience
    return not (how.wanted and not _matches(raw, how.wanted))


def _push_devices(
    how: _Reading, contact_id: str, members: list[str], values: dict[str, str], page: Page
) -> list[Device]:
    """The contact's devices, each with the push rendered for it (None: the same push for
    all, from the batch message); none, counted as skipped, when it has no token."""
    assert how.push is not None
    if not members:
        page.skipped["no_push_token"] += 1
        return []
    note = _render_push(how.push, values) if how.templated else None
    return [Device(*split(m), contact=contact_id, note=note) for m in sorted(members)]


def _whatsapp_recipient(
    campaign: Campaign,
    message_id: str,
    contact_id: str,
    raw: dict[str, str],
    values: dict[str, str],
    languages: dict[str, Template],
    page: Page,
) -> messages.Message | None:
    """The contact's own message, in the campaign's language or the one its locale picks;
    None, counted as skipped, when it has no phone (or no language of the template fits:
    ``no_template_language``). The template's category goes with it, for its usage."""
    content = campaign.content
    assert isinstance(content, WhatsAppContent)
    if not raw.get("phone"):
        page.skipped["no_phone"] += 1
        return None
    language = content.language or locales.pick(
        locales.stored_locale(raw.get(locales.LOCALE_FIELD)), languages
    )
    if language is None:
        page.skipped["no_template_language"] += 1
        return None
    template = languages.get(language)
    return messages.new(
        campaign.account,
        Channel.WHATSAPP,
        message_id,
        to=raw["phone"],
        contact_id=contact_id,
        template_name=content.template_name,
        language=language,
        parameters=[render.render(p, values) for p in content.parameters],
        campaign=campaign.id,
        send_category=campaign.category,
        category=usage.template_category(template.category if template else None),
    )


def _push_batch_writer(
    campaign: Campaign,
    message_id: str,
    content: PushContent,
    devices: list[Device],
    ttl: int,
    due: float | None = None,
) -> Callable[[Pipeline], None]:
    """A push batch is one message for all its devices, their roster beside it: a million
    devices are not a million message records."""
    account = campaign.account

    def write(pipe: Pipeline) -> None:
        batch = messages.new(
            account,
            Channel.PUSH,
            message_id,
            campaign=campaign.id,
            title=content.title,
            text=content.message,
            url=content.url,
            icon=content.icon,
            data=content.data,
            collapse_id=content.collapse_id,
            device_count=len(devices),
            send_category=campaign.category,
            deferred_until=due,
            **content.push_options(),
        )
        pipe.set(keys.message_roster(account, message_id), encode_roster(devices), ex=ttl)
        messages.add(pipe, batch, ttl)
        # Each contact of the batch is one push message accepted, as a send request is;
        # written with the page, so a walk that dies before the commit counts nothing.
        contacts = len({d.contact for d in devices})
        usage.count(pipe, account, time.time(), {usage.PUSH_SENT: contacts})

    return write


def _whatsapp_batch_writer(
    campaign: Campaign, number: int, recipients: list[messages.Message], ttl: int
) -> Callable[[Pipeline], None]:
    """A WhatsApp batch is a message per recipient (each has its own status from Meta),
    listed under the batch's key for the batch job to walk."""
    account = campaign.account

    def write(pipe: Pipeline) -> None:
        for message in recipients:
            messages.add(pipe, message, ttl)
        batch_key = keys.campaign_batch(account, campaign.id, number)
        pipe.rpush(batch_key, *(m.id for m in recipients))
        pipe.expire(batch_key, ttl)

    return write


def _texts(content: PushContent | WhatsAppContent) -> list[str | None]:
    """The content's texts that may hold placeholders."""
    if isinstance(content, PushContent):
        return [content.title, content.message, content.url, json.dumps(content.data)]
    return list(content.parameters)


def _fields_needed(campaign: Campaign, wanted: dict[str, Any]) -> list[str]:
    """What the walk reads of each contact: its id (it exists), the fields the content's
    placeholders name, the segment's attributes, and a WhatsApp recipient's phone."""
    content = campaign.content
    own = {"id"} if isinstance(content, PushContent) else {"id", "phone"}
    if isinstance(content, WhatsAppContent) and content.language is None:
        own.add(locales.LOCALE_FIELD)
    names = render.stored_fields(render.placeholder_names(*_texts(campaign.content)))
    return sorted({*own, *names, *(f"attr:{name}" for name in wanted)})


async def _read_page(
    redis: Redis, account: str, ids: list[str], fields: list[str], *, tokens: bool
) -> tuple[list[dict[str, str]], list[list[str]]]:
    """Those fields of each contact of the page (``{}`` for a contact that does not
    exist: any contact has its ``id``) and, if asked, its push-token members; one call."""
    if not ids or not (fields or tokens):
        return [], []
    suffix = keys.contact_push_tokens_parts(account)[1] if tokens else ""
    rows = await scripts.PAGE_READ.run(
        redis,
        args={
            "contact_prefix": keys.contact(account, ""),
            "tokens_suffix": suffix,
            "field_count": len(fields),
            "fields_then_ids": [*fields, *ids],
        },
    )
    hashes = [
        {name: value for name, value in zip(fields, row, strict=False) if value is not None}
        for row in rows
    ]
    members = [row[-1].split("\t") if row[-1] else [] for row in rows] if tokens else []
    return hashes, members


def _render_push(content: PushContent, values: dict[str, str]) -> dict[str, Any]:
    note: dict[str, Any] = {
        "title": render.render(content.title, values),
        "body": render.render(content.message, values),
    }
    if content.url:
        note["url"] = render.render(content.url, values)
    if content.icon:
        note["icon"] = content.icon
    if content.data is not None:
        note["data"] = render.render_data(content.data, values)
    return note
