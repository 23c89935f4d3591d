"""The lean HTTP/1.1 pool against a real asyncio server on loopback: keep-alive reuse, a
connection the server closed meanwhile replaced, chunked and oversized answers, a server
that drops the connection mid-answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from worker.providers.http11 import Http11Error, Http11Pool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, tuple[str, int, None]]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, ("127.0.0.1", port, None)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


def test_a_kept_alive_connection_serves_the_next_request() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                request = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            assert request.startswith(b"POST /hook?x=1 HTTP/1.1")
            assert b"host: example.test" in request.lower()
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
        writer.close()

    async def scenario() -> None:
        server, origin = await _serve(handler)
        pool = Http11Pool()
        for _ in range(3):
            status, body = await pool.post(
                origin, "/hook?x=1", [("host", "example.test")], b"{}", 1024
            )
            assert (status, body) == (204, b"")
        await pool.aclose()
        server.close()
        assert connections == 1

    asyncio.run(scenario())


def test_a_connection_the_server_closed_is_replaced_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # no keep-alive announced, but closed: the pool finds out later

    async def scenario() -> None:
        server, origin = await _serve(handler)
        pool = Http11Pool()
        assert await pool.post(origin, "/", [("host", "h")], b"a", 1024) == (200, b"ok")
        await asyncio.sleep(0.05)
        assert await pool.post(origin, "/", [("host", "h")], b"b", 1024) == (200, b"ok")
        await pool.aclose()
        server.close()

    asyncio.run(scenario())


def test_chunked_and_oversized_answers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(
            b"HTTP/1.1 500 Internal\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        server, origin = await _serve(handler)
        pool = Http11Pool()
        assert await pool.post(origin, "/", [("host", "h")], b"", 1024) == (500, b"hello world")
        status, body = await pool.post(origin, "/", [("host", "h")], b"", 8)
        assert status == 500
        assert len(body) <= 8
        await pool.aclose()
        server.close()

    asyncio.run(scenario())


def test_a_connection_dropped_mid_answer_and_a_refused_one_are_errors() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        server, origin = await _serve(handler)
        pool = Http11Pool()
        with pytest.raises(Http11Error):
            await pool.post(origin, "/", [("host", "h")], b"", 1024)
        server.close()
        await server.wait_closed()
        with pytest.raises(Http11Error, match="cannot connect"):
            await pool.post(origin, "/", [("host", "h")], b"", 1024)

    asyncio.run(scenario())
