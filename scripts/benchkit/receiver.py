"""A customer's webhook receiver for the bench, as cheap as one can be written: one
process, asyncio's protocol layer, HTTP/1.1 keep-alive parsed by hand (a request line,
headers, a ``Content-Length`` body), every POST answered ``204`` at once.

For each event it keeps the time it arrived and its ``webhook-id``, signature headers and
body; nothing is parsed or verified while events arrive (that would be the receiver's CPU
on the two cores the campaign runs on). ``GET /_stats`` then works it out: requests,
distinct ids, duplicates, the first and last arrival, the events' own latency (arrival −
the ``timestamp`` in the body), distinct contacts, and an evenly spaced sample of requests
whose signatures the bench verifies with the ``standardwebhooks`` library. ``GET
/_count`` is the cheap count polled meanwhile; ``POST /_reset`` forgets everything.

    python receiver.py --host 127.0.0.2 --port-file PATH   # writes its port to PATH
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
SAMPLE = 50  # requests returned for signature checks


class Store:
    def __init__(self) -> None:
        self.at: list[float] = []
        # (webhook-id, webhook-timestamp, webhook-signature, body)
        self.got: list[tuple[bytes, bytes, bytes, bytes]] = []

        self.connections = 0  # opened since the last reset: a sender's keep-alive shows here

    def reset(self) -> None:
        self.at, self.got, self.connections = [], [], 0

    def stats(self) -> dict[str, Any]:
        ids = Counter(g[0] for g in self.got)
        latencies: list[float] = []
        contacts: set[str] = set()
        types: Counter[str] = Counter()
        for at, (_, _, _, body) in zip(self.at, self.got, strict=True):
            event = json.loads(body)
            types[event["type"]] += 1
            stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            latencies.append(at - stamp.timestamp())
            contact = event.get("data", {}).get("contact_id")
            if contact:
                contacts.add(contact)
        latencies.sort()
        step = max(1, len(self.got) // SAMPLE)
        sample = [
            {
                "headers": {
                    "webhook-id": i.decode(),
                    "webhook-timestamp": t.decode(),
                    "webhook-signature": s.decode(),
                },
                "body": b.decode(),
            }
            for i, t, s, b in self.got[::step][:SAMPLE]
        ]

        def pct(q: float) -> float | None:
            if not latencies:
                return None
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

        return {
            "requests": len(self.got),
            "connections": self.connections,
            "distinct": len(ids),
            "duplicates": len(self.got) - len(ids),
            "first_at": self.at[0] if self.at else None,
            "last_at": self.at[-1] if self.at else None,
            "latency_p50_s": pct(0.5),
            "latency_p99_s": pct(0.99),
            "latency_max_s": latencies[-1] if latencies else None,
            "contacts": len(contacts),
            "types": dict(types),
            "sample": sample,
        }


class Connection(asyncio.Protocol):
    def __init__(self, store: Store) -> None:
        self.store = store
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.store.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            total = end + 4 + int(headers.get(b"content-length", b"0"))
            if len(self.buffer) < total:
                return
            body = self.buffer[end + 4 : total]
            self.buffer = self.buffer[total:]
            method, path, _ = lines[0].split(b" ", 2)
            self.handle(method, path, headers, body)

    def handle(self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes) -> None:
        assert self.transport is not None
        if path.startswith(b"/_"):
            self.control(method, path)
            return
        self.store.at.append(time.time())
        self.store.got.append(
            (
                headers.get(b"webhook-id", b""),
                headers.get(b"webhook-timestamp", b""),
                headers.get(b"webhook-signature", b""),
                body,
            )
        )
        self.transport.write(NO_CONTENT)

    def control(self, method: bytes, path: bytes) -> None:
        assert self.transport is not None
        if path == b"/_reset" and method == b"POST":
            self.store.reset()
            answer = b"{}"
        elif path == b"/_count":  # cheap: polled while events arrive
            last = self.store.at[-1] if self.store.at else None
            count = {"requests": len(self.store.got), "last_at": last}
            answer = json.dumps(count | {"connections": self.store.connections}).encode()
        elif path == b"/_stats":
            answer = json.dumps(self.store.stats()).encode()
        else:
            self.transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            return
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(answer)}"
        self.transport.write(head.encode() + b"\r\n\r\n" + answer)


async def serve(host: str, port_file: Path) -> None:
    store = Store()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(store), host, 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    written = port_file.with_suffix(".tmp")
    written.write_text(str(port))
    written.rename(port_file)  # whole, for whoever waits for it
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.2")
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port_file))


if __name__ == "__main__":
    main()
