"""Usage over a range of days: the query's checks, and the counters as the API shows them
(worker.store.usage keeps them)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from worker.codes import Code
from worker.errors import Rejected
from worker.store import usage

DEFAULT_DAYS = 30
MAX_DAYS = 366
# Exactly YYYY-MM-DD: date.fromisoformat alone also takes 20260101 and week dates.
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def today() -> date:
    return datetime.now(UTC).date()


def _parse(value: str, field: str) -> date:
    if _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise Rejected(Code.INVALID_REQUEST, f"{field} must be a date written YYYY-MM-DD", field)


def date_range(start: str | None, end: str | None, now: date) -> tuple[date, date]:
    """The UTC days asked for, both inclusive: ``end`` defaults to today (``now``),
    ``start`` to 30 days ending at ``end``. Refused: a malformed date, a start after the
    end, more than 366 days."""
    last = _parse(end, "end_date") if end is not None else now
    first = _parse(start, "start_date") if start is not None else last - timedelta(DEFAULT_DAYS - 1)
    if first > last:
        raise Rejected(
            Code.INVALID_REQUEST,
            f"start_date ({first}) is after end_date ({last})",
            "start_date",
        )
    if (last - first).days + 1 > MAX_DAYS:
        raise Rejected(
            Code.INVALID_REQUEST,
            f"The range covers {(last - first).days + 1} days; at most {MAX_DAYS} may be asked",
            "start_date",
        )
    return first, last


async def report(redis: Redis, account: str, first: date, last: date) -> dict[str, Any]:
    """Every day of the range (zeros where nothing happened), and the range's totals."""
    counters = await usage.read(redis, account, first, last)
    categories = usage.categories_in(counters)
    totals: dict[str, int] = {}
    for day in counters:
        for field, n in day.items():
            totals[field] = totals.get(field, 0) + n
    return {
        "success": True,
        "start_date": first.isoformat(),
        "end_date": last.isoformat(),
        "days": [
            {"date": day.isoformat(), **usage.summary(values, categories)}
            for day, values in zip(usage.days(first, last), counters, strict=True)
        ],
        "totals": usage.summary(totals, categories),
    }
