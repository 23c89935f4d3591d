"""The job envelope written straight to Redis is the one kombu writes, and a worker runs it."""

from __future__ import annotations

import json
from typing import Any

import redis

from worker.config import Settings
from worker.store.jobs import job_payload, queue_for


def _kombu_envelope(settings: Settings, queue: str) -> dict[str, Any]:
    """What Celery's own publish leaves on the list (in a database nobody serves)."""
    from worker.runtime.celery_app import create_celery

    url = settings.effective_redis_url.rsplit("/", 1)[0] + "/8"
    app = create_celery(settings.model_copy(update={"redis_url": url}))
    app.send_task("whatsapp.send", args=["acct", "msg_1"], queue=queue)
    client = redis.Redis.from_url(url)
    raw = client.rpop(queue)
    client.close()
    assert isinstance(raw, bytes)
    result: dict[str, Any] = json.loads(raw)
    return result


def _shape(value: Any) -> Any:
    """Keys and value types, not the values (ids, the origin, the base64 body)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    return type(value).__name__


def test_the_envelope_matches_kombus(settings: Settings) -> None:
    theirs = _kombu_envelope(settings, "transactional")
    ours = json.loads(job_payload("whatsapp.send", "acct", "msg_1"))
    # Celery leaves ignore_result unset and a reply_to it never uses for these tasks.
    for envelope in (theirs, ours):
        envelope["headers"].pop("ignore_result")
        envelope["properties"].pop("reply_to")
    assert _shape(ours) == _shape(theirs)
    assert ours["body"] == theirs["body"]  # same args, same embed, same encoding
    same = ("task", "argsrepr", "kwargsrepr", "retries", "timelimit", "lang")
    assert {k: ours["headers"][k] for k in same} == {k: theirs["headers"][k] for k in same}
    assert ours["properties"]["delivery_info"] == theirs["properties"]["delivery_info"]
    assert ours["headers"]["id"] == ours["properties"]["correlation_id"]


def test_campaign_jobs_go_to_the_bulk_queue() -> None:
    assert queue_for("campaign.push") == "bulk"
    assert queue_for("campaign.fanout") == "bulk"
    assert queue_for("whatsapp.send") == "transactional"
    assert json.loads(job_payload("campaign.push", "a", "b"))["properties"]["delivery_info"] == {
        "exchange": "",
        "routing_key": "bulk",
    }


def test_job_ids_are_distinct_version_4_uuids() -> None:
    import uuid

    ids = [
        json.loads(job_payload("push.send", "acct", f"m{i}"))["headers"]["id"] for i in range(500)
    ]
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
    assert len(set(ids)) == len(ids)
