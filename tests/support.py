"""Helpers shared by the tests: service processes, polling, store access."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx

from worker.config import Settings
from worker.services.provisioning import redis_session
from worker.stack.processes import terminate

T = TypeVar("T")


class Service:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            argv,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")

    def stop(self) -> None:
        terminate(self.process.pid, group=True, timeout_s=10)
        self.process.wait(timeout=10)
        self._log_file.close()


def http_client(timeout_s: float = 30) -> httpx.Client:
    """The tests' client of the API and the simulator. It keeps an idle connection 2 s, not
    httpx's 5: uvicorn closes one idle for 5 s, and a request sent on it just then fails
    ("Server disconnected without sending a response") after a test's wait of ~5 s."""
    return httpx.Client(timeout=timeout_s, limits=httpx.Limits(keepalive_expiry=2.0))


def wait_until(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def run_async(coro_fn: Callable[..., Any], settings: Settings, *args: Any) -> Any:
    """Run one store operation against the test Valkey from synchronous test code."""

    async def _run() -> Any:
        async with redis_session(settings) as client:
            return await coro_fn(client, *args)

    return asyncio.run(_run())


def dispatch(
    env: dict[str, str], *args: str, input_: str | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``dispatch …`` as a user would: its own process, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        input=input_,
        check=False,
    )


def register_push_credentials(
    http: Any,
    sim_url: str,
    project_id: str,
    service_account: Any,
    apns_key: Any,
    topics: list[str],
) -> None:
    """Tell the simulator the public halves of an FCM service account and an APNs key."""
    http.put(
        f"{sim_url}/_sim/fcm/projects/{project_id}",
        json={
            "client_email": service_account.client_email,
            "public_key_pem": service_account.public_key_pem,
        },
    ).raise_for_status()
    http.put(
        f"{sim_url}/_sim/apns/keys/{apns_key.key_id}",
        json={
            "team_id": apns_key.team_id,
            "public_key_pem": apns_key.public_key_pem,
            "topics": topics,
        },
    ).raise_for_status()


class EventReceiver:
    """A webhook receiver for tests, on ``host`` (the tests' allowed 127.0.0.2): answers
    503 to its first ``refuse_first`` requests, then ``answer``; keeps each request's
    headers and body (``accepted``: those it answered 2xx) and counts them all."""

    def __init__(self, host: str, *, answer: int = 200, refuse_first: int = 0) -> None:
        self.answer, self.refuse_first, self.calls = answer, refuse_first, 0
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.calls += 1
                    refused = receiver.calls <= receiver.refuse_first
                    status = 503 if refused else receiver.answer
                    receiver.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://{host}:{self._server.server_port}/events"

    @property
    def accepted(self) -> list[tuple[dict[str, str], bytes]]:
        with self._lock:
            return [(h, b) for h, b, status in self.requests if 200 <= status < 300]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
