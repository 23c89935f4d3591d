"""The libraries' own ceiling here: firebase-admin ``send_each_async`` or aioapns driven
directly in a tight loop against the simulator, in one process on one loop (the bench
runs as many of these at once as the bulk worker has processes).

    python scripts/benchkit/raw.py --platform fcm --sends 20000 --account demo

Prints one JSON line: sends, seconds, sends_per_s, cpu_us_per_send, ok.
The account's stored configuration only tells the libraries where the simulator is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from aioapns.common import NotificationRequest, PushType
from firebase_admin import messaging

from worker.config import get_settings
from worker.providers.apns import ApnsSender
from worker.providers.fcm import FcmSender
from worker.push_payload import Notification, apns_payload
from worker.store import channels
from worker.store.client import create_redis

FCM_BATCH = 500  # send_each_async's limit
# As many as a bulk worker process has in flight (2 slices of 200).
APNS_IN_FLIGHT = 400


async def _fcm(sender: FcmSender, tokens: list[str]) -> int:
    ok = 0
    note = messaging.Notification(title="Bench", body="Raw loop")
    for start in range(0, len(tokens), FCM_BATCH):
        batch = [
            messaging.Message(fid=t, notification=note) for t in tokens[start : start + FCM_BATCH]
        ]
        result = await messaging.send_each_async(batch, app=sender.app)
        ok += result.success_count
    return ok


async def _apns(sender: ApnsSender, tokens: list[str]) -> int:
    payload = apns_payload(Notification("Bench", "Raw loop"))
    gate = asyncio.Semaphore(APNS_IN_FLIGHT)

    async def one(token: str) -> bool:
        async with gate:
            result = await sender._pool.send_notification(
                NotificationRequest(
                    device_token=token,
                    message=payload,
                    notification_id=str(uuid.uuid4()),
                    push_type=PushType.ALERT,
                )
            )
            return bool(result.is_successful)

    return sum(await asyncio.gather(*(one(t) for t in tokens)))


async def main(platform: str, sends: int, account: str, offset: int) -> dict[str, float]:
    settings = get_settings()
    redis = create_redis(settings)
    config, _ = (await channels.load_push(redis, account))[platform]
    await redis.aclose()
    if platform == "fcm":
        tokens = [f"raw{i:07d}:APA91b-bench-raw-token" for i in range(offset, offset + sends)]
        fcm = FcmSender(config, timeout_s=30)  # type: ignore[arg-type]
        run = lambda batch: _fcm(fcm, batch)  # noqa: E731
    else:
        tokens = [f"{i + 7:064x}" for i in range(offset, offset + sends)]
        apns = ApnsSender(config, timeout_s=30, max_in_flight=APNS_IN_FLIGHT)  # type: ignore[arg-type]
        run = lambda batch: _apns(apns, batch)  # noqa: E731
    # Connections, TLS, the OAuth token, the JWT: not part of the rate. One send first, so
    # that the warm-up's burst does not race to open connections.
    await run(tokens[:1])
    await run(tokens[1:500])
    cpu, wall, started = time.process_time(), time.perf_counter(), time.time()
    ok = await run(tokens)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "started": started,
        "ended": time.time(),
        "cpu_s": cpu,
        "sends": sends,
        "ok": ok,
        "seconds": wall,
        "sends_per_s": sends / wall,
        "cpu_us_per_send": cpu / sends * 1e6,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--platform", choices=["fcm", "apns"], required=True)
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--account", default="demo")
    parser.add_argument("--offset", type=int, default=0, help="first token number")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.platform, args.sends, args.account, args.offset))))
