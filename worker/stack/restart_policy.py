"""When `dispatch up` starts a child again after it exited, and when it gives up.

Kept apart from the processes so that the decision can be tested with a fake clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from worker.config import Settings

# 2**30 times the base is far past any cap; the bound keeps the float from overflowing
# for a child that crashes now and then for weeks without ever crash-looping.
_MAX_DOUBLINGS = 30


@dataclass(frozen=True)
class RestartPolicy:
    """The DISPATCH_SUPERVISOR_* settings (worker/config.py says what each one is for)."""

    backoff_base_s: float
    backoff_max_s: float
    backoff_reset_s: float
    max_exits: int
    window_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RestartPolicy:
        return cls(
            backoff_base_s=settings.supervisor_backoff_base_s,
            backoff_max_s=settings.supervisor_backoff_max_s,
            backoff_reset_s=settings.supervisor_backoff_reset_s,
            max_exits=settings.supervisor_max_restarts,
            window_s=settings.supervisor_restart_window_s,
        )


class RestartTracker:
    """One child's exits: how long to wait before starting it again, or None once it is
    crash-looping. ``clock`` is monotonic seconds (a fake one in tests)."""

    def __init__(self, policy: RestartPolicy, clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self._clock = clock
        self._started_at = clock()
        # Exits in a row that came before the child had been up backoff_reset_s.
        self._quick_exits = 0
        # (when, exit code) of the exits within the window, oldest first.
        self._recent: deque[tuple[float, int]] = deque()

    def started(self) -> None:
        self._started_at = self._clock()

    def uptime_s(self) -> float:
        return self._clock() - self._started_at

    def exited(self, code: int) -> float | None:
        """Count an exit with ``code``; the delay before the next start, or None when the
        child has exited ``max_exits`` times within the window."""
        now = self._clock()
        self._recent.append((now, code))
        while self._recent[0][0] <= now - self.policy.window_s:
            self._recent.popleft()
        if len(self._recent) >= self.policy.max_exits:
            return None
        if now - self._started_at >= self.policy.backoff_reset_s:
            self._quick_exits = 0
        doublings = min(self._quick_exits, _MAX_DOUBLINGS)
        self._quick_exits += 1
        return min(self.policy.backoff_base_s * 2.0**doublings, self.policy.backoff_max_s)

    def recent_codes(self) -> list[int]:
        """The exit codes within the window, oldest first (negative: killed by a signal)."""
        return [code for _, code in self._recent]
