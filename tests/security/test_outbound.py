"""Attacks through a URL a tenant gives (an automation's webhook step), against the
guarded client itself (``worker.providers.outbound``): each must fail, and fail fast."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from tests.conftest import RECEIVER_HOST
from worker.providers.outbound import OutboundClient, OutboundError, check_url

ALLOW = f"{RECEIVER_HOST}/32"  # the tests' own receivers, allowed as an operator would


class _Handler(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []
    redirect_to: ClassVar[str] = ""

    def do_POST(self) -> None:
        self.hits.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        elif self.path == "/huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10 * 1024 * 1024))
            self.end_headers()
            for _ in range(10 * 1024):
                try:
                    self.wfile.write(b"y" * 1024)
                except OSError:
                    return
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    def log_message(self, *_: Any) -> None:
        pass


def _serve(host: str) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer((host, 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def receiver() -> Iterator[ThreadingHTTPServer]:
    _Handler.hits = []
    yield from _serve(RECEIVER_HOST)


@pytest.fixture
def loopback() -> Iterator[ThreadingHTTPServer]:
    """A server on 127.0.0.1, standing for Flower, the metrics ports, the API."""
    yield from _serve("127.0.0.1")


def _post(url: str, *, deadline_s: float = 2.0) -> Any:
    async def go() -> Any:
        client = OutboundClient(allow=ALLOW, deadline_s=deadline_s)
        try:
            return await client.post(url, b"{}", {"Content-Type": "application/json"})
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_the_allowed_receiver_is_reached(receiver: ThreadingHTTPServer) -> None:
    reply = _post(f"http://{RECEIVER_HOST}:{receiver.server_port}/hook")
    assert (reply.status, reply.body) == (200, b"ok")
    assert _Handler.hits == ["/hook"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/metrics",
        "http://127.1:{port}/",  # the same address, written short
        "http://0x7f000001:{port}/",
        "http://[::1]:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",  # IPv4-mapped IPv6
        "http://10.0.0.5/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://100.64.0.1/",  # shared address space
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fd00:ec2::254]/latest/meta-data/",  # AWS metadata over IPv6
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://0.0.0.0:{port}/",
        "http://localhost:{port}/",
        "http://ops:secret@example.com/",  # credentials become Basic auth
        "ftp://example.com/",
        "file:///etc/passwd",
    ],
)
def test_private_loopback_metadata_and_credentials_are_refused(
    url: str, loopback: ThreadingHTTPServer
) -> None:
    url = url.format(port=loopback.server_port)
    with pytest.raises(OutboundError) as refused:
        _post(url)
    assert not refused.value.retryable or "resolve" in refused.value.reason
    # Refused when saved too, where the URL says it all (no lookup needed).
    if "0x7f" not in url and "127.1:" not in url:
        with pytest.raises(OutboundError):
            check_url(url)


def test_a_hostname_resolving_to_loopback_is_refused_at_send_time(
    loopback: ThreadingHTTPServer,
) -> None:
    name = socket.gethostname()
    resolved = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(name, None)}
    assert resolved  # the machine's own name: loopback (or a private address elsewhere)
    assert not any(a.is_global for a in resolved), resolved
    url = f"http://{name}:{loopback.server_port}/"
    check_url(url)  # a name says nothing until resolved: accepted when saved
    with pytest.raises(OutboundError, match="resolves to a private"):
        _post(url)


def test_a_redirect_is_not_followed(
    receiver: ThreadingHTTPServer, loopback: ThreadingHTTPServer
) -> None:
    _Handler.redirect_to = f"http://127.0.0.1:{loopback.server_port}/metrics"
    reply = _post(f"http://{RECEIVER_HOST}:{receiver.server_port}/redirect")
    assert reply.status == 302
    assert _Handler.hits == ["/redirect"]  # the loopback server saw nothing


def test_a_slow_drip_fails_within_the_deadline(receiver: ThreadingHTTPServer) -> None:
    started = time.monotonic()
    with pytest.raises(OutboundError, match="within 1s") as late:
        _post(f"http://{RECEIVER_HOST}:{receiver.server_port}/drip", deadline_s=1.0)
    assert time.monotonic() - started < 1.5
    assert late.value.retryable


def test_an_endless_answer_is_read_up_to_the_cap(receiver: ThreadingHTTPServer) -> None:
    started = time.monotonic()
    reply = _post(f"http://{RECEIVER_HOST}:{receiver.server_port}/huge")
    assert reply.status == 200
    assert len(reply.body) <= 64 * 1024
    assert time.monotonic() - started < 2
