"""A job whose pool process died goes back at the front of its queue; one that killed its
process ``job_max_worker_losses`` times is quarantined (real Valkey for the counts)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from kombu.transport import redis as kombu_redis

import tasks.base as base
from worker.config import Settings
from worker.store import keys
from worker.store.jobs import QUARANTINE


class _Message:
    delivery_tag = "tag-1"

    def __init__(self, qos: kombu_redis.QoS) -> None:
        self.channel = type("Channel", (), {"qos": qos})()
        self._state = "RECEIVED"


def _request(
    monkeypatch: pytest.MonkeyPatch, task_id: str
) -> tuple[base.DispatchRequest, list[Any]]:
    calls: list[Any] = []

    def restore(tag: str, leftmost: bool = False) -> None:
        calls.append(("restore", tag, leftmost))

    def event(*args: Any, **kwargs: Any) -> None:
        calls.append(("event", args, kwargs))

    qos = kombu_redis.QoS.__new__(kombu_redis.QoS)
    monkeypatch.setattr(qos, "restore_by_tag", restore, raising=False)
    monkeypatch.setattr(base.VirtualQoS, "ack", lambda _qos, tag: calls.append(("ack", tag)))
    request = base.DispatchRequest.__new__(base.DispatchRequest)
    request._message = _Message(qos)
    request._args = ["acme", "cmp_x_0"]
    request.id = task_id
    request.name = "campaign.push"
    request._worker_lost = True
    monkeypatch.setattr(request, "send_event", event, raising=False)
    monkeypatch.setattr(
        request, "acknowledge", lambda: calls.append(("acknowledge",)), raising=False
    )
    return request, calls


@pytest.fixture
def client(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    # A database of its own: no worker serves its queues, so a published job stays.
    isolated = settings.effective_redis_url.rsplit("/", 1)[0] + "/9"
    client = redis.Redis.from_url(isolated, decode_responses=True)
    monkeypatch.setattr(base, "_redis", lambda: client)
    monkeypatch.setattr(base, "get_settings", lambda: settings)
    return client


def test_a_lost_workers_job_goes_back_at_the_front(
    client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    request, calls = _request(monkeypatch, "task-front")
    request.reject(requeue=True)
    # leftmost=False: the end the workers take from next (kombu BRPOPs the right end).
    assert calls[:2] == [("restore", "tag-1", False), ("ack", "tag-1")]
    assert request.acknowledged is True
    assert request.message._state == "REJECTED"
    assert client.get(keys.job_losses("task-front")) == "1"


def test_a_job_that_keeps_killing_its_process_is_quarantined(
    client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = "bulk"
    before = client.llen(queue)
    for _ in range(settings.job_max_worker_losses - 1):
        request, calls = _request(monkeypatch, "task-poison")
        request.reject(requeue=True)
        assert calls[0][0] == "restore"
    request, calls = _request(monkeypatch, "task-poison")
    request.reject(requeue=True)
    assert calls == [("acknowledge",)]  # not given back again
    assert client.llen(queue) == before + 1
    job = json.loads(client.lindex(queue, 0) or "{}")
    assert job["headers"]["task"] == QUARANTINE
    assert job["headers"]["argsrepr"] == repr(
        ["acme", f"campaign.push cmp_x_0 {settings.job_max_worker_losses}"]
    )
    client.lpop(queue)


def test_an_infrastructure_reject_keeps_celerys_way(monkeypatch: pytest.MonkeyPatch) -> None:
    request, calls = _request(monkeypatch, "task-infra")
    request._worker_lost = False
    seen: list[bool] = []
    monkeypatch.setattr(base.Request, "reject", lambda self, requeue=False: seen.append(requeue))
    request.reject(requeue=True)
    assert seen == [True]
    assert calls == []
