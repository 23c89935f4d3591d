"""What is done after a failed send: one decision for both channels.

The provider adapter's error class is its verdict on this one answer (a WhatsApp code
can be transient or not; a push client library failing outright is retried); the code's
row of ``worker.codes`` says what the code does to the sender's rate-limit keys and
whether it blames the recipient at all. ``after_error`` puts the two together with the
channel's retry schedule; each channel then acts on the decision with what it has
(WhatsApp: one message, a number's and a recipient's rate keys; push: one device of
many, its token).
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.codes import Code, meaning
from worker.delivery.retry import RetryPolicy
from worker.errors import AccountError, DeliveryError, InvalidTokenError, RetryableError


@dataclass(frozen=True)
class Decision:
    # Try again in this many seconds; None: this send is over (failed).
    retry_in_s: float | None = None
    # The provider's Retry-After: nothing may be sent before it, by any job.
    not_before_s: float | None = None
    # Failed after running out of attempts on an error worth retrying: a dead letter.
    dead_letter: bool = False
    # The account's credentials or standing were refused: stop the channel.
    suspend: bool = False
    # Slow the sender's rate-limit key down for a while.
    penalize: bool = False
    # Start the recipient's own pacing from empty (the sender's key goes on).
    exhaust_pair: bool = False
    # The device token is dead: remove it from its contact.
    prune: bool = False

    @property
    def retry(self) -> bool:
        return self.retry_in_s is not None


def blames_recipient(exc: DeliveryError) -> bool:
    """Whether the failure says anything about the recipient (the device token): missing
    or refused credentials, a platform not configured, do not; they are the channel's,
    and are not counted as the device's attempts."""
    return not isinstance(exc, AccountError) and not meaning(exc.code).channel


def after_error(exc: DeliveryError, attempt: int, retry: RetryPolicy) -> Decision:
    """The decision after ``exc`` ended attempt number ``attempt`` (1-based, counted the
    way ``retry`` counts a send's attempts)."""
    row = meaning(exc.code)
    retryable = exc if isinstance(exc, RetryableError) else None
    # A send of an account already stopped (channel_suspended) suspends nothing more.
    suspend = isinstance(exc, AccountError) and exc.code != Code.CHANNEL_SUSPENDED
    if retryable is not None and not retry.exhausted(attempt):
        return Decision(
            retry_in_s=retry.delay_s(attempt, retryable.retry_after_s),
            not_before_s=retryable.retry_after_s or None,
            suspend=suspend,
            penalize=row.throttle,
            exhaust_pair=row.pair_throttle,
        )
    return Decision(
        dead_letter=retryable is not None,
        suspend=suspend,
        penalize=row.throttle,
        exhaust_pair=row.pair_throttle,
        prune=isinstance(exc, InvalidTokenError),
    )
