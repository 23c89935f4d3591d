"""The libraries' own ceiling here: firebase-admin ``send_each_async`` or aioapns driven
directly in a tight loop against the simulator, in one process on one loop (the bench
runs as many of these at once as the bulk worker has processes).

    python scripts/benchkit/raw.py --platform fcm --sends 20000 --account demo

    python scripts/benchkit/raw.py --platform fcm --sends 2000 --until-eof   # alongside

Prints one JSON line: sends, seconds, sends_per_s, cpu_us_per_send (a send the
simulator refuses stops the loop with an error). With ``--until-eof`` it runs alongside
something else (the bench's campaign): it prints ``ready`` once warm, then sends until
its standard input closes, so that its CPU per send is taken over the same seconds, on
the same machine, as the other's.
The account's stored configuration only tells the libraries where the simulator is.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import threading
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


async def _fcm(sender: FcmSender, tokens: list[str], stop: asyncio.Event | None) -> int:
    """Batches of 500, one after another: the tokens once, or round and round until
    ``stop``. Returns how many were sent."""
    note = messaging.Notification(title="Bench", body="Raw loop")
    sent = 0
    for start in itertools.cycle(range(0, len(tokens), FCM_BATCH)):
        if stop is not None and stop.is_set():
            break
        batch = [
            messaging.Message(fid=t, notification=note) for t in tokens[start : start + FCM_BATCH]
        ]
        result = await messaging.send_each_async(batch, app=sender.app)
        if result.success_count != len(batch):
            raise RuntimeError(f"raw FCM: {len(batch) - result.success_count} failed")
        sent += len(batch)
        if stop is None and start + FCM_BATCH >= len(tokens):
            break
    return sent


async def _apns(sender: ApnsSender, tokens: list[str], stop: asyncio.Event | None) -> int:
    """``APNS_IN_FLIGHT`` sends at a time: the tokens once, or round and round until
    ``stop``. Returns how many were sent."""
    payload = apns_payload(Notification("Bench", "Raw loop"))
    queue = itertools.cycle(tokens) if stop is not None else iter(tokens)
    sent = 0

    async def lane() -> None:
        nonlocal sent
        for token in queue:
            if stop is not None and stop.is_set():
                return
            result = await sender._pool.send_notification(
                NotificationRequest(
                    device_token=token,
                    message=payload,
                    notification_id=str(uuid.uuid4()),
                    push_type=PushType.ALERT,
                )
            )
            if not result.is_successful:
                raise RuntimeError(f"raw APNs: {result.description}")
            sent += 1

    await asyncio.gather(*(lane() for _ in range(min(APNS_IN_FLIGHT, len(tokens)))))
    return sent


def _stop_at_eof() -> asyncio.Event:
    """An event set when standard input closes (the bench's way to say "enough")."""
    loop, stop = asyncio.get_running_loop(), asyncio.Event()

    def wait() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait, daemon=True).start()
    return stop


async def main(
    platform: str, sends: int, account: str, offset: int, until_eof: bool
) -> dict[str, float]:
    settings = get_settings()
    redis = create_redis(settings)
    config, _ = (await channels.load_push(redis, account))[platform]
    await redis.aclose()
    if platform == "fcm":
        tokens = [f"raw{i:07d}:APA91b-bench-raw-token" for i in range(offset, offset + sends)]
        fcm = FcmSender(config, timeout_s=30)  # type: ignore[arg-type]
        run = lambda batch, stop=None: _fcm(fcm, batch, stop)  # noqa: E731
    else:
        tokens = [f"{i + 7:064x}" for i in range(offset, offset + sends)]
        apns = ApnsSender(config, timeout_s=30, max_in_flight=APNS_IN_FLIGHT)  # type: ignore[arg-type]
        run = lambda batch, stop=None: _apns(apns, batch, stop)  # noqa: E731
    # Connections, TLS, the OAuth token, the JWT: not part of the rate. One send first, so
    # that the warm-up's burst does not race to open connections.
    await run(tokens[:1])
    await run(tokens[1:500])
    stop = _stop_at_eof() if until_eof else None
    if stop is not None:
        print("ready", flush=True)
    cpu, wall, started = time.process_time(), time.perf_counter(), time.time()
    sent = await run(tokens, stop)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "started": started,
        "ended": time.time(),
        "cpu_s": cpu,
        "sends": sent,
        "seconds": wall,
        "sends_per_s": sent / wall,
        "cpu_us_per_send": cpu / sent * 1e6,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--platform", choices=["fcm", "apns"], required=True)
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--account", default="demo")
    parser.add_argument("--offset", type=int, default=0, help="first token number")
    parser.add_argument(
        "--until-eof",
        action="store_true",
        help="print 'ready' after the warm-up, then send the tokens round and round until "
        "standard input closes",
    )
    args = parser.parse_args()
    result = asyncio.run(main(args.platform, args.sends, args.account, args.offset, args.until_eof))
    print(json.dumps(result))
