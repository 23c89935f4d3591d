"""A small HTTP/2 + TLS server on raw asyncio and ``h2``, for the simulated APNs and FCM.

hypercorn would be shorter, but aioapns breaks on its empty DATA frames: APNs
answers success as HEADERS with END_STREAM and nothing else, errors as HEADERS
plus one JSON DATA frame, and this server does exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import trustme
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes

log = logging.getLogger(__name__)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    # Instead of answering: "goaway" (the stream and those after it unprocessed, the
    # connection closed once the others are answered) or "drop" (the connection closed now).
    action: str | None = None


Handler = Callable[[Request], Awaitable[Response]]


class _H2(H2Connection):
    """h2 checks a new stream against ``MAX_CONCURRENT_STREAMS`` by walking every stream it
    holds (and forgetting the closed ones): per request, a cost that grows with the streams
    the client keeps open, which a provider's front end does not have. The streams h2 holds
    (open, or closed and not yet forgotten) are never fewer than the open ones: while they
    are below the limit the new stream is within it, no walk needed; at the limit the walk
    counts, and forgets, as before. The limit is enforced exactly as h2 does it."""

    @property
    def open_inbound_streams(self) -> int:
        held = len(self.streams)
        if held < self.local_settings.max_concurrent_streams:
            return held  # an upper bound, and under the limit: the stream is allowed
        return super().open_inbound_streams


class _Connection(asyncio.Protocol):
    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._conn = _H2(H2Configuration(client_side=False, header_encoding="utf-8"))
        self._transport: asyncio.Transport | None = None
        self._requests: dict[int, tuple[dict[str, str], bytearray]] = {}
        self._pending_body: dict[int, bytes] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._draining = False  # a GOAWAY was sent
        self._flush_due = False  # a write is already due at this turn of the loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self._transport = cast(asyncio.Transport, transport)
        self._conn.initiate_connection()
        self._conn.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        for task in self._tasks:
            task.cancel()

    def _flush(self) -> None:
        self._flush_due = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(self._conn.data_to_send())

    def _flush_soon(self) -> None:
        """One write for every answer made at this turn of the loop (a write per answer
        cost the simulator a TLS record and a system call each, the client a read each)."""
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def data_received(self, data: bytes) -> None:
        try:
            events = self._conn.receive_data(data)
        except ProtocolError:
            self._flush()
            if self._transport is not None:
                self._transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                headers = {str(k): str(v) for k, v in event.headers or []}
                self._requests[event.stream_id] = (headers, bytearray())
            elif isinstance(event, DataReceived):
                entry = self._requests.get(event.stream_id)
                if entry is not None and event.data:
                    entry[1].extend(event.data)
                self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                entry = self._requests.pop(event.stream_id, None)
                if entry is not None and not self._draining:  # after GOAWAY: unprocessed
                    task = asyncio.ensure_future(self._respond(event.stream_id, *entry))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            elif isinstance(event, StreamReset):
                self._requests.pop(event.stream_id, None)
                self._pending_body.pop(event.stream_id, None)
            elif isinstance(event, WindowUpdated):
                self._send_pending()
            elif isinstance(event, ConnectionTerminated) and self._transport is not None:
                self._transport.close()
        self._flush()

    async def _respond(self, stream_id: int, headers: dict[str, str], body: bytearray) -> None:
        request = Request(
            headers.get(":method", ""), headers.get(":path", ""), headers, bytes(body)
        )
        try:
            response = await self._handler(request)
        except Exception:
            log.exception("simulator handler failed")
            response = Response(
                500, [("content-type", "application/json")], b'{"reason":"InternalServerError"}'
            )
        if response.action is not None:
            self._act(stream_id, response.action)
            return
        out = [(":status", str(response.status)), *response.headers]
        try:
            if not response.body:
                self._conn.send_headers(stream_id, out, end_stream=True)
            else:
                out.append(("content-length", str(len(response.body))))
                self._conn.send_headers(stream_id, out)
                self._pending_body[stream_id] = response.body
                self._send_pending()
        except (StreamClosedError, ProtocolError):
            self._pending_body.pop(stream_id, None)
        self._flush_soon()
        self._close_if_drained()

    def _act(self, stream_id: int, action: str) -> None:
        if self._transport is None:
            return
        if action == "drop":
            self._transport.abort()
            return
        self._draining = True
        with contextlib.suppress(ProtocolError):
            self._conn.close_connection(last_stream_id=stream_id - 2)
        self._flush()
        self._close_if_drained()

    def _close_if_drained(self) -> None:
        """After a GOAWAY: close once no stream below it waits for its answer."""
        drained = len(self._tasks) <= 1 and not self._pending_body  # (this answer's task)
        if self._draining and self._transport is not None and drained:
            self._flush()  # the last answers, before the close
            self._transport.close()

    def _send_pending(self) -> None:
        """Send response bodies as far as flow control allows."""
        for stream_id, body in list(self._pending_body.items()):
            try:
                window = self._conn.local_flow_control_window(stream_id)
                size = min(window, len(body), self._conn.max_outbound_frame_size)
                if size <= 0:
                    continue
                done = size == len(body)
                self._conn.send_data(stream_id, body[:size], end_stream=done)
            except (StreamClosedError, ProtocolError):
                self._pending_body.pop(stream_id, None)
                continue
            if done:
                del self._pending_body[stream_id]
            else:
                self._pending_body[stream_id] = body[size:]


def tls_context(ca_dir: Path, host: str) -> tuple[ssl.SSLContext, Path]:
    """A server context whose certificate a client trusts through ``ca_dir/ca.pem``.

    The CA is kept in ``ca_dir`` and reused, so clients configured with it keep
    working across simulator restarts."""
    ca_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = ca_dir / "ca.pem", ca_dir / "ca.key"
    if cert_path.exists() and key_path.exists():
        ca = trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes())
    else:
        ca = trustme.CA(organization_name="dispatch simulator")
        key_path.write_bytes(ca.private_key_pem.bytes())
        key_path.chmod(0o600)
        ca.cert_pem.write_to_path(str(cert_path))
    leaf = ca.issue_cert(host, "127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    context.set_alpn_protocols(["h2"])
    return context, cert_path


async def serve(handler: Handler, host: str, port: int, context: ssl.SSLContext) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Connection(handler), host, port, ssl=context)
