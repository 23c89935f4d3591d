"""What a recipient opted out of, and the one rule that says whether a send may go.

A contact's opt-outs are fields of its hash: ``optout:<channel>:<category>``, either part
``*`` for "every" (``optout:whatsapp:*``: every WhatsApp send; ``optout:*:marketing``:
marketing on every channel), each holding when and how it was set (``<unix time>
<source>``: ``api``, ``import``). A WhatsApp number that wrote an opt-out keyword (STOP,
UNSUBSCRIBE, or one of the account's own) is in the account's opted-out numbers
(``keys.whatsapp_optouts``) until it writes an opt-in one (START, or the account's own):
it refuses that number's marketing, whichever contact has it.

A send of category C on channel K is refused when any of (K, C), (K, *), (*, C), (*, *) is
set — except a ``transactional`` one, which checks nothing unless its caller asks. The
send scripts check the same (``send_lib.lua`` ``opted_out``); a campaign's pages use
``opted_out`` below.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from redis.asyncio import Redis

from worker.models import MARKETING, TRANSACTIONAL, PreferencesPatch, PreferenceTarget, iso
from worker.store import account_settings, keys

FIELD_PREFIX = "optout:"
ANY = "*"
# Matched on the whole text, trimmed, in any case ("Stop", " stop ").
OPT_OUT_KEYWORDS = frozenset({"STOP", "UNSUBSCRIBE"})
OPT_IN_KEYWORDS = frozenset({"START"})


def consent_category(category: str | None, respect_preferences: bool = False) -> str:
    """The category whose opt-outs a send checks: "" (none) for a transactional send
    unless its caller asked for the check."""
    category = category or TRANSACTIONAL
    return "" if category == TRANSACTIONAL and not respect_preferences else category


def field(target: PreferenceTarget) -> str:
    return f"{FIELD_PREFIX}{target.channel or ANY}:{target.category or ANY}"


def patch_fields(
    patch: PreferencesPatch, source: str, now: float | None = None
) -> dict[str, str | None]:
    """The contact hash's fields a preferences patch sets (opt-outs) and deletes (opt-ins):
    an opt-in after an opt-out of the same target in one patch wins."""
    stamp = f"{time.time() if now is None else now!r} {source}"
    out: dict[str, str | None] = {field(t): stamp for t in patch.opt_out}
    out.update({field(t): None for t in patch.opt_in})
    return out


def _targets(channel: str, category: str) -> tuple[str, ...]:
    """The opt-outs (``channel:category``) that refuse a send of ``category`` on
    ``channel``, most specific first (the send scripts read the same four)."""
    return (f"{channel}:{category}", f"{channel}:{ANY}", f"{ANY}:{category}", f"{ANY}:{ANY}")


def opted_out(
    contact_fields: Mapping[str, str], channel: str, category: str, number_opted_out: bool
) -> str | None:
    """The opt-out (``channel:category`` as stored) that refuses a send of ``category`` on
    ``channel`` to this contact, or None. ``category`` "" checks nothing.
    ``number_opted_out``: the contact's WhatsApp number wrote an opt-out keyword."""
    if not category:
        return None
    for name in _targets(channel, category):
        if FIELD_PREFIX + name in contact_fields:
            return name
    if number_opted_out and channel == "whatsapp" and category == MARKETING:
        return "whatsapp:marketing"
    return None


def consent_fields(channel: str, category: str) -> list[str]:
    """The contact hash fields ``opted_out`` reads for this channel and category."""
    return [FIELD_PREFIX + n for n in _targets(channel, category)] if category else []


def view(contact_fields: Mapping[str, str], number: str | None) -> dict[str, Any]:
    """A contact's preferences as the API shows them: each opt-out with when and how.
    ``number``: its WhatsApp number's keyword opt-out (``<unix time> <keyword>``), if any."""
    opted: list[dict[str, Any]] = []
    for name, value in sorted(contact_fields.items()):
        if not name.startswith(FIELD_PREFIX):
            continue
        channel, _, category = name[len(FIELD_PREFIX) :].partition(":")
        at, _, source = value.partition(" ")
        opted.append(
            {
                "channel": None if channel == ANY else channel,
                "category": None if category == ANY else category,
                "at": iso(float(at)),
                "source": source or "api",
            }
        )
    if number:
        at, _, keyword = number.partition(" ")
        opted.append(
            {
                "channel": "whatsapp",
                "category": MARKETING,
                "at": iso(float(at)),
                "source": f"inbound:{keyword}",
            }
        )
    return {"opted_out": opted}


def normalise_keyword(text: str) -> str:
    """A keyword as it is matched and stored: spaces collapsed, upper case."""
    return " ".join(text.split()).upper()


# No keyword is longer (an account's own are at most 30 characters): a longer text is
# not looked up, nor are the account's keywords read for it.
_KEYWORD_MAX = 30


def keyword(text: str, opt_out: Iterable[str] = (), opt_in: Iterable[str] = ()) -> str | None:
    """``opt_out`` or ``opt_in`` when an inbound text is one of the keywords (built in, or
    the account's own ``opt_out``/``opt_in``), else None."""
    word = normalise_keyword(text)
    if word in OPT_OUT_KEYWORDS or word in opt_out:
        return "opt_out"
    if word in OPT_IN_KEYWORDS or word in opt_in:
        return "opt_in"
    return None


async def apply_keyword(
    redis: Redis, account: str, number: str, text: str, at: float
) -> str | None:
    """Record an inbound keyword from ``number`` (E.164): ``opt_out`` or ``opt_in``, or None
    when the text is not a keyword."""
    if len(text) > 4 * _KEYWORD_MAX:
        return None
    own = await account_settings.load(redis, account)
    kind = keyword(text, own.opt_out_keywords, own.opt_in_keywords)
    if kind == "opt_out":
        record = f"{at!r} {normalise_keyword(text)}"
        await redis.hset(keys.whatsapp_optouts(account), number, record)
    elif kind == "opt_in":
        await forget_number(redis, account, number)
    return kind


async def number_opt_outs(redis: Redis, account: str, numbers: Iterable[str]) -> dict[str, str]:
    """The numbers among ``numbers`` that wrote an opt-out keyword: number → its record."""
    wanted = list(dict.fromkeys(n for n in numbers if n))
    if not wanted:
        return {}
    found = await redis.hmget(keys.whatsapp_optouts(account), wanted)
    return {
        n: (v.decode() if isinstance(v, bytes) else str(v))
        for n, v in zip(wanted, found, strict=True)
        if v is not None
    }


async def forget_number(redis: Redis, account: str, number: str) -> None:
    """Lift the number's keyword opt-out: its START, or an opt-in of WhatsApp marketing
    through the API (the account says the person consented again)."""
    await redis.hdel(keys.whatsapp_optouts(account), number)


async def opted_out_now(
    redis: Redis, account: str, channel: str, category: str, people: Mapping[str, str]
) -> dict[str, str]:
    """Of ``people`` (contact id → its WhatsApp number, or ""), those opted out of
    ``category`` on ``channel`` as things stand now: contact id → the opt-out. For a send
    put off (quiet hours, a local time): checked again when its time comes, so that an
    opt-out given meanwhile holds. One round trip per call (a pipeline)."""
    if not category or not people:
        return {}
    names = consent_fields(channel, category)
    ids = list(people)
    async with redis.pipeline(transaction=False) as pipe:
        for contact_id in ids:
            pipe.hmget(keys.contact(account, contact_id), names)
        rows = await pipe.execute()
    stopped = (
        await number_opt_outs(redis, account, people.values()) if channel == "whatsapp" else {}
    )
    out: dict[str, str] = {}
    for contact_id, row in zip(ids, rows, strict=True):
        found = {n: "1" for n, v in zip(names, row, strict=True) if v is not None}
        refusal = opted_out(found, channel, category, people[contact_id] in stopped)
        if refusal is not None:
            out[contact_id] = refusal
    return out
