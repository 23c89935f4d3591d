"""The simulator's HTTP/2 port (APNs, FCM) keeps h2's stream limit exactly, without
walking every stream it holds on each new one: a client one stream past the limit is
refused as h2 refuses it, and a long-lived connection is not."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, Event, RemoteSettingsChanged, SettingsAcknowledged

from tests.unit.test_fcm_senders import _answer, _fcm_server, _senders, count_walks
from worker.models.push_payload import Notification
from worker.sim.h2server import Request, Response, serve, tls_context

LIMIT = 1000  # what the simulator's port advertises


class _Unchecked(H2Connection):
    """A client that does not hold itself to the server's limit (to go past it)."""

    @property
    def open_outbound_streams(self) -> int:
        return 0


async def _never(_request: Request) -> Response:
    raise AssertionError("no request here ends")


async def _open_streams_until_refused(tmp_path: Path, count: int) -> list[Event]:
    """Open ``count`` streams (headers, no end) once the server's settings apply; returns
    the server's port-level answer events after them."""
    context, ca = tls_context(tmp_path / "ca", "127.0.0.1")
    server = await serve(_never, "127.0.0.1", 0, context)
    port = server.sockets[0].getsockname()[1]
    client_ssl = ssl.create_default_context(cafile=str(ca))
    client_ssl.set_alpn_protocols(["h2"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ssl)
    conn = _Unchecked(H2Configuration(client_side=True))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    events: list[Event] = []
    try:
        # The limit applies once the server has our acknowledgement of its settings, and we
        # have its acknowledgement of ours (so our ack was read before).
        ready = {RemoteSettingsChanged: False, SettingsAcknowledged: False}
        while not all(ready.values()):
            data = await asyncio.wait_for(reader.read(65536), 5)
            for event in conn.receive_data(data):
                if type(event) in ready:
                    ready[type(event)] = True
            writer.write(conn.data_to_send())
        headers = [(":method", "POST"), (":scheme", "https"), (":authority", "x"), (":path", "/")]
        for i in range(count):
            conn.send_headers(1 + 2 * i, headers)
        writer.write(conn.data_to_send())
        await writer.drain()
        # What the server says, until it closes the connection or has nothing more to say.
        with contextlib.suppress(TimeoutError, ConnectionError):
            while data := await asyncio.wait_for(reader.read(65536), 1):
                events += conn.receive_data(data)
        return events
    finally:
        writer.close()
        server.close()


def test_the_limit_is_kept_and_one_stream_past_it_ends_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    walks = count_walks(monkeypatch, client_side=False)

    events = asyncio.run(_open_streams_until_refused(tmp_path, LIMIT))
    assert not [e for e in events if isinstance(e, ConnectionTerminated)]
    assert walks == []  # below the limit, no walk over the streams

    events = asyncio.run(_open_streams_until_refused(tmp_path, LIMIT + 1))
    ended = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert [e.error_code for e in ended] == [ErrorCodes.PROTOCOL_ERROR]
    assert walks == [LIMIT]  # at the limit h2's own count decided


def test_a_connection_outlives_the_limit_in_streams_it_has_answered(tmp_path: Path) -> None:
    """Three sends of 700 on one connection: 2,100 streams, more than the 1,000 the server
    holds at once; the closed ones are forgotten when the held ones reach the limit."""

    async def run() -> list[bool]:
        async with _fcm_server(tmp_path, _answer) as config:
            _, lean = _senders(config)
            try:
                oks: list[bool] = []
                for first in (0, 700, 1400):
                    tokens = [f"ok:APA91b-{i:04d}" for i in range(first, first + 700)]
                    oks += [r.ok for r in await lean.send(Notification("Hi", "There"), tokens)]
                return oks
            finally:
                await lean.close()

    oks = asyncio.run(run())
    assert oks == [True] * 2100
