"""The push send route's one-script accept (sends.accept_push, push_send.lua) writes what
``push.create_push`` writes (campaign-free path: roster, record, unstarted, job), and
refuses as the route's checks did one by one."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from worker.config import Settings
from worker.ids import new_id
from worker.models import Channel, ContactBody, FcmConfig
from worker.models.push_payload import MAX_PAYLOAD_BYTES
from worker.store import accounts, channels, contacts, jobs, keys, messages, push, sends, usage
from worker.store.client import create_redis

FCM_TOKEN = "fcm-token-" + "a" * 30
APNS_TOKEN = "ab" * 32
SMALL = {"fcm": 100, "apns": 120}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The session's Valkey, in a database of its own: the test stack's workers consume
    the queues of database 0, and would take the job before the test reads it."""
    url = str(settings.redis_url).rstrip("/").rsplit("/", 1)
    base = url[0] if url[-1].isdigit() else "/".join(url)
    return settings.model_copy(update={"redis_url": f"{base}/9"})


async def _account(redis: Redis, *, push_enabled: bool = True) -> str:
    account = new_id("acc").lower().replace("_", "-")
    await accounts.create_account(redis, account)
    if push_enabled:
        await channels.save_push(
            redis, account, FcmConfig.model_validate({"project_id": "p", "service_account": "{}"})
        )
    return account


async def _contact(redis: Redis, account: str, *tokens: tuple[str, str]) -> None:
    body = ContactBody.model_validate(
        {"push_tokens": [{"platform": p, "token": t} for p, t in tokens]}
    )
    await contacts.upsert(redis, account, "c1", body)


def _message(account: str, **extra: Any) -> messages.Message:
    return messages.new(
        account,
        Channel.PUSH,
        contact_id="c1",
        title="Hello",
        text="World",
        data={"k": 1},
        **extra,
    )


async def _written(redis: Redis, account: str, message_id: str) -> dict[str, Any]:
    record = await redis.hgetall(keys.message(account, message_id))
    record = {k: v for k, v in record.items() if k not in ("id", "created_at", "updated_at")}
    return {
        "roster": await redis.get(keys.message_roster(account, message_id)),
        "record": record,
        # The hour given, give or take the second between the two writes.
        "roster_ttl": 3590 < await redis.ttl(keys.message_roster(account, message_id)) <= 3600,
        "record_ttl": 3590 < await redis.ttl(keys.message(account, message_id)) <= 3600,
    }


def _unstarted_and_job(redis: Redis, message: messages.Message) -> Any:
    async def read() -> tuple[float | None, list[str]]:
        score = await redis.zscore(keys.unstarted(), messages.task_member(message))
        queued = await redis.lrange(jobs.queue_for(jobs.PUSH_SEND), 0, -1)
        return score, [q for q in queued if message.id in str(q)]

    return read()


def test_accept_push_writes_what_create_push_writes(settings: Settings) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        account = await _account(redis)
        await _contact(redis, account, ("fcm", FCM_TOKEN), ("apns", APNS_TOKEN))
        members = await contacts.active_tokens(redis, account, "c1")

        by_python = _message(account, device_count=len(members))
        await push.create_push(redis, by_python, members, 3600, publish=True)
        by_script = _message(account)
        refused = await sends.accept_push(
            redis, by_script, 3600, key_hash=None, payload_bytes=SMALL
        )
        assert refused is None
        assert by_script.device_count == 2
        assert await _written(redis, account, by_script.id) == await _written(
            redis, account, by_python.id
        )
        score, queued = await _unstarted_and_job(redis, by_script)
        assert score == by_script.created_at
        [job] = queued
        assert json.loads(job)["headers"]["task"] == jobs.PUSH_SEND
        assert (await messages.load(redis, account, by_script.id)) == by_script
        # Each counted once as a push message accepted, on its day.
        day = usage.key(account, by_script.created_at)
        assert await redis.hgetall(day) == {usage.PUSH_SENT: "2"}
        await redis.aclose()

    asyncio.run(scenario())


def test_refusals_in_the_routes_order(settings: Settings) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)

        async def accept(
            account: str, sizes: dict[str, int] = SMALL, key_hash: str | None = None
        ) -> sends.Refused | None:
            message = _message(account)
            refused = await sends.accept_push(
                redis, message, 3600, key_hash=key_hash, payload_bytes=sizes
            )
            stored = await redis.exists(keys.message(account, message.id))
            assert stored == (refused is None)
            return refused

        account = await _account(redis)
        await redis.set(keys.api_key("revoked"), json.dumps({"revoked_at": time.time()}))
        await redis.set(keys.api_key("live"), json.dumps({"revoked_at": None}))
        assert await accept(account, key_hash="nope") == sends.Refused("key_invalid", "")
        assert await accept(account, key_hash="revoked") == sends.Refused("key_revoked", "")
        off = await _account(redis, push_enabled=False)
        assert await accept(off, key_hash="live") == sends.Refused("push_not_enabled", "")
        assert await accept(account) == sends.Refused("contact_not_found", "")

        await _contact(redis, account, ("apns", APNS_TOKEN))
        big = MAX_PAYLOAD_BYTES + 1
        # An APNs-only contact is not refused for FCM's size.
        assert await accept(account, {"fcm": big, "apns": 10}) is None
        assert await accept(account, {"fcm": big, "apns": big}) == sends.Refused(
            "payload_too_large", "apns"
        )
        await _contact(redis, account, ("fcm", FCM_TOKEN))
        assert await accept(account, {"fcm": big, "apns": big}) == sends.Refused(
            "payload_too_large", "apns fcm"
        )
        assert await accept(account, {"fcm": MAX_PAYLOAD_BYTES, "apns": 1}) is None
        await redis.aclose()

    asyncio.run(scenario())
