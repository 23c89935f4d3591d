"""`dispatch up --demo` as `make demo` runs it: ready, the spec's answer, Ctrl-C stops all."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis

from tests.integration.conftest import SPEC_BODY
from worker.stack.devstack import DemoStack, demo_stack
from worker.stack.processes import EmbeddedValkey, free_port

T = TypeVar("T")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _group_members(leaders: list[int]) -> list[int]:
    """Every process whose process group is led by one of ``leaders`` (pool children too)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                pgid = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[2])
            except (OSError, ValueError, IndexError):
                continue
            if pgid in leaders:
                members.append(int(entry.name))
    return members


def test_up_demo_reaches_ready_answers_the_spec_and_stops_everything_on_ctrl_c(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / ".data"
    redis_port = free_port()
    # A Valkey left running by an earlier, killed run: found by its pidfile and stopped.
    stale = EmbeddedValkey(data_dir, redis_port)
    stale.start()
    assert stale.process is not None

    with demo_stack(tmp_path, redis_port=redis_port) as stack:
        assert stale.process.poll() is not None, "the stale Valkey was not stopped"
        output = stack.output
        assert "HTTP 200" in output
        assert '"status": "sent"' in output
        assert '"channel": "whatsapp"' in output
        assert '"message_id": "wamid.' in output
        assert f"curl -X POST {stack.api_url}/api/v1/channels/whatsapp/send" in output

        assert stack.key.startswith("msk_")
        assert oct((data_dir / "demo.env").stat().st_mode & 0o777) == "0o600"
        # The spec's curl example, verbatim but for the host and the key.
        response = httpx.post(
            f"{stack.api_url}/api/v1/channels/whatsapp/send",
            content=json.dumps(SPEC_BODY),
            headers={"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "sent"

        # Flower, with the password made up for the demo and printed.
        match = re.search(r"Flower on (\S+) \(user (\S+), password (\S+)\)", output)
        assert match is not None, output[-3000:]
        assert match.group(1) == stack.flower_url
        assert httpx.get(f"{stack.flower_url}/api/workers", timeout=10).status_code == 401
        login = (match.group(2), match.group(3))
        workers = httpx.get(f"{stack.flower_url}/api/workers", auth=login, timeout=10)
        assert workers.status_code == 200
        # Worker metrics on their ports, as printed.
        urls = re.findall(r"(http://\S+/metrics) \((?:worker|bulk|webhooks)\)", output)
        assert len(urls) == 3, output[-3000:]
        for url in urls:
            assert "dispatch_sends_total" in httpx.get(url, timeout=10).text
        assert "dispatch_sends_total" in httpx.get(f"{stack.api_url}/metrics", timeout=10).text

        leaders = [int(p.read_text()) for p in (data_dir / "run").glob("*.pid")]
        leaders.append(int((data_dir / "valkey.pid").read_text()))
        # sim, worker, bulk worker, webhooks worker, beat, flower, api, valkey
        assert len(leaders) == 8
        assert all(_alive(pid) for pid in leaders)
        pids = leaders + _group_members(leaders)
        assert len(pids) >= 8  # the workers' prefork children among them

        code = stack.stop()

    assert code == 0, stack.output[-3000:]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)]
    assert list((data_dir / "run").glob("*.pid")) == []
    # Data stays: the append-only file is there for the next start.
    assert (data_dir / "appendonlydir").is_dir()


# Quick restarts, so that a test waits a fraction of a second per backoff.
FAST_RESTARTS = {
    "supervisor_backoff_base_s": "0.2",
    "supervisor_backoff_max_s": "1",
}


def _pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text())
    except (OSError, ValueError):  # not there yet, or being written
        return None


def _wait_for(what: str, check: Callable[[], T | None], stack: DemoStack, timeout_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout_s}s:\n{stack.output[-4000:]}")


def _new_pid(stack: DemoStack, pidfile: Path, old: int, timeout_s: float = 20) -> int:
    def started() -> int | None:
        pid = _pid(pidfile)
        return pid if pid is not None and pid != old and _alive(pid) else None

    return _wait_for(f"no new process in {pidfile.name}", started, stack, timeout_s)


def _status(stack: DemoStack) -> dict[str, Any]:
    """`dispatch status --json` against the stack's Redis, as an operator runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "status", "--json"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode in (0, 3), result.stderr  # 3: a queue without a worker, for now
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def _restarts(stack: DemoStack) -> dict[str, dict[str, Any]]:
    return {child["name"]: child for child in _status(stack)["restarts"]}


def _every_pid(data_dir: Path) -> list[int]:
    leaders = [int(p.read_text()) for p in (data_dir / "run").glob("*.pid")]
    leaders.append(int((data_dir / "valkey.pid").read_text()))
    return leaders + _group_members(leaders)


def _all_gone(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in pids if _alive(pid)]


DEVICES = 1200


def _start_slow_campaign(stack: DemoStack, auth: dict[str, str]) -> tuple[str, list[str]]:
    """A push campaign to DEVICES FCM devices against a provider slowed to 0.5 s a request,
    so that it is mid-way when something dies: (its id, the tokens)."""
    tokens = [f"upkill{i:05d}:APA91b-up-kill-campaign" for i in range(DEVICES)]
    items = [
        {"id": f"k{i:05d}", "tags": ["kill"], "push_tokens": [{"platform": "fcm", "token": t}]}
        for i, t in enumerate(tokens)
    ]
    imported = httpx.post(
        f"{stack.api_url}/api/v1/contacts/import", json=items, headers=auth, timeout=60
    )
    assert imported.json()["created"] == DEVICES, imported.text
    httpx.post(
        f"{stack.sim_url}/_sim/faults",
        json={"channel": "fcm", "kind": "delay", "delay_s": 0.5, "count": None},
    ).raise_for_status()
    created = httpx.post(
        f"{stack.api_url}/api/v1/campaigns",
        json={
            "name": "kill under up",
            "channel": "push",
            "content": {"title": "Flash", "message": "Sale"},
            "audience": {"segment": {"tag": "kill"}},
        },
        headers=auth,
    )
    campaign_id: str = created.json()["campaign"]["id"]
    sent = httpx.post(f"{stack.api_url}/api/v1/campaigns/{campaign_id}/send", headers=auth)
    assert sent.status_code == 202, sent.text
    return campaign_id, tokens


def _fcm_delivered(stack: DemoStack) -> list[str]:
    got = httpx.get(f"{stack.sim_url}/_sim/requests", params={"channel": "fcm"}, timeout=30)
    return [r["token"] for r in got.json()["requests"] if r.get("status") == 200]


def test_up_restarts_a_bulk_worker_killed_mid_campaign_which_resumes_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """SIGKILL of the bulk worker's main process (its pool goes with it) mid-campaign:
    `dispatch up` starts it again and counts it; the jobs it held come back after the
    visibility timeout (its heartbeat no longer marks them as seen), and their leases, no
    longer renewed, are taken over; SIGTERM still stops everything."""
    from scripts.benchkit.crash import LeaseWatch
    from worker.config import Settings

    # The shortest visibility timeout the settings allow: the killed worker's jobs come
    # back 4 s sooner than by default, the same way.
    overrides = {**FAST_RESTARTS, "visibility_timeout_s": "6"}
    with demo_stack(tmp_path, overrides=overrides) as stack:
        auth = {"Authorization": f"Bearer {stack.key}"}
        campaign_id, tokens = _start_slow_campaign(stack, auth)
        _wait_for("400 device sends", lambda: len(_fcm_delivered(stack)) >= 400 or None, stack, 60)
        settings = Settings(
            **{
                k.removeprefix("DISPATCH_").lower(): v
                for k, v in stack.env.items()
                if k.startswith("DISPATCH_")
            }
        )
        client = redis.Redis.from_url(settings.effective_redis_url, decode_responses=True)
        watch = LeaseWatch(client, "demo", settings.lease_ttl_s)
        bulk_pidfile = stack.data_dir / "run" / "bulk.pid"
        old = int(bulk_pidfile.read_text())
        pool = _group_members([old])
        assert len(pool) >= 2  # the worker and its prefork children
        held = watch.held()

        os.kill(old, signal.SIGKILL)
        killed_at = time.monotonic()
        at_kill = len(_fcm_delivered(stack))
        dead = watch.unrenewed(held)
        assert dead, "the bulk worker held no lease when it was killed"
        resumed_s = watch.taken_over(dead, killed_at, 40)
        client.close()
        new = _new_pid(stack, bulk_pidfile, old)

        assert f"bulk (pid {old}) killed by SIGKILL" in stack.output
        assert re.search(r"restarting in 0\.2s \(restart 1\)", stack.output), stack.output[-3000:]
        # Nothing of the killed worker's group is left (its pool went with it).
        assert not [pid for pid in pool if pid != old and _alive(pid)]

        def restarted_and_beating() -> dict[str, Any] | None:
            status = _status(stack)
            beats = [w for w in status["workers"] if "bulk" in w["queues"]]
            if not status["restarts"] or [w["pid"] for w in beats] != [new]:
                return None
            return status

        status = _wait_for("the new bulk worker beat", restarted_and_beating, stack, 30)
        assert status["workers_by_queue"] == {"transactional": 1, "bulk": 1, "webhooks": 1}
        [bulk] = status["restarts"]
        assert bulk["name"] == "bulk"
        assert bulk["restarts"] == 1
        assert bulk["last_exit_code"] == -signal.SIGKILL
        assert bulk["last_exit"] == "killed by SIGKILL"
        assert abs(bulk["last_exit_at"] - time.time()) < 60

        # Its output is still shown, under its name.
        def new_output() -> bool | None:
            after = stack.output.split(f"bulk restarted (pid {new}")[-1]
            return True if re.search(r"^ +bulk \| ", after, re.MULTILINE) else None

        _wait_for("no output from the new bulk worker", new_output, stack, 10)
        assert httpx.get(f"{stack.api_url}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{stack.api_url}/readyz", timeout=10).status_code == 200

        def completed() -> dict[str, Any] | None:
            body = httpx.get(
                f"{stack.api_url}/api/v1/campaigns/{campaign_id}", headers=auth
            ).json()["campaign"]
            return body if body["status"] == "completed" else None

        campaign = _wait_for("the campaign to complete after the kill", completed, stack, 90)
        received = _fcm_delivered(stack)

        pids = _every_pid(stack.data_dir)
        stack.process.send_signal(signal.SIGTERM)
        code = stack.process.wait(60)

    assert code == 0, stack.output[-3000:]
    stopping = stack.output.split("stopping…")[-1]
    assert "restarting in" not in stopping  # children stopped by us are not crashes
    assert not _all_gone(pids)
    assert list((stack.data_dir / "run").glob("*.pid")) == []

    lost = set(tokens) - set(received)
    duplicates = len(received) - len(set(received))
    print(f"\nup_kill: resumed in {resumed_s:.2f}s, {at_kill} sent before, {duplicates} twice")
    assert at_kill < DEVICES  # the kill landed mid-campaign
    assert lost == set()
    assert (campaign["stats"]["sent"], campaign["stats"]["failed"]) == (DEVICES, 0)
    assert resumed_s <= 15
    # Only what the killed pool had in flight can go twice: per pool process, the slices
    # of its job in flight (2 of at most 500 devices).
    assert duplicates <= 2 * 2 * 500


def test_up_restarts_the_embedded_valkey_and_the_stack_serves_again(tmp_path: Path) -> None:
    with demo_stack(tmp_path, overrides=FAST_RESTARTS) as stack:
        pidfile = stack.data_dir / "valkey.pid"
        old = int(pidfile.read_text())
        os.kill(old, signal.SIGKILL)
        new = _new_pid(stack, pidfile, old)
        assert f"valkey (pid {old}) killed by SIGKILL" in stack.output

        # Written once Valkey is back: the record survives the store it is kept in.
        restarts = _wait_for(
            "no restart of valkey in status", lambda: _restarts(stack) or None, stack, 20
        )
        assert set(restarts) == {"valkey"}  # the others reconnected without exiting
        assert restarts["valkey"]["restarts"] == 1
        assert restarts["valkey"]["last_exit"] == "killed by SIGKILL"
        assert _pid(pidfile) == new

        # The other children reconnect on their own: both queues served, a send goes out.
        def ready() -> bool | None:
            return httpx.get(f"{stack.api_url}/readyz", timeout=10).status_code == 200 or None

        _wait_for("/readyz not 200 after Valkey's restart", ready, stack, 30)
        response = httpx.post(
            f"{stack.api_url}/api/v1/channels/whatsapp/send",
            json=SPEC_BODY,
            headers={"Authorization": f"Bearer {stack.key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "sent"
        code = stack.stop()

    assert code == 0, stack.output[-3000:]


def test_up_stops_everything_when_a_child_crash_loops(tmp_path: Path) -> None:
    with demo_stack(tmp_path, overrides=FAST_RESTARTS) as stack:
        bulk_pidfile = stack.data_dir / "run" / "bulk.pid"
        pids = _every_pid(stack.data_dir)
        pid = int(bulk_pidfile.read_text())
        for kill in range(5):
            if kill:
                pid = _new_pid(stack, bulk_pidfile, pid)
                pids.append(pid)
            os.kill(pid, signal.SIGKILL)
        code = stack.process.wait(60)

    assert code == 1, stack.output[-3000:]
    output = stack.output
    assert "restart 4)" in output
    assert "restart 5)" not in output
    message = (
        "bulk exited 5 times within 60s (exit codes: SIGKILL, SIGKILL, SIGKILL, SIGKILL, "
        "SIGKILL); stopping everything.\nIts output is above (lines starting 'bulk |'); "
        "to watch it fail on its own, run: dispatch worker --queues bulk --nice 10 "
        "--metrics-port"
    )
    assert message in output, output[-3000:]
    assert output.rstrip().endswith("stopped")
    assert not _all_gone(pids + _group_members(pids))
    assert list((stack.data_dir / "run").glob("*.pid")) == []
    assert not (stack.data_dir / "valkey.pid").exists()
