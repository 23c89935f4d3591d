"""The automation engine without Celery, on real Valkey: the script that runs waits and tags
for a whole batch of runs, and the worker's part (the steps it is handed), webhooks through
httpx.MockTransport."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from worker.config import Settings
from worker.delivery.automation import advance_runs
from worker.delivery.context import BUSY_RETRY_S, DeliveryContext
from worker.delivery.push_clients import PushClients
from worker.delivery.ratelimit import RateLimiter
from worker.delivery.retry import RetryPolicy
from worker.ids import new_id
from worker.models import Channel, MessageStatus
from worker.models.automations import AutomationCreate
from worker.providers.outbound import OutboundClient
from worker.providers.whatsapp import WhatsAppClient
from worker.services.triggers import process_contact_events
from worker.store import automations, delayed, keys, messages
from worker.store.client import create_redis

WAIT_S = 0.3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A database of its own: the delayed set here is not the one a running beat pumps
    (the integration tests' stack may be up), so only these tests advance these runs."""
    server = settings.redis_url.removesuffix("/0")  # the embedded server's URL names db 0
    return settings.model_copy(update={"redis_url": f"{server}/7"})


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _context(redis: Redis, settings: Settings, http: httpx.AsyncClient) -> DeliveryContext:
    return DeliveryContext(
        redis=redis,
        settings=settings,
        whatsapp=WhatsAppClient(http),
        whatsapp_retry=RetryPolicy(max_attempts=3, base_delay_s=1, max_delay_s=4),
        push=PushClients(timeout_s=5),
        push_retry=RetryPolicy(max_attempts=3, base_delay_s=1, max_delay_s=4),
        limiter=RateLimiter(redis),
        # hooks.test stands for a public host (documentation address 203.0.113.7).
        outbound=OutboundClient(
            transport=http._transport,
            resolve=lambda host, port: _public_address(),
        ),
    )


async def _public_address() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return [ipaddress.ip_address("93.184.215.14")]


async def _automation(
    redis: Redis,
    steps: list[dict[str, Any]],
    account: str | None = None,
    trigger: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """An active automation, in a new account unless ``account`` is given."""
    account = account or new_id("acc").lower().replace("_", "-")
    automation_id = new_id("aut")
    body = AutomationCreate.model_validate(
        {"name": "engine", "trigger": trigger or {"type": "manual"}, "steps": steps}
    )
    await automations.create(redis, account, automation_id, body)
    automation = await automations.load(redis, account, automation_id)
    assert automation is not None
    await automations.set_active(redis, automation, True)
    return account, automation_id


async def _enroll(redis: Redis, account: str, automation_id: str, contacts: list[str]) -> list[str]:
    pairs = [(c, new_id("run")) for c in contacts]
    assert await automations.enroll_many(redis, account, automation_id, pairs) == ["ok"] * len(
        pairs
    )
    return [run_id for _, run_id in pairs]


async def _statuses(redis: Redis, account: str, run_ids: list[str]) -> list[tuple[str, str]]:
    out = []
    for run_id in run_ids:
        status, step = await redis.hmget(keys.run(account, run_id), "status", "step")
        out.append((str(status), str(step)))
    return out


def test_a_batch_past_its_wait_is_tagged_and_done_once(
    settings: Settings, loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        account, automation_id = await _automation(
            redis, [{"type": "wait", "seconds": WAIT_S}, {"type": "add_tag", "tag": "waited"}]
        )
        contacts = [f"c{i}" for i in range(50)]
        run_ids = await _enroll(redis, account, automation_id, contacts)
        # Before the wait is over (a duplicate job, early): nothing moves.
        early = await automations.advance(redis, account, run_ids)
        assert early.steps == []
        assert early.handed_over == {}
        assert early.later == []
        assert set(await _statuses(redis, account, run_ids)) == {("waiting", "0")}

        await asyncio.sleep(WAIT_S + 0.05)
        advanced = await automations.advance(redis, account, run_ids)
        assert sorted((kind, state) for _, _, kind, state in advanced.steps) == sorted(
            [("wait", "done")] * 50 + [("add_tag", "done")] * 50
        )
        assert advanced.handed_over == {}
        assert advanced.later == []
        assert advanced.broken == {}
        assert set(await _statuses(redis, account, run_ids)) == {("done", "1")}
        members = await redis.zrange(keys.tag_members(account, "waited"), 0, -1)
        assert sorted(members) == sorted(contacts)
        assert await redis.smembers(keys.contact_tags(account, "c7")) == {"waited"}
        counts = await automations.step_counts(redis, account, automation_id)
        assert counts == {
            0: {"waiting": 0, "done": 50, "failed": 0},
            1: {"waiting": 0, "done": 50, "failed": 0},
        }
        run = await automations.load_run(redis, account, run_ids[0])
        assert run is not None
        assert run.steps[0]["status"] == "done"
        assert run.steps[0]["waited_until"] == pytest.approx(run.due_at, abs=1e-3)
        assert run.steps[1] == {"status": "done", "tag": "waited", "at": run.steps[1]["at"]}
        assert run.steps[1]["at"] >= run.steps[0]["waited_until"]

        # The same batch again (a redelivered job): no step runs twice, no count moves.
        again = await automations.advance(redis, account, run_ids)
        assert again.steps == []
        assert await automations.step_counts(redis, account, automation_id) == counts
        await redis.aclose()

    loop.run_until_complete(scenario())


def test_a_run_another_job_holds_is_left_for_later_and_its_holder_may_go_on(
    settings: Settings, loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        account, automation_id = await _automation(
            redis,
            [
                {"type": "wait", "seconds": WAIT_S},
                {"type": "remove_tag", "tag": "new"},
                {"type": "wait", "seconds": 60},
                {"type": "add_tag", "tag": "later"},
            ],
        )
        held, free = await _enroll(redis, account, automation_id, ["h", "f"])
        await redis.sadd(keys.contact_tags(account, "f"), "new")
        await redis.zadd(keys.tag_members(account, "new"), {"f": 0})
        await redis.set(keys.run_lock(account, held), "someone-else", px=10_000)
        await asyncio.sleep(WAIT_S + 0.05)

        advanced = await automations.advance(redis, account, [held, free])
        assert advanced.later == [held]
        assert await _statuses(redis, account, [held, free]) == [
            ("waiting", "0"),
            ("waiting", "2"),  # parked again, in the second wait
        ]
        assert await redis.smembers(keys.contact_tags(account, "f")) == set()
        assert await redis.zrange(keys.tag_members(account, "new"), 0, -1) == []
        score = await redis.zscore(keys.delayed(), delayed.member("automation.step", account, free))
        assert score is not None
        assert 55 < score - time.time() <= 60

        # The lease's holder passes its token and goes on.
        with_token = await automations.advance(redis, account, [held], token="someone-else")
        assert with_token.later == []
        assert await _statuses(redis, account, [held]) == [("waiting", "2")]
        counts = await automations.step_counts(redis, account, automation_id)
        assert (counts[0]["done"], counts[1]["done"], counts[2]["waiting"]) == (2, 2, 2)
        await redis.aclose()

    loop.run_until_complete(scenario())


def test_a_deleted_version_fails_the_run_and_a_broken_one_spares_the_batch(
    settings: Settings, loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        account, automation_id = await _automation(
            redis, [{"type": "wait", "seconds": WAIT_S}, {"type": "add_tag", "tag": "t"}]
        )
        gone, ok = await _enroll(redis, account, automation_id, ["g", "o"])
        _, other_id = await _automation(redis, [{"type": "wait", "seconds": WAIT_S}], account)
        [broken] = await _enroll(redis, account, other_id, ["b"])
        await redis.set(keys.automation_version(account, other_id, 1), "{not json")
        await redis.hset(keys.run(account, gone), "version", "7")  # a version that is not there
        await asyncio.sleep(WAIT_S + 0.05)

        # One batch: the broken run is reported, the others are not held back by it.
        advanced = await automations.advance(redis, account, [gone, broken, ok])
        assert ("deleted", "failed") in [(k, s) for _, _, k, s in advanced.steps]
        assert await _statuses(redis, account, [gone, ok]) == [("failed", "0"), ("done", "1")]
        assert await redis.hget(keys.run(account, gone), "error") == "automation deleted"
        assert list(advanced.broken) == [broken]
        assert "invalid token" in advanced.broken[broken]
        await redis.aclose()

    loop.run_until_complete(scenario())


def test_the_worker_does_what_the_script_hands_over_and_the_script_goes_on(
    settings: Settings, loop: asyncio.AbstractEventLoop
) -> None:
    received: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200)

    async def scenario() -> None:
        redis = create_redis(settings)
        http = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
        ctx = _context(redis, settings, http)
        account, automation_id = await _automation(
            redis,
            [
                {"type": "wait", "seconds": WAIT_S},
                {"type": "add_tag", "tag": "vip"},
                {"type": "webhook", "url": "https://hooks.test/x", "secret": "s3cret-key"},
                {"type": "update_field", "field": "stage", "value": "hooked"},
                {"type": "remove_tag", "tag": "vip"},
            ],
        )
        run_ids = await _enroll(redis, account, automation_id, ["a", "b", "c"])
        await redis.set(keys.run_lock(account, run_ids[2]), "another-job", px=10_000)
        await asyncio.sleep(WAIT_S + 0.05)

        comeback = await advance_runs(ctx, account, run_ids)
        assert comeback == {run_ids[2]: BUSY_RETRY_S}
        assert await _statuses(redis, account, run_ids) == [
            ("done", "4"),
            ("done", "4"),
            ("waiting", "0"),
        ]
        assert sorted(json.loads(r.content)["contact_id"] for r in received) == ["a", "b"]
        assert await redis.hget(keys.contact(account, "a"), "attr:stage") == '"hooked"'
        assert await redis.smembers(keys.contact_tags(account, "a")) == set()
        run = await automations.load_run(redis, account, run_ids[0])
        assert run is not None
        assert [run.steps[i]["status"] for i in range(5)] == ["done"] * 5
        assert run.steps[2]["http_status"] == 200

        # Done again (the job redelivered): nothing is posted twice.
        assert await advance_runs(ctx, account, run_ids[:2]) == {}
        assert len(received) == 2
        counts = await automations.step_counts(redis, account, automation_id)
        assert [counts[i]["done"] for i in range(5)] == [2, 2, 2, 2, 2]
        assert counts[0]["waiting"] == 1
        await http.aclose()
        await redis.aclose()

    loop.run_until_complete(scenario())


def test_a_tag_a_run_adds_triggers_the_automations_waiting_for_it(
    settings: Settings, loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        account, tagger = await _automation(
            redis, [{"type": "wait", "seconds": WAIT_S}, {"type": "add_tag", "tag": "vip"}]
        )
        _, on_vip = await _automation(
            redis,
            [{"type": "add_tag", "tag": "welcomed"}],
            account,
            {"type": "contact.tag_added", "filters": {"tag": "vip"}},
        )
        await redis.sadd(keys.contact_tags(account, "old"), "vip")  # had it already
        await _enroll(redis, account, tagger, ["new", "old"])
        await asyncio.sleep(WAIT_S + 0.05)
        await automations.advance(redis, account, await _members(redis, account, tagger))

        # Only the contact the tag is new to is announced, and the beat's consumer enrols it.
        entries = await redis.xrange(keys.contact_events())
        assert [(f["contact"], f["tags"]) for _, f in entries if f["account"] == account] == [
            ("new", "vip")
        ]
        # (The first call makes the consumer group, as the beat's first call does.)
        assert await process_contact_events(redis) + await process_contact_events(redis) == 1
        enrolled = await automations.runs_page(redis, account, on_vip, None, 1, 10)
        assert [run.contact for run in enrolled[0]] == ["new"]
        await redis.aclose()

    loop.run_until_complete(scenario())


def test_a_send_reported_undeliverable_after_acceptance_counts_as_failed(
    settings: Settings, loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        ctx = _context(redis, settings, httpx.AsyncClient())
        account, automation_id = await _automation(
            redis,
            [
                {"type": "send_whatsapp", "template_name": "hello"},
                {"type": "wait", "seconds": WAIT_S},
                {"type": "condition", "if": {"step": 0, "outcome": "failed"}, "else": "end"},
                {"type": "add_tag", "tag": "fallback"},
            ],
        )
        outcomes = {"accepted": "", "reported": "failed"}
        runs = {}
        for contact, report in outcomes.items():
            [run_id] = await _enroll(redis, account, automation_id, [contact])
            message = messages.new(account, Channel.WHATSAPP, new_id("msg"), to="+14155550100")
            message.status = MessageStatus.SENT
            await messages.create(redis, message, 3600)
            if report:
                await messages.apply_delivery_status(
                    redis, account, message.id, report, time.time()
                )
            # As the run stands after its send and its wait: at the condition.
            await redis.hset(
                keys.run_steps(account, run_id),
                "0",
                json.dumps({"status": "done", "message_id": message.id}),
            )
            await redis.hset(keys.run(account, run_id), mapping={"step": "2", "status": "active"})
            runs[contact] = run_id

        assert await advance_runs(ctx, account, list(runs.values())) == {}
        assert await redis.smembers(keys.contact_tags(account, "reported")) == {"fallback"}
        assert await redis.smembers(keys.contact_tags(account, "accepted")) == set()
        checked = await automations.load_run(redis, account, runs["accepted"])
        assert checked is not None
        assert checked.steps[2]["holds"] is False
        await redis.aclose()

    loop.run_until_complete(scenario())


async def _members(redis: Redis, account: str, automation_id: str) -> list[str]:
    return [str(r) for r in await redis.zrange(keys.automation_runs(account, automation_id), 0, -1)]


def test_a_run_listed_twice_in_one_batch_advances_once(
    settings: Settings, loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        account, automation_id = await _automation(
            redis, [{"type": "wait", "seconds": WAIT_S}, {"type": "add_tag", "tag": "once"}]
        )
        [run_id] = await _enroll(redis, account, automation_id, ["c"])
        await asyncio.sleep(WAIT_S + 0.05)
        advanced = await automations.advance(redis, account, [run_id, run_id])
        assert [(index, kind) for _, index, kind, _ in advanced.steps] == [
            (0, "wait"),
            (1, "add_tag"),
        ]
        counts = await automations.step_counts(redis, account, automation_id)
        assert counts == {
            0: {"waiting": 0, "done": 1, "failed": 0},
            1: {"waiting": 0, "done": 1, "failed": 0},
        }
        await redis.aclose()

    loop.run_until_complete(scenario())
