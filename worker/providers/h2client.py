"""A lean HTTP/2 client on an asyncio protocol and ``h2``: many requests as streams of one
TLS connection, for a sender that posts small JSON bodies at a high rate (FCM).

httpx + httpcore + h2 cost ~0.85 ms of CPU per FCM request here, most of it in the
general-purpose client's layers (pools, per-request locks, events, retries): this keeps
only what one connection to one origin needs (docs/fcm-lean.md):

- streams up to the server's ``SETTINGS_MAX_CONCURRENT_STREAMS`` (waiters queue);
- flow control both ways: our receive windows are opened wide once and data acknowledged
  as it comes; a body larger than the send window waits for a ``WINDOW_UPDATE``;
- a deadline per request (the stream is reset with ``CANCEL`` when it passes);
- ``GOAWAY``: streams above the last one the server says it processed fail with
  ``Unprocessed`` (safe to send again on a new connection); below it they finish;
  ``RST_STREAM`` with ``REFUSED_STREAM`` is unprocessed too; a lost connection fails its
  streams with ``ConnectionLost`` (maybe processed: the caller's retry policy decides);
- TLS with ALPN ``h2`` and the caller's context (its CA); a ``PING`` after a quiet
  interval, the connection closed when its answer does not come.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import FlowControlError, ProtocolError, StreamClosedError
from h2.settings import SettingCodes

# Our receive windows: wide, so that the server never waits for us on small responses.
_WINDOW = 2**24
_PING_ID = b"dispatch"
# New streams between two of h2's walks over its streams (which forget the closed ones).
_SWEEP_EVERY = 64


class _Connection(H2Connection):
    """h2 counts the open streams by walking every stream it holds, on each new stream
    (forgetting the closed ones on the way): with a hundred in flight, ~4% of a request's
    CPU. ``Http2Connection`` never opens more streams than the server allows (requests
    queue for a slot), so h2's check gets that count, and the walk runs once every
    ``_SWEEP_EVERY`` new streams, to forget the closed ones."""

    def __init__(self, config: H2Configuration, in_flight: Callable[[], int]) -> None:
        super().__init__(config)
        self._in_flight = in_flight
        self._opened = 0

    @property
    def open_outbound_streams(self) -> int:
        self._opened += 1
        if self._opened % _SWEEP_EVERY == 0:
            return super().open_outbound_streams
        return self._in_flight()


class H2Error(Exception):
    """A request that got no response."""


class Unprocessed(H2Error):
    """The server says it did not process the request (GOAWAY above its last stream,
    REFUSED_STREAM): sending it again cannot duplicate it."""


class ConnectionLost(H2Error):
    """The connection ended with the request in flight: it may have been processed."""


class DeadlineExceeded(H2Error):
    """No response within the request's deadline (the stream was cancelled)."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class _Stream:
    done: asyncio.Future[Response]
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    to_send: memoryview | None = None


class Http2Connection(asyncio.Protocol):
    """One HTTP/2 connection; ``request`` from any task of the loop that opened it."""

    def __init__(self, authority: str, ping_after_s: float, ping_timeout_s: float) -> None:
        # Our request headers are fixed, lower-case and valid (tests/unit/test_fcm_senders.py):
        # h2's checks of them cost a fifth of a request's CPU. The server's are checked.
        config = H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        # The new stream is already ours when h2 counts the others.
        self._conn = _Connection(config, lambda: len(self._streams) - 1)
        self._authority = authority.encode()
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, _Stream] = {}
        self._max_streams = 100  # until the server's SETTINGS say
        # Requests waiting for a stream slot (the server's limit reached), oldest first.
        self._waiters: deque[asyncio.Future[None]] = deque()
        # Streams whose body waits for the server to open its flow-control windows.
        self._blocked: dict[int, _Stream] = {}
        self._goaway_last: int | None = None
        self._closed: H2Error | None = None
        self._ping_after_s, self._ping_timeout_s = ping_after_s, ping_timeout_s
        self._last_read = time.monotonic()
        self._ping_sent_at: float | None = None
        self._keepalive: asyncio.Task[None] | None = None
        # What the requests of one turn of the loop wrote goes out in one TLS write.
        self._flush_soon: asyncio.Handle | None = None

    # --- the protocol's side -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._conn.initiate_connection()
        self._conn.update_settings(
            {SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW, SettingCodes.ENABLE_PUSH: 0}
        )
        self._conn.increment_flow_control_window(_WINDOW - 65_535)
        self._flush()
        self._keepalive = asyncio.ensure_future(self._keep_alive())

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(ConnectionLost(f"connection lost: {exc or 'closed by the server'}"))

    def data_received(self, data: bytes) -> None:
        self._last_read = time.monotonic()
        try:
            events = self._conn.receive_data(data)
        except ProtocolError as exc:
            self._fail_all(ConnectionLost(f"protocol error: {exc}"))
            self._flush()
            self.close()
            return
        for event in events:
            if isinstance(event, ResponseReceived):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    for name, value in event.headers or []:
                        key = name.decode() if isinstance(name, bytes) else name
                        text = value.decode() if isinstance(value, bytes) else value
                        if key == ":status":
                            stream.status = int(text)
                        else:
                            stream.headers[key] = text
            elif isinstance(event, DataReceived):
                stream = self._streams.get(event.stream_id)
                if stream is not None and event.data:
                    stream.body += event.data
                if event.flow_controlled_length:
                    with contextlib.suppress(StreamClosedError):
                        self._conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
            elif isinstance(event, StreamEnded):
                self._end(event.stream_id, None)
            elif isinstance(event, StreamReset):
                refused = event.error_code == ErrorCodes.REFUSED_STREAM
                error: H2Error = (
                    Unprocessed("stream refused")
                    if refused
                    else ConnectionLost(f"stream reset by the server ({event.error_code!r})")
                )
                self._end(event.stream_id, error)
            elif isinstance(event, WindowUpdated):
                self._unblock()
            elif isinstance(event, RemoteSettingsChanged):
                setting = event.changed_settings.get(SettingCodes.MAX_CONCURRENT_STREAMS)
                if setting is not None:
                    self._max_streams = max(1, setting.new_value)
                    self._wake()
                self._unblock()
            elif isinstance(event, ConnectionTerminated):
                self._goaway(event.last_stream_id or 0, event.error_code)
            elif isinstance(event, PingAckReceived):
                self._ping_sent_at = None
        self._flush()

    # --- the caller's side -------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self._closed is None and self._goaway_last is None

    async def request(
        self,
        method: bytes,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout_s: float,
    ) -> Response:
        """One request as one stream; the response, or an ``H2Error``. Header names are
        lower-case bytes, as HTTP/2 wants them (they are not checked here)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.usable and len(self._streams) >= self._max_streams:
            waiter = loop.create_future()
            self._waiters.append(waiter)
            # A timer, not wait_for (a task per waiting request).
            late = loop.call_at(deadline, _time_out, waiter)
            try:
                await waiter
            except TimeoutError:
                raise DeadlineExceeded(f"no stream free within {timeout_s:.1f}s") from None
            finally:
                late.cancel()
        if not self.usable:
            raise Unprocessed("the connection is closing")
        stream_id = self._conn.get_next_available_stream_id()
        stream = _Stream(loop.create_future())
        self._streams[stream_id] = stream
        self._conn.send_headers(
            stream_id,
            request_headers(method, self._authority, path, headers, len(body)),
            end_stream=not body,
        )
        if body:
            stream.to_send = memoryview(body)
            # A shut connection window: it waits behind the bodies already waiting (each
            # window update sends those it can, so an open window has none waiting on it).
            if self._conn.outbound_flow_control_window > 0:
                self._send_body(stream_id, stream)
            if stream.to_send is not None:
                self._blocked[stream_id] = stream  # the rest when a WINDOW_UPDATE comes
        if self._flush_soon is None:
            self._flush_soon = loop.call_soon(self._flush)
        # A timer, not wait_for: no task per request.
        timer = loop.call_at(deadline, self._expire, stream_id, timeout_s)
        try:
            return await stream.done
        finally:
            timer.cancel()

    def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(ProtocolError):
                self._conn.close_connection()
            self._flush()
            self._transport.close()

    # --- inside ------------------------------------------------------------------------

    def _send_body(self, stream_id: int, stream: _Stream) -> None:
        """As much of the body as the windows allow (the rest: ``_unblock``)."""
        rest = stream.to_send
        while rest is not None and len(rest):
            try:
                window = self._conn.local_flow_control_window(stream_id)
            except StreamClosedError:
                stream.to_send = None
                return
            size = min(window, len(rest), self._conn.max_outbound_frame_size)
            if size <= 0:
                break
            last = size == len(rest)
            try:
                self._conn.send_data(stream_id, bytes(rest[:size]), end_stream=last)
            except FlowControlError:
                break
            rest = None if last else rest[size:]
        stream.to_send = rest if rest is not None and len(rest) else None

    def _unblock(self) -> None:
        """The server opened a window: the waiting bodies go on, oldest first, as far as
        the windows now allow (no task per stream, no wake-up to lose). Once the
        connection's window is shut, none of the others can go: a window update is not
        a walk over every waiting body (a campaign's burst keeps ~150 waiting here)."""
        sent = []
        for stream_id, stream in self._blocked.items():
            if self._conn.outbound_flow_control_window <= 0:
                break
            if stream_id in self._streams:
                self._send_body(stream_id, stream)
            if stream.to_send is None or stream_id not in self._streams:
                sent.append(stream_id)
        for stream_id in sent:
            del self._blocked[stream_id]

    def _end(self, stream_id: int, error: H2Error | None) -> None:
        self._blocked.pop(stream_id, None)
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        if not stream.done.done():
            if error is not None:
                stream.done.set_exception(error)
            else:
                stream.done.set_result(Response(stream.status, stream.headers, bytes(stream.body)))
        self._wake()

    def _goaway(self, last_stream_id: int, error_code: object) -> None:
        self._goaway_last = last_stream_id
        for stream_id in [s for s in self._streams if s > last_stream_id]:
            self._end(
                stream_id, Unprocessed(f"GOAWAY ({error_code!r}) above stream {last_stream_id}")
            )
        if not self._streams:
            self.close()
        self._wake()

    def _fail_all(self, error: H2Error) -> None:
        if self._closed is None:
            self._closed = error
        for stream_id in list(self._streams):
            self._end(stream_id, error)
        if self._keepalive is not None:
            self._keepalive.cancel()

    def _wake(self) -> None:
        """Let waiting requests take the free stream slots (all of them when closing)."""
        free = self._max_streams - len(self._streams) if self.usable else len(self._waiters)
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def _expire(self, stream_id: int, timeout_s: float) -> None:
        """The request's deadline passed: its stream is cancelled."""
        if stream_id not in self._streams:
            return
        with contextlib.suppress(StreamClosedError, ProtocolError):
            self._conn.reset_stream(stream_id, ErrorCodes.CANCEL)
        self._flush()
        self._end(stream_id, DeadlineExceeded(f"no response within {timeout_s:.1f}s"))

    def _flush(self) -> None:
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        data = self._conn.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    async def _keep_alive(self) -> None:
        """A PING after ``ping_after_s`` without a byte from the server; no answer within
        ``ping_timeout_s``: the connection is dead (a NAT dropped it, say) and closed."""
        while self._closed is None:
            await asyncio.sleep(self._ping_after_s / 2)
            now = time.monotonic()
            if self._ping_sent_at is not None and now - self._ping_sent_at > self._ping_timeout_s:
                self._fail_all(ConnectionLost("no answer to a PING"))
                self.close()
                return
            if self._ping_sent_at is None and now - self._last_read > self._ping_after_s:
                self._ping_sent_at = now
                with contextlib.suppress(ProtocolError):
                    self._conn.ping(_PING_ID)
                self._flush()


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def request_headers(
    method: bytes, authority: bytes, path: bytes, headers: list[tuple[bytes, bytes]], length: int
) -> list[tuple[bytes, bytes]]:
    """A request's header block as it goes on the wire (h2 does not check it again)."""
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", authority),
        (b":path", path),
        *headers,
        (b"content-length", str(length).encode()),
    ]


async def connect(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    timeout_s: float,
    ping_after_s: float = 30.0,
    ping_timeout_s: float = 10.0,
) -> Http2Connection:
    """A TLS connection negotiated to ``h2`` (ALPN), its preface sent."""
    authority = host if port == 443 else f"{host}:{port}"
    loop = asyncio.get_running_loop()
    transport, protocol = await asyncio.wait_for(
        loop.create_connection(
            lambda: Http2Connection(authority, ping_after_s, ping_timeout_s),
            host,
            port,
            ssl=ssl_context,
            server_hostname=host,
        ),
        timeout_s,
    )
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
        transport.close()
        raise ConnectionLost(f"{authority} did not agree to HTTP/2 (ALPN)")
    return protocol


def client_context(cafile: str | None) -> ssl.SSLContext:
    """TLS for an HTTP/2 origin: the system's CAs or ``cafile``, ALPN ``h2``."""
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["h2"])
    return context
