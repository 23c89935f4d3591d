"""How precisely the global rate limit holds with several worker processes.

Starts `dispatch up --demo` on free ports plus extra `dispatch worker` processes (4 in
all by default), caps the demo's WhatsApp number at --cap sends/s, queues --sends
sends (Prefer: respond-async), and reads the arrival times the simulator recorded:
the most sends in any one-second window (must not exceed the cap), the average
rate as a share of the cap, and how long the run took.

    .venv/bin/python scripts/bench_ratelimit.py [--workers 4] [--cap 100] [--sends 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from worker.config import Settings
from worker.services.provisioning import redis_session
from worker.stack import demo
from worker.stack.devstack import DemoStack, demo_stack
from worker.stack.processes import terminate
from worker.store import channels
from worker.store import secrets as store_secrets

NUMBERS = [f"+1415555{n}" for n in range(2600, 2700)]


async def set_cap(redis_url: str, data_dir: Path, sim_url: str, cap: float) -> None:
    """Cap the demo number (at Meta too: an upgraded number), and stop the simulator's
    status webhooks for it: at 2 per send they would load the machine more than the sends
    being measured."""
    settings = Settings(redis_url=redis_url, data_dir=data_dir)
    store_secrets.use(settings)  # the stack's key, to read and write its credentials
    async with redis_session(settings) as redis:
        config = await channels.load_whatsapp(redis, demo.ACCOUNT)
        assert config is not None
        await channels.save_whatsapp(
            redis, demo.ACCOUNT, config.model_copy(update={"rate_per_s": cap})
        )
    async with httpx.AsyncClient() as client:
        response = await client.put(
            f"{sim_url}/_sim/whatsapp/numbers/{config.phone_number_id}",
            json={
                "waba_id": config.waba_id,
                "access_token": config.access_token.get_secret_value(),
                "auto_status": False,
                "throughput_per_s": cap,
            },
        )
        response.raise_for_status()


def start_workers(stack: DemoStack, count: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(count):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "worker", "--name", f"bench{i}"],
                env=stack.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
    time.sleep(4)  # let them connect before the burst
    return procs


def busiest_second(times: list[float]) -> int:
    j, best = 0, 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + 1.0:
            j += 1
        best = max(best, j - i)
    return best


def run(workers: int, cap: float, sends: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="dispatch-rl-") as tmp,
        demo_stack(Path(tmp), log_level="WARNING") as stack,
    ):
        asyncio.run(set_cap(stack.redis_url, stack.data_dir, stack.sim_url, cap))
        extra = start_workers(stack, workers - 1)
        try:
            headers = {"Authorization": f"Bearer {stack.key}", "Prefer": "respond-async"}
            url = f"{stack.api_url}/api/v1/channels/whatsapp/send"
            with httpx.Client(timeout=30) as client:
                after = client.get(f"{stack.sim_url}/_sim/requests").json()["requests"]
                since = max((r["seq"] for r in after), default=0)

                def one(i: int) -> str:
                    body = {**demo.SPEC_BODY, "to": NUMBERS[i % len(NUMBERS)], "contact_id": None}
                    response = client.post(url, json=body, headers=headers)
                    response.raise_for_status()
                    return str(response.json()["id"])

                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(one, range(sends)))
                # Read what the simulator received incrementally: asking for everything
                # every time would block its loop for milliseconds and skew its clock.
                deadline = time.monotonic() + sends / cap * 3 + 60
                sent: list[dict[str, Any]] = []
                while len(sent) < sends and time.monotonic() < deadline:
                    got = client.get(
                        f"{stack.sim_url}/_sim/requests",
                        params={"channel": "whatsapp", "after": since},
                    ).json()
                    sent += [r for r in got["requests"] if r["method"] == "POST"]
                    since = max((r["seq"] for r in got["requests"]), default=since)
                    time.sleep(0.5)
        finally:
            for proc in extra:
                terminate(proc.pid, group=True)
    times = sorted(r["at"] for r in sent)
    average = (len(times) - 1) / (times[-1] - times[0])
    return {
        "ratelimit_workers": workers,
        "ratelimit_cap_per_s": cap,
        "ratelimit_sends": len(times),
        "ratelimit_max_in_any_second": busiest_second(times),
        "ratelimit_average_per_s": round(average, 2),
        "ratelimit_average_pct_of_cap": round(100 * average / cap, 1),
        "ratelimit_run_s": round(times[-1] - times[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--cap", type=float, default=100.0)
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    args = parser.parse_args()

    result = run(args.workers, args.cap, args.sends)
    table = Table(title="global rate limit precision (WhatsApp, one number)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in result.items():
        table.add_row(name, str(value))
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(args.out.read_text()) if args.out.exists() else {}
    merged.update(result)
    args.out.write_text(json.dumps(merged, indent=2) + "\n")
    print(f"written to {args.out}", file=sys.stderr)
    if result["ratelimit_max_in_any_second"] > args.cap:
        raise SystemExit("the cap was exceeded")


if __name__ == "__main__":
    main()
