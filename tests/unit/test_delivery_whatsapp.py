"""The send algorithm without Celery: real Valkey, the network swapped by httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from worker.config import Settings
from worker.delivery.context import DeliveryContext, Outcome
from worker.delivery.push_clients import PushClients
from worker.delivery.ratelimit import RateLimiter
from worker.delivery.retry import RetryPolicy
from worker.delivery.whatsapp import send_whatsapp
from worker.ids import new_id
from worker.models import Channel, MessageStatus
from worker.providers.whatsapp import WhatsAppClient
from worker.services.provisioning import configure_whatsapp
from worker.store import accounts, keys, messages
from worker.store.client import create_redis

Handler = Callable[[httpx.Request], httpx.Response]


class Graph:
    """A scripted Graph API: answers (or transport errors) in order, and remembers every
    request."""

    def __init__(self, *answers: httpx.Response | httpx.TransportError) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, httpx.TransportError):
            raise answer
        return answer


def ok(wamid: str = "wamid.TEST1") -> httpx.Response:
    return httpx.Response(200, json={"messaging_product": "whatsapp", "messages": [{"id": wamid}]})


def graph_error(code: int, status: int = 400, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"message": f"(#{code}) no", "code": code}}, headers=headers
    )


@pytest.fixture
def run(settings: Settings) -> Iterator[Callable[..., Any]]:
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.run_until_complete(_close_all())
    loop.close()


_opened: list[DeliveryContext] = []


async def _close_all() -> None:
    while _opened:
        ctx = _opened.pop()
        await ctx.redis.aclose()


async def _setup(
    settings: Settings, graph: Graph, max_attempts: int = 3
) -> tuple[DeliveryContext, str, str]:
    redis: Redis = create_redis(settings)
    account = new_id("acc").lower().replace("_", "-")
    await accounts.create_account(redis, account)
    await configure_whatsapp(
        redis,
        settings,
        account,
        phone_number_id="123",
        waba_id="456",
        access_token="EAAsecret",
        base_url="https://graph.test",
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(graph))
    ctx = DeliveryContext(
        redis=redis,
        settings=settings,
        whatsapp=WhatsAppClient(http),
        whatsapp_retry=RetryPolicy(max_attempts=max_attempts, base_delay_s=1, max_delay_s=4),
        push=PushClients(timeout_s=5),
        push_retry=RetryPolicy(max_attempts=max_attempts, base_delay_s=1, max_delay_s=4),
        limiter=RateLimiter(redis),
    )
    _opened.append(ctx)
    now = time.time()
    message = messages.Message(
        id=new_id("msg"),
        account=account,
        channel=Channel.WHATSAPP,
        status=MessageStatus.QUEUED,
        to="+14155552671",
        template_name="order_confirmation",
        language="en",
        parameters=["A-1", "$5"],
        created_at=now,
        updated_at=now,
    )
    await messages.create(redis, message, 3600)
    return ctx, account, message.id


async def _again(ctx: DeliveryContext, account: str, message_id: str) -> Outcome:
    """The message's next attempt, at once (not waiting out its retry's not_before)."""
    await ctx.redis.hdel(keys.message(account, message_id), "not_before")
    return await send_whatsapp(ctx, account, message_id)


async def _recorded_wamid(ctx: DeliveryContext, account: str, message_id: str) -> str | None:
    stored = await messages.load(ctx.redis, account, message_id)
    assert stored is not None
    return stored.provider_message_id


def test_a_sent_message_records_the_wamid_and_signals_the_outcome(
    settings: Settings, run: Callable[..., Any]
) -> None:
    graph = Graph(ok("wamid.ABC"))

    async def scenario() -> None:
        ctx, account, message_id = await _setup(settings, graph)
        outcome = await send_whatsapp(ctx, account, message_id)
        assert outcome.status is MessageStatus.SENT
        assert outcome.retry_in_s is None
        stored = await messages.load(ctx.redis, account, message_id)
        assert stored is not None
        assert stored.status is MessageStatus.SENT
        assert stored.provider_message_id == "wamid.ABC"
        assert await ctx.redis.lrange(keys.message_outcome(account, message_id), 0, -1) == ["sent"]
        [attempt] = await messages.load_attempts(ctx.redis, account, message_id)
        assert attempt.outcome == "sent"

    run(scenario())
    [request] = graph.requests
    assert request.url == "https://graph.test/v21.0/123/messages"
    assert request.headers["authorization"] == "Bearer EAAsecret"
    body = json.loads(request.content)
    assert body["to"] == "14155552671"
    assert body["template"]["components"][0]["parameters"][1] == {"type": "text", "text": "$5"}


def test_a_retryable_error_leaves_the_message_retrying_without_an_outcome(
    settings: Settings, run: Callable[..., Any]
) -> None:
    graph = Graph(graph_error(130429, 429, **{"Retry-After": "3"}))

    async def scenario() -> None:
        ctx, account, message_id = await _setup(settings, graph)
        outcome = await send_whatsapp(ctx, account, message_id)
        assert outcome.status is MessageStatus.RETRYING
        assert outcome.retry_in_s is not None
        assert outcome.retry_in_s >= 3.0
        stored = await messages.load(ctx.redis, account, message_id)
        assert stored is not None
        assert stored.status is MessageStatus.RETRYING
        assert stored.code == "rate_limited"
        assert await ctx.redis.exists(keys.message_outcome(account, message_id)) == 0

    run(scenario())


def test_the_last_allowed_attempt_fails_for_good(
    settings: Settings, run: Callable[..., Any]
) -> None:
    graph = Graph(graph_error(131000, 500), graph_error(131000, 500))

    async def scenario() -> None:
        ctx, account, message_id = await _setup(settings, graph, max_attempts=2)
        first = await send_whatsapp(ctx, account, message_id)
        second = await send_whatsapp(ctx, account, message_id)
        assert first.status is MessageStatus.RETRYING
        assert second.status is MessageStatus.FAILED
        assert second.retry_in_s is None
        attempts = await messages.load_attempts(ctx.redis, account, message_id)
        assert [a.outcome for a in attempts] == ["retry", "failed"]

    run(scenario())


def test_a_permanent_error_is_not_retried(settings: Settings, run: Callable[..., Any]) -> None:
    graph = Graph(graph_error(131026))

    async def scenario() -> None:
        ctx, account, message_id = await _setup(settings, graph)
        outcome = await send_whatsapp(ctx, account, message_id)
        assert outcome == type(outcome)(MessageStatus.FAILED, None)
        stored = await messages.load(ctx.redis, account, message_id)
        assert stored is not None
        assert (stored.code, stored.provider_code) == ("recipient_undeliverable", "131026")

    run(scenario())


def test_a_redelivered_job_for_a_sent_message_does_not_send_again(
    settings: Settings, run: Callable[..., Any]
) -> None:
    graph = Graph(ok())

    async def scenario() -> None:
        ctx, account, message_id = await _setup(settings, graph)
        await send_whatsapp(ctx, account, message_id)
        again = await send_whatsapp(ctx, account, message_id)
        assert again.status is MessageStatus.SENT

    run(scenario())
    assert len(graph.requests) == 1


def test_a_transport_timeout_is_retryable(settings: Settings, run: Callable[..., Any]) -> None:
    async def scenario() -> None:
        ctx, account, message_id = await _setup(settings, Graph(httpx.ReadTimeout("slow")))
        outcome = await send_whatsapp(ctx, account, message_id)
        assert outcome.status is MessageStatus.RETRYING
        stored = await messages.load(ctx.redis, account, message_id)
        assert stored is not None
        assert stored.code == "provider_timeout"

    run(scenario())


def test_a_send_left_without_an_answer_waits_for_its_status_report_and_is_not_sent_again(
    settings: Settings, run: Callable[..., Any]
) -> None:
    graph = Graph(httpx.ReadTimeout("no answer"))
    wait_s = settings.whatsapp_unconfirmed_wait_s
    assert wait_s > 4  # longer than any backoff here, so the wait is what the test sees
    sent: list[str] = []

    async def scenario() -> None:
        ctx, account, message_id = await _setup(settings, graph)
        sent.append(message_id)
        await messages.note_status_reports(ctx.redis, account)  # the number posts them
        first = await send_whatsapp(ctx, account, message_id)
        assert first.status is MessageStatus.RETRYING
        assert first.retry_in_s is not None
        assert first.retry_in_s >= wait_s
        # A job delivered again before the wait is over sends nothing yet.
        early = await send_whatsapp(ctx, account, message_id)
        assert early.status is MessageStatus.RETRYING
        assert early.retry_in_s is not None
        assert early.retry_in_s > wait_s - 1
        # The "sent" report names the message (what the API's webhook route does with it).
        await messages.confirm_unanswered(ctx.redis, account, message_id, "wamid.LATE", 60)
        done = await send_whatsapp(ctx, account, message_id)
        assert done.status is MessageStatus.SENT
        stored = await messages.load(ctx.redis, account, message_id)
        assert stored is not None
        assert (stored.status, stored.provider_message_id, stored.attempts) == (
            MessageStatus.SENT,
            "wamid.LATE",
            1,
        )
        attempts = await messages.load_attempts(ctx.redis, account, message_id)
        assert [(a.attempt, a.outcome, a.code, a.confirmed_by) for a in attempts] == [
            (1, "retry", "provider_timeout", None),
            (1, "sent", None, "status_report"),
        ]
        assert await ctx.redis.lrange(keys.message_outcome(account, message_id), 0, -1) == ["sent"]

    run(scenario())
    [request] = graph.requests  # one request reached the provider, never a second
    assert json.loads(request.content)["biz_opaque_callback_data"] == sent[0]


@pytest.mark.parametrize(
    ("error", "reports", "wait_s"),
    [
        (httpx.ReadTimeout("no answer"), False, None),  # nobody would report it: no wait
        (httpx.ConnectTimeout("never connected"), True, None),  # surely not sent
        (httpx.ConnectError("refused"), True, None),
        (httpx.ReadTimeout("no answer"), True, 0.0),  # waiting turned off
    ],
)
def test_a_send_that_surely_failed_or_cannot_be_confirmed_is_retried_as_usual(
    settings: Settings,
    run: Callable[..., Any],
    error: httpx.TransportError,
    reports: bool,
    wait_s: float | None,
) -> None:
    graph = Graph(error, ok("wamid.AGAIN"))
    if wait_s is not None:
        settings = settings.model_copy(update={"whatsapp_unconfirmed_wait_s": wait_s})

    async def scenario() -> None:
        ctx, account, message_id = await _setup(settings, graph)
        if reports:
            await messages.note_status_reports(ctx.redis, account)
        first = await send_whatsapp(ctx, account, message_id)
        assert first.status is MessageStatus.RETRYING
        assert first.retry_in_s is not None
        assert first.retry_in_s <= 4
        again = await _again(ctx, account, message_id)
        assert again.status is MessageStatus.SENT
        assert await _recorded_wamid(ctx, account, message_id) == "wamid.AGAIN"

    run(scenario())
    assert len(graph.requests) == 2


def test_a_connection_lost_while_waiting_for_the_answer_may_have_been_delivered(
    settings: Settings, run: Callable[..., Any]
) -> None:
    graph = Graph(httpx.ReadError("connection reset"))

    async def scenario() -> None:
        ctx, account, message_id = await _setup(settings, graph)
        await messages.note_status_reports(ctx.redis, account)
        outcome = await send_whatsapp(ctx, account, message_id)
        assert outcome.retry_in_s is not None
        assert outcome.retry_in_s >= settings.whatsapp_unconfirmed_wait_s

    run(scenario())


def test_a_report_that_comes_after_a_later_attempt_failed_otherwise_still_counts(
    settings: Settings, run: Callable[..., Any]
) -> None:
    """Unanswered, then a 503 (the wait ran out with no report yet), then the report of
    the first: the third pass records it and sends nothing."""
    graph = Graph(httpx.ReadTimeout("no answer"), graph_error(131000, 503))

    async def scenario() -> None:
        ctx, account, message_id = await _setup(settings, graph, max_attempts=5)
        await messages.note_status_reports(ctx.redis, account)
        assert (await _again(ctx, account, message_id)).status is MessageStatus.RETRYING
        assert (await _again(ctx, account, message_id)).status is MessageStatus.RETRYING
        stored = await messages.load(ctx.redis, account, message_id)
        assert stored is not None
        assert stored.code == "provider_unavailable"
        await messages.confirm_unanswered(ctx.redis, account, message_id, "wamid.FIRST", 60)
        done = await _again(ctx, account, message_id)
        assert done.status is MessageStatus.SENT
        assert await _recorded_wamid(ctx, account, message_id) == "wamid.FIRST"

    run(scenario())
    assert len(graph.requests) == 2


@pytest.mark.parametrize("reported", [True, False])
def test_a_last_attempt_left_without_an_answer_gets_one_look_for_its_report_never_a_send(
    settings: Settings, run: Callable[..., Any], reported: bool
) -> None:
    graph = Graph(httpx.ReadTimeout("no answer"))

    async def scenario() -> None:
        ctx, account, message_id = await _setup(settings, graph, max_attempts=1)
        await messages.note_status_reports(ctx.redis, account)
        first = await send_whatsapp(ctx, account, message_id)
        # Out of attempts, yet not failed: it may have gone through.
        assert first.status is MessageStatus.RETRYING
        assert first.retry_in_s is not None
        assert first.retry_in_s >= settings.whatsapp_unconfirmed_wait_s
        assert await ctx.redis.exists(keys.message_outcome(account, message_id)) == 0
        if reported:
            await messages.confirm_unanswered(ctx.redis, account, message_id, "wamid.LAST", 60)
        last = await _again(ctx, account, message_id)
        stored = await messages.load(ctx.redis, account, message_id)
        assert stored is not None
        if reported:
            assert (last.status, stored.provider_message_id) == (MessageStatus.SENT, "wamid.LAST")
        else:
            # It fails with the unanswered attempt's error, and is a dead letter.
            assert last.status is MessageStatus.FAILED
            assert (stored.code, stored.attempts) == ("provider_timeout", 1)
            dead = await ctx.redis.zscore(keys.dead_letters(account), message_id)
            assert dead is not None

    run(scenario())
    assert len(graph.requests) == 1


def test_a_report_naming_a_wamid_recorded_for_another_message_is_not_trusted(
    settings: Settings, run: Callable[..., Any]
) -> None:
    """A status report is signed with the account's own app secret: an account could
    name a wamid that is not its own. One already recorded elsewhere is ignored."""
    graph = Graph(httpx.ReadTimeout("no answer"), ok("wamid.OWN"))

    async def scenario() -> None:
        ctx, account, message_id = await _setup(settings, graph)
        await messages.note_status_reports(ctx.redis, account)
        await send_whatsapp(ctx, account, message_id)
        await ctx.redis.set(keys.wamid_index("wamid.TAKEN"), "another-account msg_other")
        await messages.confirm_unanswered(ctx.redis, account, message_id, "wamid.TAKEN", 60)
        again = await _again(ctx, account, message_id)
        assert again.status is MessageStatus.SENT
        assert await _recorded_wamid(ctx, account, message_id) == "wamid.OWN"
        owner = await ctx.redis.get(keys.wamid_index("wamid.TAKEN"))
        assert owner == "another-account msg_other"

    run(scenario())
    assert len(graph.requests) == 2
