"""A tenant's webhook step aimed inside our network, end to end: refused when saved where
the URL says it all, refused when run where only DNS tells, and a slow target costs the
step its deadline, not the bulk queue its progress."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from tests.conftest import RECEIVER_HOST
from tests.integration.conftest import Tenant
from tests.support import wait_until


def _automation(tenant: Tenant, url: str) -> Any:
    return tenant.http.post(
        f"{tenant.api_url}/api/v1/automations",
        json={
            "name": "hook",
            "trigger": {"type": "manual"},
            "steps": [{"type": "webhook", "url": url, "secret": "whsec-12345678"}],
        },
        headers=tenant.auth(),
    )


def _run_once(tenant: Tenant, url: str, contact: str = "cct_abc123") -> dict[str, Any]:
    created = _automation(tenant, url)
    assert created.status_code == 201, created.text
    base = f"{tenant.api_url}/api/v1/automations/{created.json()['automation']['id']}"
    assert tenant.http.patch(f"{base}/activate", json={"active": True}, headers=tenant.auth())
    enrolled = tenant.http.post(
        f"{base}/enroll", json={"contact_id": contact}, headers=tenant.auth()
    )
    assert enrolled.status_code == 202, enrolled.text
    run_id = enrolled.json()["run_id"]

    def step() -> dict[str, Any] | None:
        run = tenant.get(f"/api/v1/automation-runs/{run_id}")
        timeline = {s["step"]: s for s in run.json()["run"]["timeline"]}
        return timeline.get(0) if timeline.get(0, {}).get("status") != "retrying" else None

    result: dict[str, Any] = wait_until(step, 60, "the webhook step")
    return result


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{api_port}/metrics",
        "http://[::1]:{api_port}/",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://localhost:{api_port}/",
        "http://ops:change-me@example.com/",
    ],
)
def test_a_webhook_aimed_inside_is_refused_when_saved(
    tenant: Tenant, api_port: int, url: str
) -> None:
    response = _automation(tenant, url.format(api_port=api_port))
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "url_not_allowed"
    assert response.json()["field"] == "steps[0].url"


def test_a_hostname_resolving_inside_is_refused_when_run(tenant: Tenant, api_port: int) -> None:
    """The machine's own name resolves to loopback: nothing can tell until it is resolved,
    so the step fails then, with no request made and nothing of the target revealed."""
    step = _run_once(tenant, f"http://{socket.gethostname()}:{api_port}/metrics")
    assert step["status"] == "failed"
    assert "resolves to a private, loopback or link-local address" in step["error"]
    assert "http_status" not in step


class _Slow(BaseHTTPRequestHandler):
    hits: ClassVar[int] = 0

    def do_POST(self) -> None:
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(1000):
            try:
                self.wfile.write(b".")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.5)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer((RECEIVER_HOST, 0), _Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_a_slow_drip_target_fails_its_step_within_the_deadline_and_campaigns_go_on(
    tenant: Tenant, slow_server: ThreadingHTTPServer
) -> None:
    """The step's attempts each end at the 2 s deadline (a failed attempt, retried with
    backoff), and meanwhile a campaign on the same bulk queue completes."""
    url = f"http://{RECEIVER_HOST}:{slow_server.server_port}/hook"
    created = _automation(tenant, url)
    automation_id = created.json()["automation"]["id"]
    base = f"{tenant.api_url}/api/v1/automations/{automation_id}"
    tenant.http.patch(f"{base}/activate", json={"active": True}, headers=tenant.auth())
    enrolled = tenant.http.post(
        f"{base}/enroll", json={"contact_id": "cct_abc123"}, headers=tenant.auth()
    )
    run_id = enrolled.json()["run_id"]

    def first_attempt() -> dict[str, Any] | None:
        run = tenant.get(f"/api/v1/automation-runs/{run_id}").json()["run"]
        step = {s["step"]: s for s in run["timeline"]}.get(0)
        return step if step and step.get("attempts") else None

    started = time.monotonic()
    step = wait_until(first_attempt, 20, "the first attempt to end")
    assert time.monotonic() - started < 10
    assert "no complete answer within 2s" in step["error"]
    assert step["status"] in ("retrying", "failed")

    campaign = tenant.http.post(
        f"{tenant.api_url}/api/v1/campaigns",
        json={
            "name": "meanwhile",
            "channel": "whatsapp",
            "content": {"template_name": "shipping_update", "parameters": ["X-1"]},
            "audience": {"contact_ids": ["cct_abc123"]},
        },
        headers=tenant.auth(),
    )
    assert campaign.status_code == 201, campaign.text
    campaign_id = campaign.json()["campaign"]["id"]
    sent = tenant.http.post(
        f"{tenant.api_url}/api/v1/campaigns/{campaign_id}/send", headers=tenant.auth()
    )
    assert sent.status_code in (200, 202), sent.text
    wait_until(
        lambda: (
            tenant.get(f"/api/v1/campaigns/{campaign_id}").json()["campaign"]["status"]
            == "completed"
        ),
        30,
        "the campaign, while the slow webhook is retried",
    )
