"""Limits before work: an anonymous or oversized request costs us nothing, a key cannot
flood the API, and the WhatsApp webhook refuses what could not be Meta's before looking
anything up."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from tests.integration.conftest import SPEC_BODY, Tenant
from tests.security.conftest import ApiFactory
from worker.models import Scope

GB = 1 << 30


def _raw_request(port: int, head: str, body_chunks: Iterator[bytes], timeout_s: float = 10) -> str:
    """Send the head, then body chunks until the server answers (or stops reading); the
    status line of its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        conn.sendall(head.encode())
        deadline = time.monotonic() + timeout_s
        for chunk in body_chunks:
            readable, _, _ = select.select([conn], [], [], 0)
            if readable or time.monotonic() > deadline:
                break
            try:
                conn.sendall(chunk)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                break  # the server stopped reading: its answer is waiting
        answer = b""
        conn.settimeout(max(0.5, deadline - time.monotonic()))
        while b"\r\n" not in answer:
            data = conn.recv(65536)
            if not data:
                break
            answer += data
    return answer.split(b"\r\n", 1)[0].decode()


def _zeros(total: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"0" * chunk
        sent += chunk


def _chunked(total: int) -> Iterator[bytes]:
    for piece in _zeros(total):
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"


def _api_rss_mb(stack: dict[str, Any]) -> float:
    return float(psutil.Process(stack["api"].process.pid).memory_info().rss) / 1e6


@pytest.mark.parametrize("chunked", [False, True])
def test_a_2_gb_body_without_a_key_is_401_before_it_is_read(
    stack: dict[str, Any], api_port: int, chunked: bool
) -> None:
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {2 * GB}"
    head = (
        "POST /api/v1/channels/whatsapp/send HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    )
    rss = _api_rss_mb(stack)
    started = time.monotonic()
    status = _raw_request(api_port, head, _chunked(2 * GB) if chunked else _zeros(2 * GB))
    assert status.startswith("HTTP/1.1 401"), status
    assert time.monotonic() - started < 5
    assert _api_rss_mb(stack) - rss < 20


def test_a_2_gb_body_with_a_key_is_413_at_once_or_after_the_limit(
    tenant: Tenant, stack: dict[str, Any], api_port: int
) -> None:
    auth = f"Authorization: Bearer {tenant.key}\r\n"
    rss = _api_rss_mb(stack)
    declared = (
        f"POST /api/v1/channels/whatsapp/send HTTP/1.1\r\nHost: x\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {2 * GB}\r\n\r\n"
    )
    assert _raw_request(api_port, declared, _zeros(2 * GB)).startswith("HTTP/1.1 413")
    streamed = (
        f"POST /api/v1/contacts HTTP/1.1\r\nHost: x\r\n{auth}"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    started = time.monotonic()
    assert _raw_request(api_port, streamed, _chunked(2 * GB)).startswith("HTTP/1.1 413")
    assert time.monotonic() - started < 10
    assert _api_rss_mb(stack) - rss < 30
    assert tenant.sim_requests() == []


@pytest.fixture
def limited_api(api_process: ApiFactory) -> str:
    """A second API process on the same store, its keys limited to 5 requests/s."""
    return api_process(
        DISPATCH_API_KEY_RATE_PER_S="5",
        DISPATCH_API_KEY_BURST_S="1",
        DISPATCH_IMPORT_MAX_BODY_BYTES="100000",
    )


def test_a_key_over_its_rate_gets_429_with_retry_after(tenant: Tenant, limited_api: str) -> None:
    with httpx.Client(timeout=10) as client:
        answers = [
            client.get(f"{limited_api}/api/v1/contacts/cct_abc123", headers=tenant.auth())
            for _ in range(20)
        ]
    codes = [a.status_code for a in answers]
    assert codes.count(200) >= 5
    assert 429 in codes
    limited = next(a for a in answers if a.status_code == 429)
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    # Another key of the same account has its own allowance.
    other = tenant.new_key(Scope.CONTACTS)
    with httpx.Client(timeout=10) as client:
        response = client.get(
            f"{limited_api}/api/v1/contacts/cct_abc123", headers=tenant.auth(other)
        )
    assert response.status_code == 200


def test_a_webhook_signature_that_could_not_be_metas_is_401_and_nothing_is_looked_up(
    tenant: Tenant, api_url: str
) -> None:
    body = b'{"entry": []}'
    with httpx.Client(timeout=10) as client:
        for presented in ("sha256=" + "é" * 64, "md5=abc", "sha256=" + "0" * 63, ""):
            response = client.post(
                f"{api_url}/webhooks/whatsapp",
                content=body,
                headers={"X-Hub-Signature-256": presented.encode()},  # type: ignore[dict-item]
            )
            assert response.status_code == 401, (presented, response.text)
            assert response.json()["code"] == "invalid_signature"
        many = {
            "entry": [
                {"changes": [{"value": {"metadata": {"phone_number_id": f"9{i:014d}"}}}]}
                for i in range(25)
            ]
        }
        response = client.post(
            f"{api_url}/webhooks/whatsapp",
            json=many,
            headers={"X-Hub-Signature-256": "sha256=" + "0" * 64},
        )
        assert response.status_code == 400
        assert tenant.send(SPEC_BODY).status_code == 200  # the service is fine


def test_an_import_past_its_limit_is_413_and_imports_nothing(
    tenant: Tenant, limited_api: str
) -> None:
    rows = "".join(f"imp{i:06d},+1650555{i % 10000:04d},Name {i}\n" for i in range(8000))
    csv_body = ("id,phone,name\n" + rows).encode()
    assert len(csv_body) > 100_000

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(csv_body), 16_384):
            yield csv_body[start : start + 16_384]

    with httpx.Client(timeout=30) as client:
        response = client.post(
            f"{limited_api}/api/v1/contacts/import",
            content=chunks(),
            headers={**tenant.auth(), "Content-Type": "text/csv"},
        )
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"
    assert tenant.get("/api/v1/contacts/imp000001").status_code == 404


def test_what_a_tenant_stores_is_bounded_and_a_bad_csv_imports_nothing(tenant: Tenant) -> None:
    too_many = {f"k{i}": i for i in range(101)}
    big_value = {"note": "x" * 3000}
    long_key = {"k" * 65: 1}
    for attributes in (too_many, big_value, long_key):
        response = tenant.http.post(
            f"{tenant.api_url}/api/v1/contacts",
            json={"id": "bounded-1", "attributes": attributes},
            headers=tenant.auth(),
        )
        assert response.status_code == 400, response.text
        assert response.json()["field"] == "attributes"
    event = tenant.http.post(
        f"{tenant.api_url}/api/v1/track/event",
        json={"contact_id": "cct_abc123", "event": "e", "properties": {"p": "y" * 5000}},
        headers=tenant.auth(),
    )
    assert event.status_code == 400
    assert event.json()["field"] == "properties"
    # A field over the csv module's 128 KiB on line 3: nothing of lines 1-2 is imported.
    csv_body = "id,name\ncsv-ok-1,Fine\ncsv-bad-1," + "z" * 200_000 + "\n"
    imported = tenant.http.post(
        f"{tenant.api_url}/api/v1/contacts/import",
        content=csv_body.encode(),
        headers={**tenant.auth(), "Content-Type": "text/csv"},
    )
    assert imported.status_code == 400, imported.text
    assert imported.json()["code"] == "invalid_csv"
    assert "line 3" in imported.json()["error"]
    assert tenant.get("/api/v1/contacts/csv-ok-1").status_code == 404
