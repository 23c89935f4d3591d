"""`dispatch worker --nice N` / `--idle`: the priority a worker asks for is the one its
process (and so its pool's children) runs at, in a session of its own as `dispatch up`
starts it. Checked in a child process: a priority once lowered cannot be raised back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, os, sys
from worker.stack.processes import lower_priority
lower_priority(int(sys.argv[1]), idle=sys.argv[2] == "idle")
child = os.fork()
if child == 0:  # a pool child inherits it
    os._exit(0 if os.sched_getscheduler(0) == os.sched_getscheduler(os.getppid()) else 1)
_, status = os.waitpid(child, 0)
path = "/proc/self/autogroup"
group = open(path).read().split() if os.path.exists(path) else []
print(json.dumps({
    "nice": os.getpriority(os.PRIO_PROCESS, 0),
    "idle": os.sched_getscheduler(0) == os.SCHED_IDLE,
    "child_same": os.waitstatus_to_exitcode(status) == 0,
    "autogroup_nice": int(group[-1]) if group else None,
}))
"""


def _probe(niceness: int, mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(niceness), mode],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,  # as `dispatch up` starts its children
        cwd=Path(__file__).resolve().parents[2],
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_idle_is_the_idle_policy_at_niceness_19_for_the_pool_too() -> None:
    got = _probe(0, "idle")
    assert got["idle"] is True
    assert got["nice"] == 19
    assert got["child_same"] is True
    if got["autogroup_nice"] is not None:  # the session's weight follows (autogroup kernels)
        assert got["autogroup_nice"] == 19


def test_nice_lowers_the_process_and_its_session_but_keeps_the_normal_policy() -> None:
    got = _probe(10, "nice")
    assert got["nice"] == 10
    assert got["idle"] is False
    if got["autogroup_nice"] is not None:
        assert got["autogroup_nice"] == 10
