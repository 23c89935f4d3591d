from __future__ import annotations

from datetime import UTC, datetime

from worker.delivery.automation import next_time_of_day


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_today_when_still_ahead_tomorrow_when_past() -> None:
    now = _ts("2026-11-28T10:00:00")  # 15:30 in Kolkata (UTC+5:30)
    assert next_time_of_day(now, "18:00", "Asia/Kolkata") == _ts("2026-11-28T12:30:00")
    assert next_time_of_day(now, "09:00", "Asia/Kolkata") == _ts("2026-11-29T03:30:00")
    assert next_time_of_day(now, "10:00", "UTC") == _ts("2026-11-29T10:00:00")  # not "now"


def test_wall_clock_time_across_a_dst_change() -> None:
    # New York leaves DST on 2026-11-01: 09:00 is 13:00 UTC before, 14:00 UTC after.
    now = _ts("2026-10-31T20:00:00")  # 16:00 EDT
    assert next_time_of_day(now, "09:00", "America/New_York") == _ts("2026-11-01T14:00:00")
