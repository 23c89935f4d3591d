"""The libraries' own ceiling here: firebase-admin ``send_each_async`` or aioapns driven
directly against the simulator, with nothing of ours around them but the token list.

The bench runs as many of these processes as the bulk worker has (one per core) and
drives them over standard input, one JSON command per line, so that every process
starts each measurement at the same moment; each answers one JSON line:

    {"run": {"seconds": 10, "offset": 0, "calls": 2, "batch": 500}}
        FCM: ``calls`` send_each_async calls in flight, ``batch`` messages each
        (``--platform fcm-lean``: our own transport's ``send``, the same way)
    {"run": {"seconds": 10, "offset": 0, "in_flight": 200}}
        APNs: ``in_flight`` requests in flight (one lane per request, as aioapns is
        used best: each lane sends one notification after another)
    {"loop": {…the same without seconds…}}
        sends until the next line arrives (a campaign runs alongside: both pay for
        the same seconds of this machine)

A run lasts a time, not a number of sends: every process sends until the same moment,
so none finishes early and leaves its core to the others (which a fixed share per
process did, flattering whatever it was compared with).

and stops at the end of its input. It prints ``ready`` once its connections, TLS, OAuth
token and JWT are set up; each measurement starts with ``warm`` unmeasured sends (the
connections may have been dropped while idle). A send the simulator refuses stops the
process with an error: a baseline that fails is no baseline.

    python scripts/benchkit/raw.py --platform fcm --account demo < commands.jsonl

The account's stored configuration only tells the libraries where the simulator is.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aioapns.common import NotificationRequest, PushType
from firebase_admin import messaging

from worker.config import get_settings
from worker.models.push_payload import Notification, apns_payload
from worker.providers.apns import ApnsSender
from worker.providers.fcm import FcmSender
from worker.providers.fcm import _message as fcm_message
from worker.providers.fcm_lean import LeanFcmSender
from worker.store import channels
from worker.store.client import create_redis
from worker.store.provider_tokens import RedisProviderTokens

WARM = 400  # unmeasured sends before each measurement (a command's "warm" says otherwise)
Sender = Callable[[Iterator[str], dict[str, Any]], Awaitable[int]]

# What every loop sends: the notification a campaign sends, with the collapse identity
# every push of ours carries (a campaign's is ``cmp_<id>_<batch>``, this long), so that a
# baseline puts the same fields and bytes on the wire as what it is compared with.
# Without it the loops sent a message without its android/apns/webpush sections, which
# cost the simulator 15-40 µs less per request than a campaign's.
NOTE = Notification("Bench", "Raw loop", collapse_id=f"raw_{'0' * 26}_1")


def fcm_tokens(first: int, count: int) -> list[str]:
    return [f"raw{i:08d}:APA91b-bench-raw-token" for i in range(first, first + count)]


def apns_tokens(first: int, count: int) -> list[str]:
    return [f"{i + 7:064x}" for i in range(first, first + count)]


def _fcm_sender(sender: FcmSender) -> Sender:
    # The message's sections built once and shared by every message (as firebase-admin is
    # used best), from what our sender would build for the same note.
    shape = fcm_message(NOTE, fcm_tokens(0, 1)[0])
    sections = {"notification": shape.notification, "android": shape.android}
    sections |= {"apns": shape.apns, "webpush": shape.webpush}

    async def send(tokens: Iterator[str], config: dict[str, Any]) -> int:
        batch_size, sent = int(config["batch"]), 0

        async def lane() -> None:
            nonlocal sent
            while batch := list(itertools.islice(tokens, batch_size)):
                # Registration tokens go in `token` (firebase-admin 7 calls it deprecated;
                # `fid` only takes installation ids).
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    messages = [messaging.Message(token=t, **sections) for t in batch]
                result = await messaging.send_each_async(messages, app=sender.app)
                if result.failure_count:
                    failed = next(r.exception for r in result.responses if not r.success)
                    raise RuntimeError(f"raw FCM: {result.failure_count} failed: {failed}")
                sent += len(batch)

        await asyncio.gather(*(lane() for _ in range(int(config["calls"]))))
        return sent

    return send


def _lean_fcm_sender(sender: LeanFcmSender) -> Sender:
    """Our own FCM transport (worker/providers/fcm_lean.py) driven as the raw firebase-admin
    loop is: ``calls`` lanes, ``batch`` messages per call."""
    note = NOTE

    async def send(tokens: Iterator[str], config: dict[str, Any]) -> int:
        batch_size, sent = int(config["batch"]), 0

        async def lane() -> None:
            nonlocal sent
            while batch := list(itertools.islice(tokens, batch_size)):
                results = await sender.send(note, batch)
                failed = [r for r in results if not r.ok]
                if failed:
                    raise RuntimeError(f"raw lean FCM: {len(failed)} failed: {failed[0].error}")
                sent += len(batch)

        await asyncio.gather(*(lane() for _ in range(int(config["calls"]))))
        return sent

    return send


def _apns_sender(sender: ApnsSender) -> Sender:
    payload = apns_payload(NOTE)

    async def send(tokens: Iterator[str], config: dict[str, Any]) -> int:
        sent = 0

        async def lane() -> None:
            nonlocal sent
            for token in tokens:
                result = await sender._pool.send_notification(
                    NotificationRequest(
                        device_token=token,
                        message=payload,
                        notification_id=str(uuid.uuid4()),
                        push_type=PushType.ALERT,
                        collapse_key=NOTE.collapse_id,
                    )
                )
                if not result.is_successful:
                    raise RuntimeError(f"raw APNs: {result.status} {result.description}")
                sent += 1

        await asyncio.gather(*(lane() for _ in range(int(config["in_flight"]))))
        return sent

    return send


POOL = 20_000  # distinct tokens per process, sent round and round


async def _measure(
    send: Sender,
    tokens_for: Callable[[int, int], list[str]],
    config: dict[str, Any],
    until: asyncio.Future[str] | None,
) -> dict[str, float]:
    """Sends for ``config["seconds"]``, or until ``until`` is done (the next line)."""
    first, warm = int(config.get("offset", 0)), int(config.get("warm", WARM))
    await send(iter(tokens_for(first, warm)), config)
    tokens = tokens_for(first + warm, POOL)
    if until is None:
        deadline = time.monotonic() + float(config["seconds"])

        def more() -> bool:
            return time.monotonic() < deadline
    else:
        print(json.dumps({"looping": True}), flush=True)

        def more() -> bool:
            return not until.done()

    def source() -> Iterator[str]:
        for token in itertools.cycle(tokens):
            if not more():
                return
            yield token

    cpu, wall, started = time.process_time(), time.perf_counter(), time.time()
    sent = await send(source(), config)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "started": started,
        "ended": time.time(),
        "cpu_s": cpu,
        "sends": sent,
        "warm": warm,
        "seconds": wall,
        "sends_per_s": sent / wall,
        "cpu_us_per_send": cpu / sent * 1e6,
    }


async def main(platform: str, account: str) -> None:
    settings = get_settings()
    redis = create_redis(settings)
    config, _ = (await channels.load_push(redis, account))[platform.split("-")[0]]
    if platform == "fcm-lean":
        send = _lean_fcm_sender(LeanFcmSender(config, timeout_s=30))  # type: ignore[arg-type]
        tokens_for = fcm_tokens
        opening = {"calls": 1, "batch": 1}
    elif platform == "fcm":
        send = _fcm_sender(FcmSender(config, timeout_s=30))  # type: ignore[arg-type]
        tokens_for = fcm_tokens
        opening = {"calls": 1, "batch": 1}
    else:
        # The key's provider token is the one the workers use (Apple refuses a key's new
        # token within 20 minutes of its last).
        apns = ApnsSender(
            config,  # type: ignore[arg-type]
            timeout_s=30,
            max_in_flight=10_000,
            token_store=RedisProviderTokens(redis),
        )
        await apns.auth.refresh()
        send = _apns_sender(apns)
        tokens_for = apns_tokens
        opening = {"in_flight": 1}
    # One send opens the connection, signs the token; then the heap start-up left is
    # frozen out of the collector's full passes, as the worker does with its own.
    await send(iter(tokens_for(0, 1)), opening)
    gc.collect()
    gc.freeze()
    print("ready", flush=True)
    lines: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "")

    threading.Thread(target=read, daemon=True).start()
    while line := await lines.get():
        command = json.loads(line)
        kind, params = next(iter(command.items()))
        until = asyncio.ensure_future(lines.get()) if kind == "loop" else None
        result = await _measure(send, tokens_for, params, until)
        print(json.dumps(result), flush=True)
        if until is not None and not await until:
            break  # the input ended instead of the next line


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--platform", choices=["fcm", "fcm-lean", "apns"], required=True)
    parser.add_argument("--account", default="demo")
    parser.add_argument("--nice", type=int, default=0, help="as `dispatch worker --nice`")
    args = parser.parse_args()
    if args.nice:
        # The way the bulk worker lowers itself (its session's autogroup too): started in a
        # session of its own, the loop is then preempted exactly as the worker it is
        # compared with.
        from worker.stack.processes import lower_priority

        lower_priority(args.nice)
    # The standard event loop: uvloop was tried and changed neither rate nor CPU per send
    # (FCM 1,531-1,615/s against 1,554-1,565; APNs within 1 %).
    asyncio.run(main(args.platform, args.account))
