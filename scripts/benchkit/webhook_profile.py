"""Where an event webhook's CPU goes, in one process under cProfile (not part of `make
bench`; the bench's ``webhooks`` step measures the whole stack, this splits the cost).

A Valkey of its own and the bench's receiver (`receiver.py`, on 127.0.0.2): ``--events``
push.delivered events written to the outbox as push slices write them (one entry of 200),
then the fan-out job's part (``dispatch_outbox``, until the outbox is empty) and the sender's
(``drain``, until the endpoint's queue is empty), each timed with its process CPU and
profiled; the top functions by cumulative and own time are printed.

    .venv/bin/python scripts/benchkit/webhook_profile.py --events 5000
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from worker.config import Settings
from worker.delivery.context import DeliveryContext
from worker.delivery.webhooks import dispatch_outbox, drain
from worker.models import Scope
from worker.models.webhooks import Endpoint
from worker.providers.outbound import OutboundClient
from worker.stack.processes import EmbeddedValkey, free_port
from worker.store import accounts, events, webhooks
from worker.store import secrets as store_secrets
from worker.store import webhook_deliveries as deliveries
from worker.store.client import create_redis

ACCOUNT = "acc_profile"
SLICE = 200  # devices per push slice: one outbox entry


def _data(i: int) -> dict[str, Any]:
    return {
        "message_id": f"msg_{i // SLICE:012d}",
        "channel": "push",
        "campaign_id": "cmp_profile",
        "platform": "fcm",
        "token": "fcm:webh…oken",
        "status": "delivered",
        "contact_id": f"webhooks-fcm-{i:07d}",
    }


async def _valkey(redis: Redis) -> tuple[float, dict[str, tuple[int, int]]]:
    """Valkey's CPU seconds and, per command, (calls, µs) so far."""
    cpu = await redis.info("cpu")
    stats = await redis.info("commandstats")
    per = {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()}
    return cpu["used_cpu_sys"] + cpu["used_cpu_user"], per


async def _valkey_since(
    redis: Redis, before: tuple[float, dict[str, tuple[int, int]]], n: int
) -> None:
    cpu, per = await _valkey(redis)
    print(f"Valkey: {(cpu - before[0]) / n * 1e6:.0f} µs CPU/event; per event, by command:")
    rows = []
    for name, (calls, usec) in per.items():
        c0, u0 = before[1].get(name, (0, 0))
        if calls > c0:
            rows.append((usec - u0, name, calls - c0))
    for usec, name, calls in sorted(rows, reverse=True)[:12]:
        print(f"  {name:<24} {calls / n:6.2f} calls {usec / n:7.1f} µs")


def _profiled(
    label: str, profile: cProfile.Profile | None, cpu_s: float, wall_s: float, n: int
) -> None:
    print(f"\n=== {label}: {n} events, {wall_s:.2f} s wall, {cpu_s / n * 1e6:.0f} µs CPU/event")
    if profile is None:
        return
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(key).print_stats(40)
        print(out.getvalue().split("\n", 6)[-1])


async def run(n: int, receiver_url: str, settings: Settings, profiled: bool) -> None:
    redis: Redis = create_redis(settings)
    await accounts.create_account(redis, ACCOUNT)
    now = time.time()
    endpoint = Endpoint(
        id="wh_profile",
        account=ACCOUNT,
        url=receiver_url,
        events=["push.delivered"],
        description="profile",
        active=True,
        scopes=list(Scope),  # as an admin key makes it
        created_at=now,
        updated_at=now,
    )
    await webhooks.create(redis, endpoint)
    for start in range(0, n, SLICE):
        batch: list[events.Event] = [
            ("push.delivered", _data(i)) for i in range(start, min(n, start + SLICE))
        ]
        async with redis.pipeline(transaction=True) as pipe:
            events.emit(pipe, ACCOUNT, batch, time.time())
            await pipe.execute()
    await dispatch_outbox(redis, settings.webhook_backlog_max)  # creates the group

    profile = cProfile.Profile() if profiled else None
    valkey0 = await _valkey(redis)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profile:
        profile.enable()
    while await dispatch_outbox(redis, settings.webhook_backlog_max):
        pass
    if profile:
        profile.disable()
    _profiled(
        "fan-out: dispatch_outbox",
        profile,
        time.process_time() - cpu0,
        time.perf_counter() - wall0,
        n,
    )
    await _valkey_since(redis, valkey0, n)
    queued, _ = await deliveries.backlog(redis, ACCOUNT, endpoint.id)
    print(f"queued for the endpoint: {queued}")

    ctx = DeliveryContext(
        redis=redis,
        settings=settings,
        whatsapp=None,  # type: ignore[arg-type]  # the sender uses none of these
        whatsapp_retry=None,  # type: ignore[arg-type]
        push=None,  # type: ignore[arg-type]
        push_retry=None,  # type: ignore[arg-type]
        limiter=None,  # type: ignore[arg-type]
        outbound=OutboundClient(allow=settings.outbound_allow, deadline_s=10),
    )
    profile = cProfile.Profile() if profiled else None
    valkey0 = await _valkey(redis)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profile:
        profile.enable()
    while (await deliveries.backlog(redis, ACCOUNT, endpoint.id))[0]:
        await drain(ctx, ACCOUNT, endpoint.id)
    if profile:
        profile.disable()
    _profiled("sender: drain", profile, time.process_time() - cpu0, time.perf_counter() - wall0, n)
    await _valkey_since(redis, valkey0, n)
    print("endpoint stats:", await deliveries.stats(redis, ACCOUNT, endpoint.id))
    await ctx.outbound.aclose()
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=None, help="webhook_concurrency")
    parser.add_argument("--no-profile", action="store_true", help="CPU and wall time only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="webhook-profile-") as tmp:
        valkey = EmbeddedValkey(Path(tmp), free_port())
        valkey.start()
        port_file = Path(tmp) / "receiver.port"
        receiver = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("receiver.py")),
                "--port-file",
                str(port_file),
            ]
        )
        try:
            while not port_file.exists():
                time.sleep(0.05)
            base = f"http://127.0.0.2:{port_file.read_text()}"
            settings = Settings(
                redis_url=valkey.url,
                outbound_allow="127.0.0.2/32",
                secret_key=Fernet.generate_key().decode(),
                **({"webhook_concurrency": args.concurrency} if args.concurrency else {}),
            )
            store_secrets.use(settings)
            asyncio.run(run(args.events, f"{base}/events", settings, not args.no_profile))
            got = httpx.get(f"{base}/_count").json()
            print(f"receiver: {got['requests']} requests over {got['connections']} connections")
        finally:
            receiver.terminate()
            receiver.wait(10)
            valkey.stop()


if __name__ == "__main__":
    main()
