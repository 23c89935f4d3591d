"""Latency of a synchronous send over the simulator, as the client sees it.

Starts `dispatch up --demo` in a scratch directory on free ports (embedded Valkey,
simulator, one worker, the API) and sends the spec's example N times (WhatsApp: each to
a different recipient, as Meta paces one recipient at ~1 message per 6 s):
HTTP → validation → Redis → Celery worker → provider protocol → outcome → HTTP.

    .venv/bin/python scripts/latency.py                      # WhatsApp, 1,000 sends
    .venv/bin/python scripts/latency.py --channel push       # push to the demo's 2 devices
    .venv/bin/python scripts/latency.py --channel push --devices 1000 --sends 20
                                     # one contact with 500 FCM + 500 APNs tokens
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from worker.stack.demo import SPEC_BODY, SPEC_PUSH_BODY
from worker.stack.devstack import demo_stack

BULK_CONTACT = "cct_bulk"


def recipient(i: int) -> str:
    """The i-th of 100,000 distinct valid Indian mobile numbers."""
    return f"+9198765{i % 100_000:05d}"


def register_devices(client: httpx.Client, api: str, headers: dict[str, str], count: int) -> None:
    """Half FCM, half APNs tokens on one contact, 100 per request."""
    tokens = [("fcm", f"bench-fcm-{i:05d}:APA91b-latency-device") for i in range(count // 2)]
    tokens += [("apns", f"{i + 1:064x}") for i in range(count - count // 2)]
    for start in range(0, len(tokens), 100):
        chunk = [{"platform": p, "token": t} for p, t in tokens[start : start + 100]]
        response = client.patch(
            f"{api}/api/v1/contacts/{BULK_CONTACT}", json={"push_tokens": chunk}, headers=headers
        )
        response.raise_for_status()


def measure(
    api: str, key: str, channel: str, devices: int, sends: int, concurrency: int
) -> tuple[list[float], int, float]:
    """Per-send latencies (ms), devices delivered, and the wall time of the measured sends."""
    headers = {"Authorization": f"Bearer {key}"}
    if channel == "whatsapp":
        url, body = f"{api}/api/v1/channels/whatsapp/send", SPEC_BODY
    else:
        url, body = f"{api}/api/v1/channels/push/send", dict(SPEC_PUSH_BODY)
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        if channel == "push" and devices != 2:
            register_devices(client, api, headers, devices)
            body["contact_id"] = BULK_CONTACT

        def one(i: int) -> tuple[float, int]:
            started = time.perf_counter()
            payload = body
            if channel == "whatsapp":
                # A recipient per send: Meta allows about one message per 6 s to one
                # recipient (bursts of 45), and so does the simulator.
                payload = {k: v for k, v in body.items() if k != "contact_id"}
                payload["to"] = recipient(i)
            response = client.post(url, json=payload, headers=headers)
            elapsed_ms = (time.perf_counter() - started) * 1000
            answer: dict[str, Any] = response.json()
            if response.status_code != 200 or answer.get("status") != "sent":
                raise RuntimeError(f"send failed: {response.status_code} {response.text[:500]}")
            return elapsed_ms, int(answer.get("delivered", 1))

        for i in range(min(20, sends)):  # warm up connections and the worker's clients
            one(90_000 + i)
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, range(sends)))
        wall_s = time.perf_counter() - started
    return [r[0] for r in results], sum(r[1] for r in results), wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--channel", choices=["whatsapp", "push"], default="whatsapp")
    parser.add_argument("--devices", type=int, default=2, help="push: devices on the contact")
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="dispatch-latency-") as tmp,
        demo_stack(Path(tmp), log_level="WARNING") as stack,
    ):
        print(f"stack ready in {stack.ready_s:.1f}s", file=sys.stderr)
        latencies, delivered, wall_s = measure(
            stack.api_url, stack.key, args.channel, args.devices, args.sends, args.concurrency
        )

    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    result = {
        "channel": args.channel,
        "devices": args.devices if args.channel == "push" else 1,
        "sends": args.sends,
        "concurrency": args.concurrency,
        "p50_ms": round(cuts[49], 1),
        "p90_ms": round(cuts[89], 1),
        "p99_ms": round(cuts[98], 1),
        "max_ms": round(max(latencies), 1),
        "sends_per_s": round(args.sends / wall_s, 1),
        "deliveries_per_s": round(delivered / wall_s, 1),
    }
    table = Table(title=f"synchronous {args.channel} send over the simulator")
    for name in result:
        table.add_column(name, justify="right")
    table.add_row(*(str(v) for v in result.values()))
    Console(width=200).print(table)
    out = args.out or Path(f"bench/latency-{args.channel}-{result['devices']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    # Its own file only: bench/results.json is `make bench`'s, rewritten whole by each run.
    print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
