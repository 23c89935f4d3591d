"""The push send algorithm without Celery: real Valkey, fake senders in place of the SDKs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from worker.config import Settings
from worker.delivery.context import DeliveryContext
from worker.delivery.push import send_push
from worker.delivery.push_clients import PushClients
from worker.delivery.ratelimit import RateLimiter
from worker.delivery.retry import RetryPolicy
from worker.errors import DeliveryError, InvalidTokenError, RetryableError
from worker.ids import new_id
from worker.models import ContactBody, FcmConfig, MessageStatus
from worker.models.push_payload import Notification
from worker.providers.push import DeviceResult
from worker.providers.whatsapp import WhatsAppClient
from worker.store import accounts, channels, contacts, messages, push, tokens
from worker.store.client import create_redis


class FakeSender:
    """Answers per token from a script; records every token it was asked to send to."""

    def __init__(self, platform: str, errors: dict[str, list[DeliveryError]]) -> None:
        self.platform = platform
        self.errors = errors
        self.calls: list[list[str]] = []

    async def send(self, note: Notification, tokens_: Sequence[str]) -> list[DeviceResult]:
        self.calls.append(list(tokens_))
        out = []
        for token in tokens_:
            queue = self.errors.get(token)
            error = queue.pop(0) if queue else None
            out.append(DeviceResult(self.platform, token, None if error else "id-1", error, 1.0))
        return out

    async def close(self) -> None:
        pass


async def _scenario(
    settings: Settings,
    fcm_tokens: list[str],
    errors: dict[str, list[DeliveryError]],
    max_attempts: int = 3,
) -> tuple[DeliveryContext, FakeSender, str, str]:
    redis: Redis = create_redis(settings)
    account = new_id("acc").lower().replace("_", "-")
    await accounts.create_account(redis, account)
    await channels.save_push(
        redis, account, FcmConfig.model_validate({"project_id": "p", "service_account": "{}"})
    )
    body = ContactBody.model_validate(
        {"push_tokens": [{"platform": "fcm", "token": t} for t in fcm_tokens[:100]]}
    )
    await contacts.upsert(redis, account, "c1", body)
    for start in range(100, len(fcm_tokens), 100):
        more = ContactBody.model_validate(
            {
                "push_tokens": [
                    {"platform": "fcm", "token": t} for t in fcm_tokens[start : start + 100]
                ]
            }
        )
        await contacts.upsert(redis, account, "c1", more)
    sender = FakeSender("fcm", errors)
    ctx = DeliveryContext(
        redis=redis,
        settings=settings,
        whatsapp=WhatsAppClient(None),  # type: ignore[arg-type]
        whatsapp_retry=RetryPolicy(3, 1, 4),
        push=PushClients(timeout_s=5, factory=lambda *_: sender),
        push_retry=RetryPolicy(max_attempts, 0.1, 1),
        limiter=RateLimiter(redis),
    )
    members = await contacts.active_tokens(redis, account, "c1")
    now = time.time()
    message = messages.Message(
        id=new_id("msg"),
        account=account,
        channel="push",
        status=MessageStatus.QUEUED,
        contact_id="c1",
        title="t",
        text="b",
        device_count=len(members),
        created_at=now,
        updated_at=now,
    )
    await push.create_push(redis, message, members, 3600)
    return ctx, sender, account, message.id


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_only_the_tokens_that_failed_are_retried(settings: Settings) -> None:
    all_tokens = [f"token-{i:05d}-abcdefghijkl" for i in range(1000)]
    unavailable = RetryableError("503", code="provider_unavailable")
    flaky = {
        all_tokens[7]: [unavailable],
        all_tokens[500]: [unavailable],
        all_tokens[999]: [unavailable],
    }

    sliced = settings.model_copy(update={"push_slice_size": 250})

    async def scenario() -> None:
        ctx, sender, account, message_id = await _scenario(sliced, all_tokens, flaky)
        first = await send_push(ctx, account, message_id)
        assert first.status is MessageStatus.RETRYING
        assert first.retry_in_s is not None
        await asyncio.sleep(first.retry_in_s)
        second = await send_push(ctx, account, message_id)
        assert second.status is MessageStatus.SENT
        # Slices of DISPATCH_PUSH_SLICE_SIZE (250 here), then only the three that failed.
        assert [len(c) for c in sender.calls] == [250, 250, 250, 250, 3]
        assert sorted(sender.calls[-1]) == sorted(flaky)
        message = await messages.load(ctx.redis, account, message_id)
        assert message is not None
        assert (message.delivered, message.failed) == (1000, 0)
        stats = await tokens.load_many(ctx.redis, account, [f"fcm:{t}" for t in all_tokens])
        assert {(s.delivered, s.failed) for s in stats} == {(1, 0)}
        assert all(s.last_success_at for s in stats)
        assert [s.token for s in stats if s.last_error] == sorted(flaky)
        assert {s.last_error for s in stats if s.last_error} == {"503"}
        await ctx.redis.aclose()

    _run(scenario())


def test_slices_are_of_equal_size_none_above_the_setting(settings: Settings) -> None:
    """With slices of 250, 260 devices go as 130 + 130, not 250 + 10: a job waits for its
    slowest slice."""
    all_tokens = [f"token-{i:05d}-abcdefghijkl" for i in range(260)]
    sliced = settings.model_copy(update={"push_slice_size": 250})

    async def scenario() -> None:
        ctx, sender, account, message_id = await _scenario(sliced, all_tokens, {})
        assert (await send_push(ctx, account, message_id)).status is MessageStatus.SENT
        assert [len(c) for c in sender.calls] == [130, 130]
        assert [t for c in sender.calls for t in c] == all_tokens
        await ctx.redis.aclose()

    _run(scenario())


def test_dead_tokens_are_pruned_and_retries_run_out(settings: Settings) -> None:
    names = ["dead-token-0000000000", "flaky-token-000000000", "good-token-0000000000"]
    dead = InvalidTokenError("gone", code="token_unregistered", provider_code="UNREGISTERED")
    down = RetryableError("503", code="provider_unavailable")
    script = {names[0]: [dead], names[1]: [down, down]}

    async def scenario() -> None:
        ctx, _, account, message_id = await _scenario(settings, names, script, max_attempts=2)
        first = await send_push(ctx, account, message_id)
        assert first.retry_in_s is not None
        await asyncio.sleep(first.retry_in_s)
        last = await send_push(ctx, account, message_id)
        assert last.status is MessageStatus.SENT  # one device got it
        devices = {d.token: d for d in await push.load_devices(ctx.redis, account, message_id)}
        assert devices[names[0]].pruned
        assert (devices[names[1]].status, devices[names[1]].attempts) == ("failed", 2)
        assert devices[names[2]].status == "delivered"
        assert await contacts.active_tokens(ctx.redis, account, "c1") == [
            f"fcm:{names[1]}",
            f"fcm:{names[2]}",
        ]
        await ctx.redis.aclose()

    _run(scenario())


def test_a_sender_that_raises_leaves_its_devices_to_retry(settings: Settings) -> None:
    names = ["token-a-000000000000", "token-b-000000000000"]

    class Broken(FakeSender):
        async def send(self, note: Notification, tokens_: Sequence[str]) -> list[DeviceResult]:
            raise RuntimeError("library blew up")

    async def scenario() -> None:
        ctx, _, account, message_id = await _scenario(settings, names, {})
        ctx.push = PushClients(timeout_s=5, factory=lambda *_: Broken("fcm", {}))
        outcome = await send_push(ctx, account, message_id)
        assert outcome.status is MessageStatus.RETRYING
        devices = await push.load_devices(ctx.redis, account, message_id)
        assert {d.status for d in devices} == {"retrying"}
        assert {d.error for d in devices} == {"RuntimeError: library blew up"}
        await ctx.redis.aclose()

    _run(scenario())


def test_token_counters_keep_each_devices_own_time(settings: Settings) -> None:
    """Devices delivered at another time than the slice's others keep their own time."""
    names = ["token-early-000000000", "token-late-0000000000", "token-gone-0000000000"]

    async def scenario() -> None:
        ctx, _, account, message_id = await _scenario(settings, names, {})
        message = await messages.load(ctx.redis, account, message_id)
        assert message is not None
        early, late, gone = (push.Device("fcm", n, contact="c1") for n in names)
        early.status, early.at = "delivered", 1000.5
        late.status, late.at = "delivered", 2000.25
        gone.status, gone.at, gone.error = "failed", 3000.0, "gone"
        outcomes = [
            push.DeviceOutcome(early),
            push.DeviceOutcome(late),
            push.DeviceOutcome(gone, prune=True),
        ]
        await push.record_devices(ctx.redis, message, outcomes, 4000.0, 3600)
        stats = {
            s.token: s
            for s in await tokens.load_many(ctx.redis, account, [f"fcm:{n}" for n in names])
        }
        assert (stats[names[0]].delivered, stats[names[0]].last_success_at) == (1, 1000.5)
        assert (stats[names[1]].delivered, stats[names[1]].last_success_at) == (1, 2000.25)
        assert (stats[names[2]].failed, stats[names[2]].prune_reason) == (1, "gone")
        assert await contacts.active_tokens(ctx.redis, account, "c1") == [
            f"fcm:{n}" for n in names[:2]
        ]
        await ctx.redis.aclose()

    _run(scenario())
