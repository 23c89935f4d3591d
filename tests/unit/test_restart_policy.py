"""When `dispatch up` starts a child again, and when it calls it a crash loop."""

from __future__ import annotations

from worker.stack.restart_policy import RestartPolicy, RestartTracker

POLICY = RestartPolicy(
    backoff_base_s=1.0, backoff_max_s=30.0, backoff_reset_s=60.0, max_exits=5, window_s=60.0
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _exit_after(
    tracker: RestartTracker, clock: FakeClock, up_s: float, code: int = 1
) -> float | None:
    """The child runs ``up_s`` seconds, exits, and is started again after the delay."""
    clock.now += up_s
    delay = tracker.exited(code)
    if delay is not None:
        clock.now += delay
        tracker.started()
    return delay


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    clock = FakeClock()
    # A loose window: this is about the delays only.
    tracker = RestartTracker(
        RestartPolicy(
            backoff_base_s=1.0, backoff_max_s=30.0, backoff_reset_s=60.0, max_exits=99, window_s=1
        ),
        clock,
    )
    delays = [_exit_after(tracker, clock, 2.0) for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_child_that_stayed_up_starts_over_at_the_base_delay() -> None:
    clock = FakeClock()
    tracker = RestartTracker(POLICY, clock)
    assert [_exit_after(tracker, clock, 1.0) for _ in range(3)] == [1.0, 2.0, 4.0]
    assert _exit_after(tracker, clock, 59.0) == 8.0  # not up long enough
    assert _exit_after(tracker, clock, 60.0) == 1.0
    assert _exit_after(tracker, clock, 1.0) == 2.0


def test_the_fifth_exit_within_the_window_is_a_crash_loop() -> None:
    clock = FakeClock()
    tracker = RestartTracker(POLICY, clock)
    delays = [_exit_after(tracker, clock, 0.5, code) for code in (1, 1, -9, 1)]
    assert delays == [1.0, 2.0, 4.0, 8.0]  # 19 s in all: well within the minute
    assert tracker.exited(3) is None
    assert tracker.recent_codes() == [1, 1, -9, 1, 3]


def test_exits_spread_wider_than_the_window_never_stop_the_stack() -> None:
    clock = FakeClock()
    tracker = RestartTracker(POLICY, clock)
    # One exit every 20 s: at most 3 of them within any minute.
    delays = [_exit_after(tracker, clock, 20.0 - 1.0) for _ in range(50)]
    assert None not in delays
    assert len(tracker.recent_codes()) <= 3


def test_an_exit_exactly_a_window_ago_no_longer_counts() -> None:
    clock = FakeClock()
    tracker = RestartTracker(
        RestartPolicy(
            backoff_base_s=0.0001, backoff_max_s=1, backoff_reset_s=60, max_exits=2, window_s=10
        ),
        clock,
    )
    assert tracker.exited(1) is not None
    clock.now += 10.0
    assert tracker.exited(1) is not None
    clock.now += 9.9
    assert tracker.exited(1) is None


def test_one_exit_allowed_means_no_restart_at_all() -> None:
    tracker = RestartTracker(
        RestartPolicy(
            backoff_base_s=1, backoff_max_s=30, backoff_reset_s=60, max_exits=1, window_s=60
        ),
        FakeClock(),
    )
    assert tracker.exited(0) is None


def test_the_backoff_stays_finite_however_many_quick_exits() -> None:
    clock = FakeClock()
    tracker = RestartTracker(
        RestartPolicy(
            backoff_base_s=1, backoff_max_s=30, backoff_reset_s=1e9, max_exits=2, window_s=1e-3
        ),
        clock,
    )
    delays = []
    for _ in range(2000):  # 2.0**1024 would overflow a float
        clock.now += 1.0
        delays.append(tracker.exited(1))
    assert delays[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert set(delays[5:]) == {30.0}
