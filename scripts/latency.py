"""p50/p99 latency of a synchronous WhatsApp send over the simulator.

Starts `dispatch up --demo` in a scratch directory on free ports (embedded Valkey,
simulator, one worker, the API), sends the spec's example N times one after the
other, and prints the percentiles of the whole round trip as the client sees it:
HTTP → validation → Redis → Celery worker → Graph API simulator → outcome → HTTP.

    .venv/bin/python scripts/latency.py [--sends 500] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worker.demo import SPEC_BODY
from worker.processes import free_port


def start_stack(workdir: Path) -> tuple[subprocess.Popen[str], str, str]:
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
    env.update(
        {
            "DISPATCH_DATA_DIR": str(workdir / ".data"),
            "DISPATCH_EMBEDDED_REDIS_PORT": str(free_port()),
            "DISPATCH_API_PORT": str(api_port),
            "DISPATCH_SIM_PORT": str(free_port()),
            "DISPATCH_LOG_LEVEL": "WARNING",
        }
    )
    started = time.monotonic()
    up = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "up", "--demo"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ready = threading.Event()
    tail: list[str] = []

    def read() -> None:
        assert up.stdout is not None
        for line in up.stdout:
            tail.append(line)
            if "Ctrl-C stops everything" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(120):
        up.send_signal(signal.SIGINT)
        raise SystemExit("the stack did not become ready:\n" + "".join(tail[-40:]))
    print(f"stack ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
    key = (workdir / ".data" / "demo.env").read_text().strip().split("=", 1)[1]
    return up, f"http://127.0.0.1:{api_port}", key


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/latency.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dispatch-latency-") as tmp:
        up, api, key = start_stack(Path(tmp))
        try:
            started = time.perf_counter()
            latencies = measure(api, key, args.sends, args.concurrency)
            wall_s = time.perf_counter() - started
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(60)

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
