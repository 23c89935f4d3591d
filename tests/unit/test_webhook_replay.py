"""What ``dispatch webhooks replay`` (and any API route reusing it) takes: ``--since`` as
a duration or an ISO 8601 time, and which statuses a replay may touch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.codes import Code
from worker.errors import Rejected
from worker.models.webhooks import DeliveryStatus
from worker.services.webhooks import DEFAULT_REPLAY, REPLAYABLE, parse_since, replay_statuses

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("30m", 1_800),
        ("2h", 7_200),
        ("1d", 86_400),
        ("1w", 604_800),
        ("1h30m", 5_400),
        (" 2H ", 7_200),
        ("0m", 0),
    ],
)
def test_a_duration_counts_back_from_now(text: str, seconds: int) -> None:
    assert parse_since(text, NOW) == NOW - seconds


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2025-06-01T08:00:00Z", datetime(2025, 6, 1, 8, tzinfo=UTC)),
        ("2025-06-01T10:00:00+02:00", datetime(2025, 6, 1, 8, tzinfo=UTC)),
        # No offset: UTC, as every time the CLI prints.
        ("2025-06-01 08:00", datetime(2025, 6, 1, 8, tzinfo=UTC)),
        ("2025-05-31", datetime(2025, 5, 31, tzinfo=UTC)),
        ("20250601T080000Z", datetime(2025, 6, 1, 8, tzinfo=UTC)),
    ],
)
def test_an_iso_time_is_taken_as_is(text: str, moment: datetime) -> None:
    assert parse_since(text, NOW) == moment.timestamp()


@pytest.mark.parametrize(
    "text", ["", "2", "h", "2 hours", "-2h", "1.5h", "2h-", "yesterday", "2025-13-01", "1y"]
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(Rejected) as refused:
        parse_since(text, NOW)
    assert refused.value.code is Code.INVALID_REQUEST
    assert refused.value.field == "since"
    assert "neither a duration" in refused.value.message


@pytest.mark.parametrize("text", ["2025-06-01T12:00:01Z", "2025-06-02", "2025-06-01T14:00+01:00"])
def test_a_time_in_the_future_is_refused(text: str) -> None:
    with pytest.raises(Rejected, match="in the future"):
        parse_since(text, NOW)


def test_now_itself_is_not_the_future() -> None:
    assert parse_since("2025-06-01T12:00:00Z", NOW) == NOW


def test_a_replay_takes_what_never_arrived_by_default() -> None:
    default = replay_statuses(None, include_delivered=False)
    assert default == DEFAULT_REPLAY == {DeliveryStatus.FAILED, DeliveryStatus.DROPPED}
    assert replay_statuses(None, include_delivered=True) == REPLAYABLE
    assert DeliveryStatus.PENDING not in REPLAYABLE
    assert DeliveryStatus.DELIVERED in REPLAYABLE


def test_named_statuses() -> None:
    assert replay_statuses("failed", include_delivered=False) == {DeliveryStatus.FAILED}
    assert replay_statuses(" retrying , dropped", include_delivered=False) == {
        DeliveryStatus.RETRYING,
        DeliveryStatus.DROPPED,
    }
    assert replay_statuses("delivered", include_delivered=True) == {DeliveryStatus.DELIVERED}


@pytest.mark.parametrize(
    ("names", "says"),
    [
        ("delivered", "reached the endpoint already"),
        ("failed,delivered", "reached the endpoint already"),
        ("pending", "still queued"),
        ("failed,lost", "unknown status 'lost'"),
        ("", "unknown status ''"),
    ],
)
def test_refused_statuses(names: str, says: str) -> None:
    with pytest.raises(Rejected, match=says) as refused:
        replay_statuses(names, include_delivered=False)
    assert refused.value.field == "status"
