"""Retry policy: exponential backoff with full jitter, ``Retry-After`` as a floor."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_delay_s: float
    max_delay_s: float

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Delay before attempt ``attempt + 1``; full jitter spreads a burst of retries."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay
