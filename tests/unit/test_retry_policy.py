from __future__ import annotations

import pytest

from worker.delivery.retry import RetryPolicy
from worker.providers.retry_after import parse_retry_after


def test_full_jitter_stays_under_the_exponential_ceiling() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay_s=1.0, max_delay_s=10.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        delays = [policy.delay_s(attempt) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in delays)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(delays) < ceiling * 0.2
        assert max(delays) > ceiling * 0.8


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay_s=1.0, max_delay_s=10.0)
    assert all(policy.delay_s(1, retry_after_s=30.0) == 30.0 for _ in range(50))


def test_exhausted_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay_s=1.0, max_delay_s=10.0)
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, True, True]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), ("0.5", 0.5), ("-3", 0.0), (None, None), ("", None), ("soon", None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    import time
    from email.utils import formatdate

    parsed = parse_retry_after(formatdate(time.time() + 120, usegmt=True))
    assert parsed is not None
    assert 115 <= parsed <= 121
