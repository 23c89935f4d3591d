"""Usage: the range a query asks for, the counters as the API shows them, and (against a
real Valkey) where each counter is incremented, once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import date

import pytest
from redis.asyncio import Redis

from worker.codes import Code
from worker.config import Settings
from worker.errors import Rejected
from worker.models import Attempt, Channel, MessageStatus
from worker.services.usage import date_range, report
from worker.store import messages, usage
from worker.store.client import create_redis

TODAY = date(2026, 3, 15)


def test_the_default_range_is_the_30_days_ending_today() -> None:
    assert date_range(None, None, TODAY) == (date(2026, 2, 14), TODAY)


def test_an_end_alone_takes_the_30_days_before_it_and_a_start_alone_ends_today() -> None:
    assert date_range(None, "2026-01-31", TODAY) == (date(2026, 1, 2), date(2026, 1, 31))
    assert date_range("2026-03-01", None, TODAY) == (date(2026, 3, 1), TODAY)


def test_both_ends_are_inclusive_and_one_day_is_a_range() -> None:
    assert date_range("2026-03-01", "2026-03-01", TODAY) == (date(2026, 3, 1), date(2026, 3, 1))
    assert date_range("2024-01-01", "2024-12-31", TODAY)  # 366 days: the most


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("2026-3-01", "2026-03-02", "start_date"),  # not zero-padded
        ("20260301", "2026-03-02", "start_date"),  # fromisoformat alone would take it
        ("2026-03-01", "2026-W10-1", "end_date"),  # nor this
        ("2026-02-29", "2026-03-02", "start_date"),  # not a leap year
        ("2026-03-01", "", "end_date"),
        ("2026-03-02", "2026-03-01", "start_date"),  # after the end
        ("2024-01-01", "2025-01-01", "start_date"),  # 367 days
        ("2026-03-20", None, "start_date"),  # after today, the default end
    ],
)
def test_a_bad_range_is_refused_naming_the_field(start: str, end: str | None, field: str) -> None:
    with pytest.raises(Rejected) as refused:
        date_range(start, end, TODAY)
    assert (refused.value.code, refused.value.field) == (Code.INVALID_REQUEST, field)


def test_the_summary_sums_categories_and_platforms() -> None:
    counters = {
        "wa:sent:MARKETING": 2,
        "wa:sent:free_form": 1,
        "wa:read:MARKETING": 1,
        "wa:failed:SOMETHING_NEW": 1,
        "push:sent": 3,
        "push:delivered:fcm": 4,
        "push:delivered:apns": 2,
        "push:failed:apns": 1,
    }
    categories = usage.categories_in([counters])
    assert categories == ["AUTHENTICATION", "MARKETING", "UTILITY", "free_form", "SOMETHING_NEW"]

    shown = usage.summary(counters, categories)

    wa = shown["whatsapp"]
    assert (wa["sent"], wa["read"], wa["failed"], wa["delivered"]) == (3, 1, 1, 0)
    assert wa["by_category"]["MARKETING"]["sent"] == 2
    assert wa["by_category"]["AUTHENTICATION"] == dict.fromkeys(usage.WHATSAPP_METRICS, 0)
    assert shown["push"] == {
        "sent": 3,
        "delivered": 6,
        "failed": 1,
        "by_platform": {
            "fcm": {"delivered": 4, "failed": 0},
            "apns": {"delivered": 2, "failed": 1},
        },
    }


def _run(settings: Settings, scenario: Callable[[Redis, str], Awaitable[None]]) -> None:
    async def main() -> None:
        redis = create_redis(settings)
        try:
            await scenario(redis, f"usage{time.time_ns()}")
        finally:
            await redis.aclose()

    asyncio.run(main())


async def _today(redis: Redis, account: str) -> dict[str, int]:
    today = date.fromisoformat(usage.day_of(time.time()))
    [counters] = await usage.read(redis, account, today, today)
    return counters


def test_a_whatsapp_send_counts_once_final_and_its_reports_once_each(settings: Settings) -> None:
    async def scenario(redis: Redis, account: str) -> None:
        message = messages.new(
            account, Channel.WHATSAPP, to="+919876543210", template_name="t", category="UTILITY"
        )
        await messages.create(redis, message, 60)
        retry = Attempt(attempt=1, at=time.time(), outcome="retry", error="busy")
        await messages.finish_attempt(redis, message, retry, MessageStatus.RETRYING, 60)
        assert await _today(redis, account) == {}  # a retry is no result yet

        wamid = f"wamid.{time.time_ns()}"
        sent = Attempt(attempt=2, at=time.time(), outcome="sent", provider_message_id=wamid)
        await messages.finish_attempt(redis, message, sent, MessageStatus.SENT, 60)
        # "read" overtakes "delivered": it counts as both; the late and repeated ones do not.
        for status in ("read", "delivered", "sent", "read", "delivered"):
            await messages.apply_delivery_status(redis, account, message.id, status, time.time())

        today = date.fromisoformat(usage.day_of(time.time()))
        shown = await report(redis, account, today, today)
        utility = shown["totals"]["whatsapp"]["by_category"]["UTILITY"]
        assert utility == {"sent": 1, "delivered": 1, "read": 1, "failed": 0, "delivery_failed": 0}

    _run(settings, scenario)


def test_a_message_stored_without_a_category_counts_as_its_kind(settings: Settings) -> None:
    """Messages accepted before the category was carried: a text is free_form, a template
    UNCATEGORIZED, in Python and in delivery_status.lua alike."""

    async def scenario(redis: Redis, account: str) -> None:
        text = messages.new(account, Channel.WHATSAPP, to="+919876543210", text="hi")
        template = messages.new(account, Channel.WHATSAPP, to="+919876543210", template_name="t")
        for message in (text, template):
            await messages.create(redis, message, 60)
            failed = Attempt(attempt=1, at=time.time(), outcome="failed", error="no")
            await messages.finish_attempt(redis, message, failed, MessageStatus.FAILED, 60)
            await messages.apply_delivery_status(
                redis, account, message.id, "failed", time.time(), "gone"
            )

        assert await _today(redis, account) == {
            "wa:failed:free_form": 1,
            "wa:delivery_failed:free_form": 1,
            "wa:failed:UNCATEGORIZED": 1,
            "wa:delivery_failed:UNCATEGORIZED": 1,
        }

    _run(settings, scenario)
