"""The supervisor behind `dispatch up`, on tiny children: restarts, pidfiles, the crash loop."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from worker.stack.processes import Child, Supervisor
from worker.stack.restart_policy import RestartPolicy


def _supervisor(tmp_path: Path, max_exits: int) -> tuple[Supervisor, Console]:
    console = Console(record=True, width=300)
    policy = RestartPolicy(
        backoff_base_s=0.05,
        backoff_max_s=0.1,
        backoff_reset_s=60,
        max_exits=max_exits,
        window_s=60,
    )
    return Supervisor(tmp_path / "run", policy, console), console


def test_a_child_that_keeps_exiting_is_restarted_then_called_a_crash_loop(
    tmp_path: Path,
) -> None:
    supervisor, console = _supervisor(tmp_path, max_exits=3)
    pids: list[int] = []

    def report(children: list[Child]) -> bool:
        # Called at each pass with something new: the pidfile names the current process.
        pids.append(int(children[0].pidfile.read_text()))
        return True

    supervisor.report = report
    child = supervisor.spawn("crashy", [sys.executable, "-c", "raise SystemExit(3)"], {})

    assert supervisor.wait() is child
    assert len(set(pids)) == 3  # a new pid in the pidfile for each start
    assert child.restarts == 2
    text = console.export_text()
    assert f"crashy (pid {pids[0]}) exit code 3 after" in text
    assert "restarting in 0.05s (restart 1)" in text
    assert "restarting in 0.1s (restart 2)" in text
    assert f"crashy restarted (pid {pids[-1]}, restart 2)" in text
    assert "restart 3" not in text
    assert child.crash_loop_message().startswith(
        "crashy exited 3 times within 60s (exit codes: 3, 3, 3); stopping everything."
    )
    supervisor.stop_all()
    assert not child.pidfile.exists()


def test_output_of_a_restarted_child_is_still_prefixed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    supervisor, _ = _supervisor(tmp_path, max_exits=2)
    child = supervisor.spawn("talky", [sys.executable, "-c", "print('hello')"], {})
    assert supervisor.wait() is child
    time.sleep(0.2)  # the pump threads, after the process
    supervisor.stop_all()
    assert capfd.readouterr().err.count("   talky | hello\n") == 2
