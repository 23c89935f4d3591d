from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from worker.models.timing import QuietHours, contact_zone, next_time_of_day, zone_named

KOLKATA = ZoneInfo("Asia/Kolkata")


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_today_when_still_ahead_tomorrow_when_past() -> None:
    now = _ts("2026-11-28T10:00:00")  # 15:30 in Kolkata (UTC+5:30)
    assert next_time_of_day(now, "18:00", KOLKATA) == _ts("2026-11-28T12:30:00")
    assert next_time_of_day(now, "09:00", KOLKATA) == _ts("2026-11-29T03:30:00")
    assert next_time_of_day(now, "10:00", ZoneInfo("UTC")) == _ts("2026-11-29T10:00:00")


def test_wall_clock_time_across_a_dst_change() -> None:
    # New York leaves DST on 2026-11-01: 09:00 is 13:00 UTC before, 14:00 UTC after.
    now = _ts("2026-10-31T20:00:00")  # 16:00 EDT
    assert next_time_of_day(now, "09:00", ZoneInfo("America/New_York")) == _ts(
        "2026-11-01T14:00:00"
    )


def test_quiet_hours_across_midnight_end_today_or_tomorrow() -> None:
    window = QuietHours(start="21:00", end="08:00")
    # 23:30 in Kolkata: inside, ends tomorrow at 08:00 local (02:30 UTC).
    assert window.end_of(_ts("2026-11-28T18:00:00"), KOLKATA) == _ts("2026-11-29T02:30:00")
    # 05:30 in Kolkata: inside, ends today at 08:00 local.
    assert window.end_of(_ts("2026-11-28T00:00:00"), KOLKATA) == _ts("2026-11-28T02:30:00")
    # 15:30 in Kolkata: outside.
    assert window.end_of(_ts("2026-11-28T10:00:00"), KOLKATA) is None
    # The end itself is outside; the start inside.
    assert window.end_of(_ts("2026-11-28T02:30:00"), KOLKATA) is None
    assert window.end_of(_ts("2026-11-28T15:30:00"), KOLKATA) == _ts("2026-11-29T02:30:00")


def test_quiet_hours_within_a_day_and_in_seconds() -> None:
    window = QuietHours(start="12:00:00", end="12:00:30", timezone="Asia/Kolkata")
    assert window.zone == KOLKATA
    assert window.end_of(_ts("2026-11-28T06:30:10"), KOLKATA) == _ts("2026-11-28T06:30:30")
    assert window.end_of(_ts("2026-11-28T06:30:30"), KOLKATA) is None


@pytest.mark.parametrize(
    "body",
    [
        {"start": "21:00", "end": "21:00"},
        {"start": "24:00", "end": "08:00"},
        {"start": "9:00", "end": "08:00"},
        {"start": "21:00", "end": "08:00", "timezone": "Mars/Olympus"},
        {"start": "21:00", "end": "08:00", "timezone": "../../etc/passwd"},
        {"start": "21:00", "end": "08:00", "timezone": "/usr/share/zoneinfo/UTC"},
    ],
)
def test_bad_quiet_hours_are_refused(body: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        QuietHours.model_validate(body)


def test_a_contact_zone_falls_back_unless_real() -> None:
    utc = ZoneInfo("UTC")
    assert contact_zone('"Asia/Kolkata"', utc) == KOLKATA
    assert contact_zone('"Nowhere/Land"', utc) == utc
    assert contact_zone("not json", utc) == utc
    assert contact_zone("42", utc) == utc
    assert contact_zone(None, utc) == utc
    assert zone_named("x" * 65) is None
