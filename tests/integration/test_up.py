"""`dispatch up --demo` as `make demo` runs it: ready, the spec's answer, Ctrl-C stops all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.integration.conftest import SPEC_BODY
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
    redis_port, api_port, sim_port = free_port(), free_port(), free_port()
    # A Valkey left running by an earlier, killed run: found by its pidfile and stopped.
    stale = EmbeddedValkey(data_dir, redis_port)
    stale.start()
    assert stale.process is not None

    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
    env.update(
        {
            "DISPATCH_DATA_DIR": str(data_dir),
            "DISPATCH_EMBEDDED_REDIS_PORT": str(redis_port),
            "DISPATCH_API_PORT": str(api_port),
            "DISPATCH_SIM_PORT": str(sim_port),
            "COLUMNS": "200",
        }
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "up", "--demo"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line)
            if "ready" in line and "Ctrl-C" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(120), "".join(lines[-60:])
        assert stale.process.poll() is not None, "the stale Valkey was not stopped"
        output = "".join(lines)
        assert "HTTP 200" in output
        assert '"status": "sent"' in output
        assert '"channel": "whatsapp"' in output
        assert '"message_id": "wamid.' in output

        key = (data_dir / "demo.env").read_text().strip().removeprefix("DISPATCH_API_KEY=")
        assert key.startswith("msk_")
        assert oct((data_dir / "demo.env").stat().st_mode & 0o777) == "0o600"
        # The spec's curl example, verbatim but for the host and the key.
        response = httpx.post(
            f"http://127.0.0.1:{api_port}/api/v1/channels/whatsapp/send",
            content=json.dumps(SPEC_BODY),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "sent"

        pids = [int(p.read_text()) for p in (data_dir / "run").glob("*.pid")]
        pids.append(int((data_dir / "valkey.pid").read_text()))
        assert len(pids) == 4  # sim, worker, api, valkey
        assert all(_alive(pid) for pid in pids)
        pids += _group_members(pids)
        assert len(pids) >= 6  # the worker's two prefork children among them
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
    assert code == 0, "".join(lines[-40:])
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)]
    assert list((data_dir / "run").glob("*.pid")) == []
    # Data survives: the append-only file holds the demo account.
    assert (data_dir / "appendonlydir").is_dir()
