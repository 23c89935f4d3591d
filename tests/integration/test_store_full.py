"""Redis full (maxmemory, noeviction): the API refuses with 503 store_full and stores nothing,
the workers wait without failing anything, and everything accepted is delivered once
memory is freed.

A stack of its own (FaultStack) on a Valkey with a small maxmemory: the test fills it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.exceptions import OutOfMemoryError

from tests.integration.conftest import (
    FCM_TOKEN_1,
    SPEC_BODY,
    PushTenant,
    Tenant,
    make_push_tenant,
    make_tenant,
)
from tests.integration.faultstack import FaultStack
from tests.support import wait_until
from worker.models import Scope
from worker.store import keys
from worker.store import secrets as store_secrets
from worker.store.jobs import TRANSACTIONAL

MAXMEMORY = "16mb"
FILLER = "test:filler"
# How far past maxmemory the filler takes Redis: more than the few KiB that buffers and
# expiring keys give back, so the store stays full until the test frees it.
MARGIN = 512 * 1024
STORE_FULL = {
    "success": False,
    "error": "The message store is full; try again later",
    "code": "store_full",
}
PUSH_BODY: dict[str, Any] = {
    "contact_id": "cct_abc123",
    "title": "Your order has shipped!",
    "message": "Order #ORD-98765 is on its way.",
}


@pytest.fixture(scope="module")
def full_stack(
    tmp_path_factory: pytest.TempPathFactory, sim_url: str, sim_tls_port: int, data_dir: Path
) -> Iterator[FaultStack]:
    stack = FaultStack(
        tmp_path_factory.mktemp("store-full"),
        sim_url,
        sim_tls_port,
        data_dir,
        maxmemory=MAXMEMORY,
        # A job lost while the store was full is published again soon after (the beat).
        env={"DISPATCH_UNSTARTED_AFTER_S": "2"},
    )
    store_secrets.use(stack.settings)  # the test provisions credentials itself
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture
def store(full_stack: FaultStack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(full_stack.valkey.url, decode_responses=True)
    yield client
    client.delete(FILLER)
    client.close()


def _memory(store: redis.Redis) -> tuple[int, int]:
    """(memory Valkey holds against maxmemory, maxmemory). Its AOF buffer is not counted:
    with a write to the AOF held back (an fsync still running on a slow disk) the filler
    sat in that buffer, and a write was let in over a full store (2026-12-01)."""
    info = store.info("memory")
    counted = int(info["used_memory"]) - int(info.get("mem_not_counted_for_evict", 0))
    return counted, int(info["maxmemory"])


def _fill(store: redis.Redis) -> None:
    """Past maxmemory by MARGIN or more. Writes are refused only once Redis is over, so
    they could stop anywhere short of the margin: the limit is lifted while filling."""
    cap = _memory(store)[1]
    store.config_set("maxmemory", 0)
    try:
        while _memory(store)[0] < cap + 2 * MARGIN:
            store.append(FILLER, "x" * MARGIN)
    finally:
        store.config_set("maxmemory", cap)
    assert _memory(store)[0] > cap + MARGIN
    with pytest.raises(OutOfMemoryError):
        store.set("test:probe", "1")


def _free(store: redis.Redis) -> None:
    store.delete(FILLER)

    def under() -> bool:
        used, cap = _memory(store)
        return used < cap

    wait_until(under, 10, "Redis to free the filler")  # lazy freeing runs in the background


def _stored(store: redis.Redis, *tenants: Tenant) -> dict[str, Any]:
    """Everything a send could have written: the tenants' keys, the queue, the unstarted set."""
    return {
        "keys": sorted(
            k for t in tenants for k in store.scan_iter(match=f"{keys.PREFIX}:{t.name}:*")
        ),
        "queue": store.llen(TRANSACTIONAL),
        "unstarted": store.zrange(keys.unstarted(), 0, -1),
    }


def _status(tenant: Tenant, message_id: str) -> str:
    status: str = tenant.get(f"/api/v1/messages/{message_id}").json()["status"]
    return status


def test_a_full_store_refuses_sends_whole_and_delivers_everything_once_freed(
    full_stack: FaultStack,
    store: redis.Redis,
    sim_url: str,
    sim_tls_port: int,
    sim_ca_file: Path,
    http: httpx.Client,
) -> None:
    stack = full_stack
    tenant = make_tenant(stack.settings, sim_url, stack.api_url, http)
    pusher: PushTenant = make_push_tenant(
        stack.settings, sim_url, stack.api_url, http, sim_tls_port, sim_ca_file, apns=False
    )
    assert pusher.register("cct_abc123", ("fcm", FCM_TOKEN_1)).status_code in (200, 201)
    fresh_key = tenant.new_key(Scope.SEND)
    # The stack works; and each key now holds a lease of its rate limit, so the sends
    # below reach the send routes' own writes (the fresh key's first use is the guard's).
    first = tenant.send(SPEC_BODY)
    assert first.status_code == 200, first.text

    # A send accepted just before the store fills: the worker is paused, its job waits.
    worker = stack.workers[0]
    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        queued = tenant.send(SPEC_BODY, Prefer="respond-async")
        assert queued.status_code == 202, queued.text
        _fill(store)
        before = _stored(store, tenant, pusher)

        refused = [
            tenant.send(SPEC_BODY),  # the send script
            tenant.send(SPEC_BODY, **{"Idempotency-Key": "full-1"}),  # the key's claim
            pusher.push(PUSH_BODY),  # the push route's MULTI
            tenant.send(SPEC_BODY, key=fresh_key),  # the guard's rate limit
        ]
        read = tenant.get("/api/v1/contacts/cct_abc123")  # Redis still answers reads

        for response in refused:
            assert response.status_code == 503, response.text
            assert response.json() == STORE_FULL
            assert response.headers["retry-after"] == "30"
        assert read.status_code == 200
        assert _stored(store, tenant, pusher) == before  # nothing half-written
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)

    # The worker meets the full store: it waits, fails nothing, and stays up.
    wait_until(lambda: b"Redis is full" in worker.log.read_bytes(), 10, "the worker to wait")
    time.sleep(1)
    worker.check_alive()
    assert _status(tenant, queued.json()["id"]) == "queued"
    assert len(tenant.sim_requests()) == 1

    _free(store)

    wait_until(lambda: _status(tenant, queued.json()["id"]) == "sent", 25, "the queued send")
    again = tenant.send(SPEC_BODY, **{"Idempotency-Key": "full-1"})
    assert again.status_code == 200, again.text
    assert again.headers.get("idempotent-replayed") is None  # the refused try kept nothing
    pushed = pusher.push(PUSH_BODY)
    assert pushed.status_code == 200, pushed.text
    assert tenant.send(SPEC_BODY, key=fresh_key).status_code == 200
    # Each accepted send reached the provider exactly once.
    assert len(tenant.sim_requests()) == 4
    assert len(pusher.push_requests("fcm")) == 1
