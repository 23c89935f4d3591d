"""What an operator relies on: Flower behind a login and without personal data, metrics
that count exactly the sends made, and a readiness check that follows the workers.

A stack of its own (FaultStack): these tests stop its worker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import (
    APNS_TOKEN_1,
    FCM_TOKEN_1,
    SPEC_BODY,
    PushTenant,
    make_push_tenant,
)
from tests.integration.faultstack import FaultStack
from tests.support import Service, wait_until
from worker.stack.processes import free_port

FLOWER_AUTH = ("ops", "s3cret-for-tests")


class OpsStack(FaultStack):
    metrics_port: int = 0
    flower_url: str = ""
    flower: Service | None = None


@pytest.fixture(scope="module")
def ops(
    tmp_path_factory: pytest.TempPathFactory, sim_url: str, sim_tls_port: int, data_dir: Path
) -> Iterator[OpsStack]:
    stack = OpsStack(tmp_path_factory.mktemp("ops"), sim_url, sim_tls_port, data_dir)
    stack.metrics_port = free_port()
    stack.start("--metrics-port", str(stack.metrics_port))
    flower_port = free_port()
    stack.env["DISPATCH_FLOWER_BASIC_AUTH"] = ":".join(FLOWER_AUTH)
    stack.flower = stack._service("flower", "flower", "--port", str(flower_port))
    stack.flower_url = f"http://127.0.0.1:{flower_port}"

    def flower_up() -> bool:
        assert stack.flower is not None
        stack.flower.check_alive()
        try:
            return httpx.get(f"{stack.flower_url}/healthcheck", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(flower_up, 30, "Flower")
    yield stack
    stack.stop()


@pytest.fixture
def tenant(ops: OpsStack, http: httpx.Client, sim_tls_port: int, sim_ca_file: Path) -> PushTenant:
    return make_push_tenant(ops.settings, ops.sim_url, ops.api_url, http, sim_tls_port, sim_ca_file)


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=5).text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _send_both(tenant: PushTenant) -> tuple[str, str]:
    """One WhatsApp send and one push to two devices, both waited for."""
    whatsapp = tenant.send({**SPEC_BODY, "contact_id": None})
    assert whatsapp.status_code == 200, whatsapp.text
    assert whatsapp.json()["status"] == "sent"
    registered = tenant.register("ops-1", ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1))
    assert registered.status_code in (200, 201), registered.text
    push = tenant.push({"contact_id": "ops-1", "title": "Hello", "message": "Secret text"})
    assert push.status_code == 200, push.text
    assert push.json()["delivered"] == 2
    return whatsapp.json()["id"], push.json()["id"]


# --- Flower -----------------------------------------------------------------------------


def test_flower_refuses_to_start_without_a_password(ops: OpsStack) -> None:
    env = {k: v for k, v in ops.env.items() if k != "DISPATCH_FLOWER_BASIC_AUTH"}
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "flower", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "DISPATCH_FLOWER_BASIC_AUTH" in done.stderr


@pytest.mark.parametrize("auth", [None, ("ops", "wrong"), ("someone", FLOWER_AUTH[1])])
def test_flower_answers_401_without_the_credentials(
    ops: OpsStack, auth: tuple[str, str] | None
) -> None:
    for path in ("/", "/tasks", "/api/tasks", "/api/workers"):
        response = httpx.get(f"{ops.flower_url}{path}", auth=auth, timeout=5)
        assert response.status_code == 401, path


def test_flower_lists_the_sends_with_ids_only(ops: OpsStack, tenant: PushTenant) -> None:
    whatsapp_id, push_id = _send_both(tenant)

    def listed() -> dict[str, Any] | None:
        response = httpx.get(f"{ops.flower_url}/api/tasks", auth=FLOWER_AUTH, timeout=5)
        assert response.status_code == 200
        tasks: dict[str, Any] = response.json()
        names = {
            t["name"]: t
            for t in tasks.values()
            if t.get("state") == "SUCCESS" and tenant.name in str(t.get("args"))
        }
        return names if {"whatsapp.send", "push.send"} <= set(names) else None

    tasks = wait_until(listed, 20, "Flower to list both sends as succeeded")
    assert whatsapp_id in tasks["whatsapp.send"]["args"]
    assert push_id in tasks["push.send"]["args"]
    task_page = httpx.get(
        f"{ops.flower_url}/task/{tasks['push.send']['uuid']}", auth=FLOWER_AUTH, timeout=5
    )
    assert task_page.status_code == 200
    everything = (
        httpx.get(f"{ops.flower_url}/api/tasks", auth=FLOWER_AUTH, timeout=5).text
        + httpx.get(f"{ops.flower_url}/tasks", auth=FLOWER_AUTH, timeout=5).text
        + task_page.text
    )
    for secret in (SPEC_BODY["to"], SPEC_BODY["to"].lstrip("+"), FCM_TOKEN_1, APNS_TOKEN_1):
        assert secret not in everything
    assert "Secret text" not in everything
    assert "ORD-98765" not in everything


# --- Prometheus --------------------------------------------------------------------------


def test_metrics_move_by_exactly_the_sends_made(ops: OpsStack, tenant: PushTenant) -> None:
    worker_url = f"http://127.0.0.1:{ops.metrics_port}/metrics"
    api_url = f"{ops.api_url}/metrics"
    _send_both(tenant)  # every label set exists before the counts are taken
    worker0, api0 = _samples(worker_url), _samples(api_url)
    for _ in range(3):
        _send_both(tenant)
    worker1, api1 = _samples(worker_url), _samples(api_url)

    def moved(before: dict[Any, float], after: dict[Any, float], name: str, **kv: str) -> float:
        return _value(after, name, **kv) - _value(before, name, **kv)

    sends = "dispatch_sends_total"
    assert moved(worker0, worker1, sends, channel="whatsapp", outcome="sent") == 3
    assert moved(worker0, worker1, sends, channel="fcm", outcome="sent") == 3
    assert moved(worker0, worker1, sends, channel="apns", outcome="sent") == 3
    assert moved(worker0, worker1, sends, channel="whatsapp", outcome="failed") == 0
    latency = "dispatch_provider_request_duration_seconds_count"
    assert moved(worker0, worker1, latency, channel="whatsapp") == 3
    accepted = "dispatch_api_sends_accepted_total"
    assert moved(api0, api1, accepted, channel="whatsapp") == 3
    assert moved(api0, api1, accepted, channel="push") == 3
    # An automation's steps: one run of "add a tag".
    created = tenant.http.post(
        f"{ops.api_url}/api/v1/automations",
        json={
            "name": "metrics",
            "trigger": {"type": "manual"},
            "steps": [{"type": "add_tag", "tag": "counted"}],
        },
        headers=tenant.auth(),
    ).json()["automation"]
    base = f"{ops.api_url}/api/v1/automations/{created['id']}"
    assert tenant.http.patch(
        f"{base}/activate", json={"active": True}, headers=tenant.auth()
    ).is_success
    enrolled = tenant.http.post(
        f"{base}/enroll", json={"contact_id": "ops-1"}, headers=tenant.auth()
    )
    assert enrolled.status_code == 202, enrolled.text
    steps = "dispatch_automation_steps_total"
    wait_until(
        lambda: moved(worker1, _samples(worker_url), steps, type="add_tag", outcome="done") == 1,
        10,
        "the automation step to be counted",
    )
    # What Redis knows, read at the scrape.
    assert ("dispatch_queue_depth", (("queue", "transactional"),)) in api1
    assert _value(api1, "dispatch_workers", queue="transactional") == 1
    assert _value(api1, "dispatch_workers", queue="bulk") == 1


# --- readiness ---------------------------------------------------------------------------


def test_readyz_follows_the_worker(ops: OpsStack) -> None:
    assert httpx.get(f"{ops.api_url}/healthz", timeout=5).json() == {"ok": True}
    ready = httpx.get(f"{ops.api_url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["workers"] == {"transactional": 1, "bulk": 1, "webhooks": 1}

    worker = ops.workers[0]
    worker.stop()  # a clean stop: the heartbeat goes at once
    ops.workers.remove(worker)
    started = time.monotonic()
    not_ready = wait_until(
        lambda: (r := httpx.get(f"{ops.api_url}/readyz", timeout=5)).status_code == 503 and r,
        15,
        "/readyz to say 503",
    )
    assert time.monotonic() - started < 5
    body = not_ready.json()
    assert body["ready"] is False
    assert "no worker alive on queue 'transactional'" in body["reasons"]
    assert "no worker alive on queue 'bulk'" in body["reasons"]
    assert _status(ops).returncode == 3  # dispatch status says so too

    ops.start_worker("--metrics-port", str(ops.metrics_port))
    back = wait_until(
        lambda: (r := httpx.get(f"{ops.api_url}/readyz", timeout=5)).status_code == 200 and r,
        15,
        "/readyz to say 200 again",
    )
    assert back.json()["ready"] is True


# --- logs --------------------------------------------------------------------------------


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def test_logs_are_json_lines_with_the_message_and_nothing_personal(
    ops: OpsStack, tenant: PushTenant
) -> None:
    whatsapp_id, push_id = _send_both(tenant)
    worker_log = ops.root / f"{ops.workers[0].name}.log"
    api_log = ops.root / "api.log"

    def attempts() -> dict[str, dict[str, Any]] | None:
        found = {
            line["message_id"]: line
            for line in _json_lines(worker_log)
            if line.get("event") == "send.attempt"
        }
        return found if {whatsapp_id, push_id} <= set(found) else None

    found = wait_until(attempts, 10, "the attempts' log lines")
    whatsapp = found[whatsapp_id]
    assert whatsapp["account"] == tenant.name
    assert whatsapp["channel"] == "whatsapp"
    assert whatsapp["outcome"] == "sent"
    assert whatsapp["latency_ms"] > 0
    assert found[push_id]["delivered"] == 2
    accepted = {
        line["message_id"] for line in _json_lines(api_log) if line.get("event") == "send.accepted"
    }
    assert {whatsapp_id, push_id} <= accepted
    everything = worker_log.read_text() + api_log.read_text()
    # Every line of these processes is JSON (Celery's and uvicorn's own included).
    for path in (worker_log, api_log):
        assert all(raw.startswith("{") for raw in path.read_text().splitlines() if raw.strip()), (
            path
        )
    for secret in (SPEC_BODY["to"], FCM_TOKEN_1, APNS_TOKEN_1, tenant.key):
        assert secret not in everything


# --- dispatch status ---------------------------------------------------------------------


def _status(ops: OpsStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "status", *args],
        env=ops.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_status_shows_queues_workers_and_send_rates(ops: OpsStack, tenant: PushTenant) -> None:
    for _ in range(2):
        _send_both(tenant)
    done = _status(ops, "--json")
    assert done.returncode == 0, done.stderr
    snap = json.loads(done.stdout)
    assert snap["workers_by_queue"] == {"transactional": 1, "bulk": 1, "webhooks": 1}
    assert snap["queues"] == {"transactional": 0, "bulk": 0, "webhooks": 0}
    # At least the sends of this test, spread over the last minute.
    assert snap["rates"]["whatsapp:sent"] * 60 >= 1.95  # rounded to 3 decimals
    assert snap["rates"]["fcm:sent"] * 60 >= 1.95
    assert len(snap["workers"]) == 1
    assert snap["workers"][0]["node"].startswith(ops.workers[0].name + "@")
    assert snap["workers"][0]["queues"] == ["bulk", "transactional", "webhooks"]
    table = _status(ops)
    assert table.returncode == 0, table.stderr
    for text in ("transactional", "bulk", "sends, last minute", "whatsapp", "dead letters"):
        assert text in table.stdout
