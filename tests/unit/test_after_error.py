"""One decision after a failed send, for both channels (worker/delivery/policy.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from worker.codes import Code
from worker.delivery.policy import Decision, after_error, blames_recipient
from worker.delivery.retry import RetryPolicy
from worker.errors import (
    AccountError,
    DeliveryError,
    InvalidTokenError,
    PermanentError,
    RetryableError,
)

RETRY = RetryPolicy(max_attempts=3, base_delay_s=1.0, max_delay_s=8.0)
RETRY_LATER = "retry"  # any delay within the policy's ceiling

# (error, attempt) → what is done: retry (or not), dead letter, suspend, penalise the
# sender's key, exhaust the recipient's pacing, prune the token.
CASES = [
    # WhatsApp
    (RetryableError("busy"), 1, RETRY_LATER, {}),
    (RetryableError("busy"), 3, None, {"dead_letter": True}),
    (RetryableError("slow", code=Code.RATE_LIMITED), 1, RETRY_LATER, {"penalize": True}),
    (
        RetryableError("spam", code=Code.SPAM_RATE_LIMITED, retry_after_s=60.0),
        1,
        60.0,
        {"penalize": True},
    ),
    (
        RetryableError("pair", code=Code.RECIPIENT_RATE_LIMITED, retry_after_s=6.0),
        1,
        6.0,
        {"exhaust_pair": True},
    ),
    (
        RetryableError("pair", code=Code.RECIPIENT_RATE_LIMITED),
        3,
        None,
        {"exhaust_pair": True, "dead_letter": True},
    ),
    (PermanentError("no", code=Code.TEMPLATE_NOT_FOUND), 1, None, {}),
    (AccountError("token", code=Code.CHANNEL_AUTH_FAILED), 1, None, {"suspend": True}),
    (AccountError("banned", code=Code.ACCOUNT_RESTRICTED), 1, None, {"suspend": True}),
    # Push
    (InvalidTokenError("gone", code=Code.TOKEN_UNREGISTERED), 1, None, {"prune": True}),
    (PermanentError("bad", code=Code.INVALID_PAYLOAD), 1, None, {}),
    (
        RetryableError("jwt", code=Code.PROVIDER_TOKEN_REJECTED, retry_after_s=0.0),
        1,
        RETRY_LATER,
        {},
    ),
    (RetryableError("library", code=Code.PROVIDER_ERROR), 1, RETRY_LATER, {}),
    (AccountError("stopped", code=Code.CHANNEL_SUSPENDED), 1, None, {}),
    (DeliveryError("no FCM", code=Code.PLATFORM_NOT_CONFIGURED), 1, None, {}),
]


@pytest.mark.parametrize(("error", "attempt", "retry_in", "flags"), CASES)
def test_after_error(
    error: DeliveryError, attempt: int, retry_in: float | str | None, flags: dict[str, bool]
) -> None:
    decision = after_error(error, attempt, RETRY)
    if retry_in is None:
        assert decision.retry_in_s is None
    elif retry_in == RETRY_LATER:
        assert decision.retry_in_s is not None
        assert 0 <= decision.retry_in_s <= RETRY.max_delay_s
    else:
        assert decision.retry_in_s == retry_in  # the provider's Retry-After is a floor
    # Everything else is exactly the flags given: nothing more is done.
    assert replace(decision, retry_in_s=None, not_before_s=None) == Decision(**flags)


def test_the_retry_after_is_a_floor_for_every_job() -> None:
    decision = after_error(RetryableError("x", retry_after_s=5.0), 1, RETRY)
    assert decision.not_before_s == 5.0
    assert after_error(RetryableError("x", retry_after_s=0.0), 1, RETRY).not_before_s is None
    assert after_error(RetryableError("x", retry_after_s=5.0), 3, RETRY).not_before_s is None


@pytest.mark.parametrize(
    ("error", "blames"),
    [
        (RetryableError("busy"), True),
        (InvalidTokenError("gone", code=Code.TOKEN_INVALID), True),
        (PermanentError("bad", code=Code.INVALID_PAYLOAD), True),
        (AccountError("refused", code=Code.CHANNEL_AUTH_FAILED), False),
        (AccountError("stopped", code=Code.CHANNEL_SUSPENDED), False),
        (DeliveryError("no APNs", code=Code.PLATFORM_NOT_CONFIGURED), False),
    ],
)
def test_only_a_recipients_fault_counts_as_its_attempt(error: DeliveryError, blames: bool) -> None:
    assert blames_recipient(error) is blames
