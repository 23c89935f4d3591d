"""A lean HTTP/1.1 client for requests to tenants' URLs: keep-alive connections on asyncio
streams, the protocol by ``h11`` (the state machine httpx itself uses underneath).

httpx's pool checks every open connection on each request and response (a socket poll and
``getpeername`` per connection, per request): with a webhook endpoint's requests in flight
that was most of the ~1.1–1.6 ms of CPU an event cost (docs/performance.md). Here a
request takes an idle connection from a list or opens one; nothing is scanned.

It only connects where it is told (the caller resolved and checked the address), never
follows a redirect, reads at most ``max_bytes`` of an answer, and leaves deadlines to the
caller (``asyncio.timeout`` around the call).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

import certifi
import h11

Origin = tuple[str, int, str | None]  # the address, the port, the TLS name (None: plain)


class Http11Error(Exception):
    """The request was not completed: a connection refused or dropped, an answer that is
    not HTTP/1.1."""


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    h11: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Http11Pool:
    def __init__(self, *, max_idle_per_origin: int = 16) -> None:
        self._idle: dict[Origin, list[_Connection]] = {}
        self._max_idle = max_idle_per_origin
        self._tls = ssl.create_default_context(cafile=certifi.where())

    async def post(
        self,
        origin: Origin,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        max_bytes: int,
    ) -> tuple[int, bytes]:
        """POST ``body`` to ``target`` (path and query) at ``origin``; the status and at most
        ``max_bytes`` of the answer. A kept-alive connection the server closed meanwhile
        is replaced once, before anything of the answer came."""
        idle = self._idle.get(origin)
        if idle:
            conn = idle.pop()
            try:
                return await self._exchange(origin, conn, target, headers, body, max_bytes)
            except _StaleConnection:
                pass
        conn = await self._open(origin)
        try:
            return await self._exchange(origin, conn, target, headers, body, max_bytes)
        except _StaleConnection:
            raise Http11Error("the connection closed before an answer") from None

    async def _open(self, origin: Origin) -> _Connection:
        address, port, tls_name = origin
        try:
            reader, writer = await asyncio.open_connection(
                address,
                port,
                ssl=self._tls if tls_name else None,
                server_hostname=tls_name,
            )
        except (OSError, ssl.SSLError) as exc:
            raise Http11Error(f"cannot connect ({type(exc).__name__})") from None
        return _Connection(reader, writer)

    async def _exchange(
        self,
        origin: Origin,
        conn: _Connection,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        max_bytes: int,
    ) -> tuple[int, bytes]:
        machine = conn.h11
        try:
            data = machine.send(
                h11.Request(
                    method="POST",
                    target=target,
                    headers=[*headers, ("content-length", str(len(body)))],
                )
            )
            data = (data or b"") + (machine.send(h11.Data(data=body)) or b"")
            data += machine.send(h11.EndOfMessage()) or b""
            conn.writer.write(data)
            await conn.writer.drain()
            status, answer, complete = await self._answer(conn, max_bytes)
        except _StaleConnection:
            conn.close()
            raise
        except (OSError, ssl.SSLError, h11.ProtocolError) as exc:
            conn.close()
            raise Http11Error(f"{type(exc).__name__}") from None
        except BaseException:
            conn.close()  # cancelled (the caller's deadline): the connection is mid-way
            raise
        if complete and machine.our_state is h11.DONE and machine.their_state is h11.DONE:
            machine.start_next_cycle()
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self._max_idle:
                idle.append(conn)
                return status, answer
        conn.close()
        return status, answer

    async def _answer(self, conn: _Connection, max_bytes: int) -> tuple[int, bytes, bool]:
        """The status, the answer's first ``max_bytes``, and whether it was read whole (the
        connection can serve another request only then)."""
        machine = conn.h11
        status: int | None = None
        chunks: list[bytes] = []
        size = 0
        while True:
            event = machine.next_event()
            if event is h11.NEED_DATA:
                data = await conn.reader.read(65_536)
                if not data and status is None and not chunks:
                    raise _StaleConnection
                machine.receive_data(data)
            elif isinstance(event, h11.InformationalResponse):
                continue
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > max_bytes:
                    # Enough: the status is what counts; the rest is not read.
                    assert status is not None
                    return status, b"".join(chunks), False
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert status is not None
                return status, b"".join(chunks), True
            elif isinstance(event, h11.ConnectionClosed):
                raise Http11Error("the connection closed before the answer ended")

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


class _StaleConnection(Exception):
    """A kept-alive connection the server had closed: nothing of an answer came."""
