"""Event webhooks end to end (real API, workers, beat, simulator and Valkey): a result
writes its event in its own transaction, the beat moves it to each subscribed endpoint's
queue, a bulk worker posts it signed; a receiver that fails for a while gets every event
once its retries run, and each event verifies with the Standard Webhooks library."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import RECEIVER_HOST
from tests.integration.conftest import SPEC_BODY, Tenant

# The spec's example without its contact (the tenant has no contact of that id).
TEMPLATE = {**{k: v for k, v in SPEC_BODY.items() if k != "contact_id"}, "to": "+14155550100"}


class _Receiver(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    refuse_first: ClassVar[int] = 0
    calls: ClassVar[int] = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            type(self).calls += 1
            refused = self.calls <= self.refuse_first
            if not refused:
                self.got.append((dict(self.headers), body))
        self.send_response(503 if refused else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.got.clear()
    _Receiver.calls = 0
    _Receiver.refuse_first = 0
    server = ThreadingHTTPServer((RECEIVER_HOST, 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{RECEIVER_HOST}:{server.server_port}/events"
    finally:
        server.shutdown()
        server.server_close()


def _endpoint(tenant: Tenant, url: str, events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = events
    answer = tenant.http.post(f"{tenant.api_url}/api/v1/webhooks", json=body, headers=tenant.auth())
    assert answer.status_code == 201, answer.text
    hook: dict[str, Any] = answer.json()["webhook"]
    # Workers read which accounts have endpoints every 2 s.
    time.sleep(2.5)
    return hook


def _events(secret: str, want: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while len(_Receiver.got) < want and time.monotonic() < deadline:
        time.sleep(0.1)
    return [Webhook(secret).verify(body, headers) for headers, body in list(_Receiver.got)]


def test_a_sent_message_is_posted_signed(tenant: Tenant, receiver: str) -> None:
    hook = _endpoint(tenant, receiver)
    sent = tenant.send(TEMPLATE)
    assert sent.status_code == 200, sent.text
    message_id = sent.json()["id"]
    [event] = [e for e in _events(hook["secret"], 1) if e["data"]["message_id"] == message_id]
    assert event["type"] == "message.sent"
    assert event["id"].startswith("evt_")
    assert event["data"]["status"] == "sent"
    assert event["data"]["provider_message_id"] == sent.json()["message_id"]
    assert "to" not in event["data"]  # the recipient's number is not the subscriber's
    assert "+14155550100" not in str(event)


def test_a_receiver_down_for_a_while_gets_every_event(tenant: Tenant, receiver: str) -> None:
    _Receiver.refuse_first = 6
    hook = _endpoint(tenant, receiver, ["message.sent"])
    ids = []
    for i in range(5):
        body = {**TEMPLATE, "to": f"+1415555011{i}"}
        answer = tenant.send(body)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["id"])
    events = _events(hook["secret"], 5, timeout_s=30)
    assert sorted(e["data"]["message_id"] for e in events) == sorted(ids)
    assert _Receiver.calls >= 5 + 6  # the refused attempts were made again
    deliveries = tenant.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()
    assert deliveries["total"] == 5
    assert {d["status"] for d in deliveries["deliveries"]} == {"delivered"}
    assert any(d["attempts"] > 1 for d in deliveries["deliveries"])


def test_an_endpoint_gets_only_the_types_it_asked_for(tenant: Tenant, receiver: str) -> None:
    hook = _endpoint(tenant, receiver, ["message.failed"])
    tenant.fault(code=131026, count=None, match={"to": "14155550177"})
    failed = tenant.send({**TEMPLATE, "to": "+14155550177"})
    assert failed.status_code >= 400
    ok = tenant.send({**TEMPLATE, "to": "+14155550178"})
    assert ok.status_code == 200
    _events(hook["secret"], 1)
    time.sleep(1.0)  # a wrongly sent message.sent would have come by now
    events = _events(hook["secret"], 1)
    assert [e["type"] for e in events] == ["message.failed"]
    assert events[0]["data"]["message_id"] == failed.json()["id"]
    assert events[0]["data"]["code"] == failed.json()["code"]
