"""Redis full (maxmemory, noeviction): how its refusal is recognised and what each part makes
of it — the job runner, kombu's bookkeeping, the API's answer, the setting, the status."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import Reject
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError

import tasks
from worker.api import errors as api_errors
from worker.cli import status as cli_status
from worker.config import Settings
from worker.delivery import failures
from worker.observe import metrics, status
from worker.outages import is_infrastructure, store_full
from worker.runtime import kombu_fixes

OOM = OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
# What an older server (Redis 6) makes of a script whose write was refused.
SCRIPT_OOM = ResponseError(
    "Error running script (call to f_4c94601e): @user_script:12: "
    "@user_script: 12: -OOM command not allowed when used memory > 'maxmemory'."
)


@pytest.mark.parametrize(
    ("exc", "full"),
    [
        (OOM, True),
        (SCRIPT_OOM, True),
        (ResponseError("WRONGTYPE Operation against a key holding the wrong kind"), False),
        (RedisConnectionError("Connection refused"), False),
        (ValueError("OOM command not allowed"), False),  # not from Redis
    ],
)
def test_store_full_is_the_oom_reply_whatever_its_class(exc: Exception, full: bool) -> None:
    assert store_full(exc) is full


@pytest.mark.parametrize(
    ("exc", "infrastructure"),
    [
        (OOM, True),
        (SCRIPT_OOM, True),
        (RedisConnectionError("Connection refused"), True),
        (ResponseError("WRONGTYPE Operation against a key"), False),
        (KeyError("status"), False),
    ],
)
def test_a_full_store_is_infrastructure(exc: Exception, infrastructure: bool) -> None:
    assert is_infrastructure(exc) is infrastructure


class _Runtime:
    context = SimpleNamespace(redis=None)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run(coro)


class _Task:
    name = "whatsapp.send"


@pytest.mark.parametrize("exc", [OOM, SCRIPT_OOM])
def test_a_job_that_finds_the_store_full_is_requeued_and_nothing_is_recorded(
    monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    monkeypatch.setattr(tasks.runtime, "current", _Runtime)
    monkeypatch.setattr(tasks, "_REQUEUE_PAUSE_S", 0)
    crashes: list[BaseException] = []

    async def deliver(*_: Any) -> Any:
        raise exc

    async def on_crash(_ctx: Any, _account: str, _message: str, error: BaseException) -> None:
        crashes.append(error)

    monkeypatch.setitem(failures.CRASH_RECORDERS, "whatsapp.send", on_crash)
    with pytest.raises(Reject) as rejected:
        tasks.run_job(_Task(), deliver, "acme", "msg_1")  # type: ignore[arg-type]

    assert rejected.value.requeue is True
    assert crashes == []  # no failure recorded, no attempt used


def test_a_bug_is_still_recorded_as_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks.runtime, "current", _Runtime)
    crashes: list[BaseException] = []
    bug = ResponseError("WRONGTYPE Operation against a key")

    async def deliver(*_: Any) -> Any:
        raise bug

    async def on_crash(_ctx: Any, _account: str, _message: str, error: BaseException) -> None:
        crashes.append(error)

    async def kept(*_: Any) -> None:
        pass

    monkeypatch.setitem(failures.CRASH_RECORDERS, "whatsapp.send", on_crash)
    monkeypatch.setattr(failures.joberrors, "record", kept)
    tasks.run_job(_Task(), deliver, "acme", "msg_1")  # type: ignore[arg-type]

    assert crashes == [bug]


def test_kombu_bookkeeping_waits_while_the_store_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(kombu_fixes.time, "sleep", pauses.append)
    refusals = [OOM, SCRIPT_OOM, OOM]

    def record(tag: str) -> str:
        if refusals:
            raise refusals.pop(0)
        return tag

    assert kombu_fixes._until_stored(record)("tag-1") == "tag-1"
    assert pauses == [0.1, 0.2, 0.4]


def test_kombu_bookkeeping_passes_other_errors_and_gives_up_when_stopping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kombu_fixes.time, "sleep", lambda _: None)

    def wrong(_: str) -> None:
        raise ResponseError("WRONGTYPE Operation against a key")

    with pytest.raises(ResponseError, match="WRONGTYPE"):
        kombu_fixes._until_stored(wrong)("tag")

    def full(_: str) -> None:
        raise OOM

    monkeypatch.setattr(kombu_fixes.worker_state, "should_stop", 0)  # a warm shutdown
    with pytest.raises(OutOfMemoryError):
        kombu_fixes._until_stored(full)("tag")


def _app(exc: Exception) -> TestClient:
    app = FastAPI()
    api_errors.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("exc", [OOM, SCRIPT_OOM])
def test_the_api_answers_503_store_full(exc: Exception) -> None:
    response = _app(exc).get("/boom")

    assert response.status_code == 503
    assert response.json() == {
        "success": False,
        "error": "The message store is full; try again later",
        "code": "store_full",
    }
    assert response.headers["retry-after"] == "30"


def test_another_redis_error_is_still_a_500() -> None:
    response = _app(ResponseError("WRONGTYPE Operation against a key")).get("/boom")

    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"


@pytest.mark.parametrize(
    ("given", "kept"), [("512MB", "512mb"), ("2gb", "2gb"), ("1048576", "1048576"), ("", "0")]
)
def test_redis_maxmemory_takes_valkey_sizes(given: str, kept: str) -> None:
    assert Settings(redis_maxmemory=given).redis_maxmemory == kept


@pytest.mark.parametrize("given", ["lots", "512 mb", "-1", "1.5gb"])
def test_redis_maxmemory_refuses_what_valkey_would(given: str) -> None:
    with pytest.raises(ValidationError, match="DISPATCH_REDIS_MAXMEMORY"):
        Settings(redis_maxmemory=given)


def _snapshot(used: int, cap: int) -> status.Snapshot:
    return status.Snapshot(redis_ok=True, memory_used_bytes=used, memory_max_bytes=cap)


def test_status_warns_from_90_percent_of_maxmemory() -> None:
    mib = 1 << 20
    assert not _snapshot(400 * mib, 512 * mib).memory_high
    assert _snapshot(470 * mib, 512 * mib).memory_high
    assert not _snapshot(4000 * mib, 0).memory_high  # no limit: nothing to warn about

    assert cli_status._memory(_snapshot(400 * mib, 512 * mib)) == (
        "redis memory: 400.0 MiB of 512.0 MiB (78%)"
    )
    warning = cli_status._memory(_snapshot(470 * mib, 512 * mib))
    assert "nearly full" in warning
    assert "DISPATCH_REDIS_MAXMEMORY" in warning
    assert '"memory_warning": true' in cli_status._as_json(_snapshot(470 * mib, 512 * mib))


def test_metrics_show_redis_memory_against_its_limit() -> None:
    text = metrics.exposition(metrics.StoreCollector(_snapshot(1000, 4000))).decode()

    assert "dispatch_redis_memory_used_bytes 1000.0" in text
    assert "dispatch_redis_memory_max_bytes 4000.0" in text
