"""p50/p99 latency of a synchronous WhatsApp send over the simulator.

Starts `dispatch up --demo` in a scratch directory on free ports (embedded Valkey,
simulator, one worker, the API), sends the spec's example N times, and prints the
percentiles of the whole round trip as the client sees it:
HTTP → validation → Redis → Celery worker → Graph API simulator → outcome → HTTP.

    .venv/bin/python scripts/latency.py [--sends 1000] [--concurrency 1]
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

import httpx
from rich.console import Console
from rich.table import Table

from worker.demo import SPEC_BODY
from worker.devstack import demo_stack


def measure(api: str, key: str, sends: int, concurrency: int) -> list[float]:
    url = f"{api}/api/v1/channels/whatsapp/send"
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:
        for _ in range(20):  # warm up connections and the worker's clients
            client.post(url, json=SPEC_BODY, headers=headers).raise_for_status()

        def one(_: int) -> float:
            started = time.perf_counter()
            response = client.post(url, json=SPEC_BODY, headers=headers)
            elapsed = time.perf_counter() - started
            if response.status_code != 200 or response.json()["status"] != "sent":
                raise RuntimeError(f"send failed: {response.status_code} {response.text}")
            return elapsed * 1000

        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(one, range(sends)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/latency.json"))
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="dispatch-latency-") as tmp,
        demo_stack(Path(tmp), log_level="WARNING") as stack,
    ):
        print(f"stack ready in {stack.ready_s:.1f}s", file=sys.stderr)
        started = time.perf_counter()
        latencies = measure(stack.api_url, stack.key, args.sends, args.concurrency)
        wall_s = time.perf_counter() - started

    cuts = statistics.quantiles(latencies, n=100)
    result = {
        "sends": args.sends,
        "concurrency": args.concurrency,
        "p50_ms": round(cuts[49], 1),
        "p90_ms": round(cuts[89], 1),
        "p99_ms": round(cuts[98], 1),
        "max_ms": round(max(latencies), 1),
        "sends_per_s": round(args.sends / wall_s, 1),
    }
    table = Table(title="synchronous WhatsApp send over the simulator")
    for name in result:
        table.add_column(name, justify="right")
    table.add_row(*(str(v) for v in result.values()))
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
