"""A poison message costs one message, not the deployment: a bad contact event, a crashing
WhatsApp campaign batch (real Valkey, API, workers, beat, simulator)."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import httpx
from redis.asyncio import Redis

from tests.integration.conftest import Tenant, make_tenant
from tests.integration.test_automations import _contact, _create, _runs
from tests.integration.test_campaigns import (
    call,
    create,
    import_contacts,
    phone,
    shipping,
    wait_stat,
    wait_status,
)
from tests.support import Service, dispatch, run_async, wait_until
from worker.config import Settings
from worker.store import keys


def _status_json(service_env: dict[str, str]) -> dict[str, Any]:
    shown = dispatch(service_env, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    return cast(dict[str, Any], json.loads(shown.stdout))


def test_a_poison_contact_event_is_skipped_and_the_next_one_enrols(
    tenant: Tenant, beat_service: Service, settings: Settings, service_env: dict[str, str]
) -> None:
    automation = _create(
        tenant,
        {
            "name": "after poison",
            "trigger": {"type": "contact.created"},
            "steps": [{"type": "add_tag", "tag": "welcomed"}],
        },
    )

    async def poison(redis: Redis) -> None:
        # An entry no script of ours writes: no contact. Read first after every restart,
        # it used to kill the beat each time.
        await redis.xadd(keys.contact_events(), {"account": tenant.name, "created": "1"})

    run_async(poison, settings)
    _contact(tenant, "after-poison", phone="+14155550999")
    wait_until(lambda: _runs(tenant, automation["id"], "done"), 20, "the good event's run")
    assert [r["contact_id"] for r in _runs(tenant, automation["id"])] == ["after-poison"]
    beat_service.check_alive()

    status = _status_json(service_env)
    assert status["job_errors"][tenant.name] == 1
    [error] = [e for e in status["latest_job_errors"] if e["account"] == tenant.name]
    assert error["job"] == "contact_events"
    assert "KeyError" in error["error"]


def test_a_crashing_whatsapp_batch_fails_its_unsent_messages_and_the_campaign_completes(
    stack: dict[str, Any],
    settings: Settings,
    sim_url: str,
    api_url: str,
    http: httpx.Client,
    service_env: dict[str, str],
) -> None:
    # 40 messages/s: 300 recipients (batches of 250 and 50) take several seconds.
    tenant = make_tenant(settings, sim_url, api_url, http, rate_per_s=40)
    import_contacts(
        tenant, [{"id": f"p{i}", "phone": phone(i), "name": f"N{i}"} for i in range(300)]
    )
    cid = create(tenant, shipping("poison", {"contact_ids": [f"p{i}" for i in range(300)]}))["id"]
    assert call(tenant, "POST", f"/{cid}/send").status_code == 202
    wait_stat(tenant, cid, lambda s: s["sent"] >= 40, 30)
    assert call(tenant, "POST", f"/{cid}/pause").status_code == 200
    time.sleep(2)  # what was in flight lands

    async def corrupt(redis: Redis) -> tuple[list[str], str]:
        # One queued message of the first batch no longer reads as a message: the batch's
        # job crashes on it (a bug, not an outage) every time it runs.
        ids = cast(list[str], await redis.lrange(keys.campaign_batch(tenant.name, cid, 0), 0, -1))
        statuses = [await redis.hget(keys.message(tenant.name, m), "status") for m in ids]
        queued = [m for m, s in zip(ids, statuses, strict=True) if s == "queued"]
        await redis.hset(keys.message(tenant.name, queued[0]), "status", "bogus")
        return queued, queued[0]

    unsent, poisoned = run_async(corrupt, settings)
    assert call(tenant, "POST", f"/{cid}/resume").status_code == 200

    done = wait_status(tenant, cid, "completed", 60)
    stats = done["stats"]
    # The crashed batch's unsent messages failed; everything else went out (the other
    # batch may have finished before the pause or after the resume).
    assert stats["failed"] == len(unsent)
    assert stats["sent"] == 300 - len(unsent)
    assert done["last_error"].startswith("ValidationError")
    assert len(tenant.sim_requests()) == stats["sent"]

    async def records(redis: Redis) -> tuple[list[list[str | None]], set[str]]:
        fields = [
            await redis.hmget(keys.message(tenant.name, m), ["status", "code", "error"])
            for m in (poisoned, unsent[-1])
        ]
        dead = await redis.zrange(keys.dead_letters(tenant.name), 0, -1)
        return fields, set(cast(list[str], dead))

    fields, dead = run_async(records, settings)
    for status, code, error in fields:
        assert (status, code) == ("failed", "internal_error")
        assert error is not None
        assert "ValidationError" in error
    assert set(unsent) <= dead
    assert _status_json(service_env)["job_errors"][tenant.name] >= 1
