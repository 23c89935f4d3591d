"""`dispatch up --demo` as `make demo` runs it: ready, the spec's answer, Ctrl-C stops all."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx

from tests.integration.conftest import SPEC_BODY
from worker.devstack import demo_stack
from worker.processes import EmbeddedValkey, free_port


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
        for url in re.findall(r"(http://\S+/metrics) \((?:worker|bulk)\)", output):
            assert "dispatch_sends_total" in httpx.get(url, timeout=10).text
        assert "dispatch_sends_total" in httpx.get(f"{stack.api_url}/metrics", timeout=10).text

        leaders = [int(p.read_text()) for p in (data_dir / "run").glob("*.pid")]
        leaders.append(int((data_dir / "valkey.pid").read_text()))
        assert len(leaders) == 7  # sim, worker, bulk worker, beat, flower, api, valkey
        assert all(_alive(pid) for pid in leaders)
        pids = leaders + _group_members(leaders)
        assert len(pids) >= 7  # the worker's two prefork children among them

        code = stack.stop()

    assert code == 0, stack.output[-3000:]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)]
    assert list((data_dir / "run").glob("*.pid")) == []
    # Data stays: the append-only file is there for the next start.
    assert (data_dir / "appendonlydir").is_dir()
