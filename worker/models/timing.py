"""Local time: time zones, times of day, quiet hours (docs/audience.md).

A recipient's zone is its contact attribute ``timezone`` when that names a real IANA
zone, else the account's (or a step's). Quiet hours are a window of wall-clock time
(``21:00``–``08:00`` crosses midnight) applied in each recipient's own zone; a send of a
non-transactional category that would go inside it waits for the window's end.
Wall-clock arithmetic: across a DST change 08:00 stays 08:00 (a missing local time,
02:30 on a spring-forward night, is read as zoneinfo reads it: with the offset before
the change).
"""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

# What an IANA key looks like; checked before zoneinfo looks on disk for it.
_ZONE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$")
# The contact hash field of a contact's zone (its attribute ``timezone``, JSON).
TIMEZONE_FIELD = "attr:timezone"
TIME_OF_DAY_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")


@functools.lru_cache(maxsize=1024)
def zone_named(name: str) -> ZoneInfo | None:
    """The zone ``name`` names, or None (not a key, or none such)."""
    if len(name) > 64 or not _ZONE_RE.match(name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _zone(value: str) -> str:
    if zone_named(value) is None:
        raise PydanticCustomError(
            "invalid_request",
            "Unknown time zone '{zone}' (an IANA name: 'Europe/Paris')",
            {"zone": value[:64]},
        )
    return value


def _time_of_day(value: str) -> str:
    if not TIME_OF_DAY_RE.match(value):
        raise PydanticCustomError("invalid_request", "A time of day is HH:MM or HH:MM:SS (24 h)")
    return value


TimeZoneName = Annotated[str, StringConstraints(max_length=64), AfterValidator(_zone)]
TimeOfDay = Annotated[str, StringConstraints(max_length=8), AfterValidator(_time_of_day)]


def contact_zone(stored: str | None, default: ZoneInfo) -> ZoneInfo:
    """The zone of a contact whose ``timezone`` attribute is ``stored`` (its JSON, as the
    contact's hash holds it), else ``default``."""
    if stored:
        try:
            name = json.loads(stored)
        except ValueError:
            return default
        if isinstance(name, str):
            return zone_named(name) or default
    return default


def _at(local: datetime, of_day: time) -> datetime:
    return local.replace(
        hour=of_day.hour, minute=of_day.minute, second=of_day.second, microsecond=0
    )


def next_time_of_day(now: float, until: str, zone: ZoneInfo) -> float:
    """The first ``until`` (``HH:MM[:SS]``) in ``zone`` after ``now``: today's if still
    ahead, else tomorrow's."""
    of_day = time.fromisoformat(until)
    local = datetime.fromtimestamp(now, zone)
    target = _at(local, of_day)
    if target <= local:
        target = _at(local + timedelta(days=1), of_day)
    return target.timestamp()


class QuietHours(BaseModel):
    """A window of local time in which non-transactional sends wait: ``start`` to
    ``end`` (``end`` before ``start``: the window crosses midnight), in each recipient's
    zone, ``timezone`` for recipients without one."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)

    start: TimeOfDay
    end: TimeOfDay
    timezone: TimeZoneName = "UTC"

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if time.fromisoformat(self.start) == time.fromisoformat(self.end):
            raise PydanticCustomError(
                "invalid_request", "Quiet hours need 'start' and 'end' to differ"
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        found = zone_named(self.timezone)
        assert found is not None  # validated
        return found

    def end_of(self, when: float, zone: ZoneInfo) -> float | None:
        """When the window ends, if ``when`` falls inside it in ``zone``; else None."""
        start, end = time.fromisoformat(self.start), time.fromisoformat(self.end)
        local = datetime.fromtimestamp(when, zone)
        now = local.time().replace(microsecond=0)
        if start < end:
            inside, tomorrow = start <= now < end, False
        else:  # across midnight: from start to 24:00, and from 00:00 to end
            inside, tomorrow = now >= start or now < end, now >= start
        if not inside:
            return None
        day = local + timedelta(days=1) if tomorrow else local
        return _at(day, end).timestamp()
