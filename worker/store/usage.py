"""Usage counters: per account and UTC day, what was sent and what became of it.

One hash per account-day (``keys.usage``), its fields incremented inside the very
transaction or script that records the result they count, so that a result and its
count are never apart: a crash before the commit loses both (the job does it again),
after it keeps both (a redelivered job finds the message final and stops). Reading a
range is one HGETALL per day, never a scan.

Fields (``n`` a count):

- ``wa:<metric>:<category>``: WhatsApp messages, ``metric`` one of ``sent`` (the
  provider accepted the send), ``failed`` (the send ended failed: refused for good, or
  out of attempts or age), ``delivered``, ``read`` (the first status webhook saying so;
  a ``read`` without a ``delivered`` before it counts as both), ``delivery_failed`` (a
  ``failed`` status webhook after the provider had accepted it). ``category``: the
  template's category as WhatsApp reports it (``MARKETING``, ``UTILITY``,
  ``AUTHENTICATION``), ``UNCATEGORIZED`` for a template without one, ``free_form`` for a
  free-form text.
- ``push:sent``: push messages accepted (one per send request or automation step, one
  per contact of a campaign batch).
- ``push:<delivered|failed>:<platform>``: devices the provider took the notification
  for, or that ended failed (a campaign's devices left unsent by its cancellation are
  not failures and are not counted).

The day is the UTC day the service recorded the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from worker.store import keys

# A little over a year, so that "the same day last year" can still be read.
KEEP_S = 400 * 86_400

FREE_FORM = "free_form"
UNCATEGORIZED = "UNCATEGORIZED"
# Always shown, zeros included, so that a client can rely on them; another category
# WhatsApp reports shows once something was counted under it.
CATEGORIES = ("AUTHENTICATION", "MARKETING", "UTILITY", FREE_FORM)
PLATFORMS = ("fcm", "apns")
WHATSAPP_METRICS = ("sent", "delivered", "read", "failed", "delivery_failed")
PUSH_DEVICE_METRICS = ("delivered", "failed")
PUSH_SENT = "push:sent"


def day_of(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def key(account_id: str, at: float) -> str:
    """The account's hash for the UTC day of ``at``."""
    return keys.usage(account_id, day_of(at))


def category(category: str | None, template_name: str | None) -> str:
    """A WhatsApp message's category for counting (delivery_status.lua says the same)."""
    if category:
        return category
    return UNCATEGORIZED if template_name else FREE_FORM


def template_category(reported: str | None) -> str:
    """The category a template message is counted under, from the template's record
    (whatsapp_send.lua says the same)."""
    return reported.upper() if reported else UNCATEGORIZED


def whatsapp_field(metric: str, category: str) -> str:
    return f"wa:{metric}:{category}"


def push_field(metric: str, platform: str) -> str:
    return f"push:{metric}:{platform}"


def count(pipe: Pipeline, account_id: str, at: float, counts: Mapping[str, int]) -> None:
    """Add ``counts`` (field → n) to the account's day, in the caller's MULTI: one HINCRBY
    per non-zero field, and one EXPIRE."""
    nonzero = {f: n for f, n in counts.items() if n > 0}
    if not nonzero:
        return
    day_key = key(account_id, at)
    for field, n in nonzero.items():
        pipe.hincrby(day_key, field, n)
    pipe.expire(day_key, KEEP_S)


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


async def read(redis: Redis, account_id: str, start: date, end: date) -> list[dict[str, int]]:
    """Each day's counters from ``start`` to ``end`` (inclusive), in one pipeline."""
    span = days(start, end)
    async with redis.pipeline(transaction=False) as pipe:
        for day in span:
            pipe.hgetall(keys.usage(account_id, day.isoformat()))
        raws: list[dict[Any, Any]] = await pipe.execute()
    return [{_text(f): int(n) for f, n in raw.items()} for raw in raws]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def summary(counters: Mapping[str, int], categories: list[str]) -> dict[str, Any]:
    """One day's (or the range's summed) counters as the API shows them."""
    by_category = {
        c: {m: counters.get(whatsapp_field(m, c), 0) for m in WHATSAPP_METRICS} for c in categories
    }
    by_platform = {
        p: {m: counters.get(push_field(m, p), 0) for m in PUSH_DEVICE_METRICS} for p in PLATFORMS
    }
    return {
        "whatsapp": {
            **{m: sum(c[m] for c in by_category.values()) for m in WHATSAPP_METRICS},
            "by_category": by_category,
        },
        "push": {
            "sent": counters.get(PUSH_SENT, 0),
            **{m: sum(p[m] for p in by_platform.values()) for m in PUSH_DEVICE_METRICS},
            "by_platform": by_platform,
        },
    }


def categories_in(counters: list[dict[str, int]]) -> list[str]:
    """The categories to show: the usual ones, and any other counted in the range."""
    seen = {f.split(":", 2)[2] for day in counters for f in day if f.startswith("wa:")}
    return [*CATEGORIES, *sorted(seen - set(CATEGORIES))]
