"""A lean HTTP/1.1 load generator on asyncio streams (keep-alive, one request in flight per
connection), so the client costs far less CPU per request than the servers it measures:
httpx would spend more per request than a bare FastAPI endpoint does."""

from __future__ import annotations

import asyncio
import gc
import time


def request_bytes(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def closed_loop(
    port: int, raw: bytes, connections: int, duration_s: float
) -> tuple[int, dict[int, int]]:
    """As fast as the server answers, ``connections`` at a time; (requests, by status)."""
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + duration_s

    async def worker() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        done = 0
        while time.monotonic() < deadline:
            status = await _one(reader, writer, raw)
            statuses[status] = statuses.get(status, 0) + 1
            done += 1
        writer.close()
        return done

    counts = await asyncio.gather(*(worker() for _ in range(connections)))
    return sum(counts), statuses


async def open_loop(
    port: int, raw: bytes, rate_per_s: float, duration_s: float, connections: int = 64
) -> tuple[list[float], dict[int, int]]:
    """Requests started on a fixed schedule whatever the answers; latency in ms counted
    from the scheduled start (so a stalled server is not hidden by a stalled client)."""
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    total = int(rate_per_s * duration_s)
    # The client's own full garbage collections (thousands of tasks alive) stalled it
    # for ~150 ms, which this schedule counts against the server: none while measuring.
    gc.collect()
    gc.disable()
    start = time.perf_counter()

    async def fire(scheduled: float) -> None:
        conn = await pool.get()
        try:
            status = await _one(*conn, raw)
        finally:
            pool.put_nowait(conn)
        latencies.append((time.perf_counter() - scheduled) * 1000)
        statuses[status] = statuses.get(status, 0) + 1

    tasks = []
    try:
        for i in range(total):
            scheduled = start + i / rate_per_s
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(scheduled)))
        await asyncio.gather(*tasks)
    finally:
        gc.enable()
    while not pool.empty():
        pool.get_nowait()[1].close()
    return latencies, statuses


async def wait_ready(port: int, raw: bytes, timeout_s: float) -> None:
    """Until the server on ``port`` answers ``raw`` (whatever the status)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                await _one(reader, writer, raw)
                return
            finally:
                writer.close()
        except (OSError, asyncio.IncompleteReadError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
