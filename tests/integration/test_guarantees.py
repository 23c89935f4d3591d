"""Delivery guarantees, proven with real processes: kills, a Redis restart, a provider
storm, the rate limit across workers, idempotency races and dead letters.

Measured figures are printed and written to ``bench/guarantees.json`` (for the notes)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from scripts.benchkit.crash import LeaseWatch, kill_busy_batch
from tests.conftest import RECEIVER_HOST, SUBSCRIBERS_SEEN_S
from tests.integration.conftest import (
    SPEC_BODY,
    PushTenant,
    Tenant,
    make_push_tenant,
    make_tenant,
)
from tests.integration.faultstack import POOL_PROCESSES, FaultStack
from tests.support import EventReceiver, dispatch, run_async, wait_until
from worker.config import Settings
from worker.masking import mask_token
from worker.models import Scope
from worker.runtime.celery_app import create_celery
from worker.services.provisioning import configure_whatsapp

FIGURES = Path("bench/guarantees.json")
# 100 valid US numbers: one recipient per message lets the simulator's log say which
# message each request belonged to.
NUMBERS = [f"+1415555{n}" for n in range(2600, 2700)]


def record_figure(name: str, value: Any) -> None:
    FIGURES.parent.mkdir(exist_ok=True)
    figures = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    figures[name] = value
    FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\n{name}: {value}")


@pytest.fixture(scope="module")
def fault_stack(
    tmp_path_factory: pytest.TempPathFactory, sim_url: str, sim_tls_port: int, data_dir: Path
) -> Iterator[FaultStack]:
    stack = FaultStack(tmp_path_factory.mktemp("faults"), sim_url, sim_tls_port, data_dir)
    stack.start()
    yield stack
    stack.stop()


def _send_async(tenant: Tenant, body: dict[str, Any]) -> httpx.Response:
    return tenant.send(body, Prefer="respond-async")


def _wait_all_final(tenant: Tenant, ids: list[str], timeout_s: float) -> dict[str, Any]:
    details: dict[str, Any] = {}

    def done() -> bool:
        for message_id in ids:
            if message_id in details:
                continue
            detail = tenant.get(f"/api/v1/messages/{message_id}").json()
            if detail["status"] in ("sent", "failed"):
                details[message_id] = detail
        return len(details) == len(ids)

    try:
        wait_until(done, timeout_s, f"{len(ids)} messages to be final")
    except AssertionError as exc:
        # Say where the others stopped: the job queued, claimed, or put off.
        left = [tenant.get(f"/api/v1/messages/{m}").json() for m in ids if m not in details]
        states = Counter(
            (d.get("status"), len(d.get("attempts") or []), d.get("code"), d.get("deferred_until"))
            for d in left
        )
        raise AssertionError(
            f"{exc}; {len(left)} left (status, attempts, code, put off): {states}"
        ) from None
    return details


# --- 1. a worker killed with SIGKILL mid-burst ------------------------------------------


def test_a_worker_killed_mid_burst_loses_no_device_send(
    fault_stack: FaultStack, http: httpx.Client, sim_tls_port: int, sim_ca_file: Path
) -> None:
    tenant = make_push_tenant(
        fault_stack.settings,
        fault_stack.sim_url,
        fault_stack.api_url,
        http,
        sim_tls_port,
        sim_ca_file,
    )
    contacts = [f"cct_burst{i:02d}" for i in range(20)]
    expected: dict[str, str] = {}  # token → contact (one message per contact)
    for c, contact in enumerate(contacts):
        pairs = [("fcm", f"kill{c:02d}-{i:03d}:APA91b-burst-device") for i in range(50)]
        pairs += [("apns", f"{c:02x}{i:062x}") for i in range(50)]
        for start in range(0, 100, 50):
            assert tenant.register(contact, *pairs[start : start + 50]).status_code in (200, 201)
        expected.update({token: contact for _, token in pairs})

    body = {"title": "Flash sale", "message": "Everything 20% off today"}
    ids = []
    for contact in contacts:
        response = tenant.push({**body, "contact_id": contact}, Prefer="respond-async")
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])

    wait_until(lambda: len(tenant.push_requests()) >= 500, 60, "500 device sends")
    [victim] = fault_stack.workers
    # The victim may die inside one of kombu's sweeps for unacknowledged jobs, holding its
    # lock for as long as the worker set it to last: the jobs still come back in time.
    options = create_celery(fault_stack.settings).conf.broker_transport_options
    expire = options["unacked_mutex_expire"]
    run_async(lambda r: r.set("unacked_mutex", "victim", ex=expire), fault_stack.settings)
    fault_stack.kill_worker(victim)
    at_kill = len(tenant.push_requests())
    fault_stack.start_worker()

    details = _wait_all_final(tenant, ids, 90)

    received = Counter(r["token"] for r in tenant.push_requests())
    lost = [t for t in expected if received[t] == 0]
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    record_figure(
        "kill_test",
        {
            "device_sends": len(expected),
            "sent_before_kill": at_kill,
            "lost": len(lost),
            "duplicates": duplicates,
        },
    )
    assert lost == []
    assert all(d["delivered"] == 100 and d["failed"] == 0 for d in details.values())
    # Only what was in flight can go twice: a job's slices in flight, per pool process.
    assert duplicates <= POOL_PROCESSES * _in_flight_per_job(fault_stack.settings)


def _fcm_campaign(
    fault_stack: FaultStack,
    http: httpx.Client,
    sim_tls_port: int,
    sim_ca_file: Path,
    devices: int,
    delay_s: float,
) -> tuple[PushTenant, str, dict[str, str]]:
    """A push campaign to ``devices`` FCM devices of a new tenant, started, against a
    provider slowed by ``delay_s`` a request (so that it is mid-way when something dies):
    (the tenant, the campaign's id, token → contact)."""
    tenant = make_push_tenant(
        fault_stack.settings,
        fault_stack.sim_url,
        fault_stack.api_url,
        http,
        sim_tls_port,
        sim_ca_file,
        apns=False,
    )
    tokens = {
        f"camp{i:04d}:APA91b-campaign-kill-{tenant.name}": f"ck{i:04d}" for i in range(devices)
    }
    items = [
        {"id": cid, "tags": ["kill"], "push_tokens": [{"platform": "fcm", "token": token}]}
        for token, cid in tokens.items()
    ]
    imported = http.post(
        f"{tenant.api_url}/api/v1/contacts/import",
        content=json.dumps(items),
        headers={**tenant.auth(), "Content-Type": "application/json"},
    )
    assert imported.json()["created"] == len(items), imported.text
    tenant.push_fault("fcm", kind="delay", delay_s=delay_s, count=None)
    created = http.post(
        f"{tenant.api_url}/api/v1/campaigns",
        json={
            "name": "kill",
            "channel": "push",
            "content": {"title": "Flash", "message": "Sale"},
            "audience": {"segment": {"tag": "kill"}},
        },
        headers=tenant.auth(),
    )
    campaign_id = created.json()["campaign"]["id"]
    sent = http.post(f"{tenant.api_url}/api/v1/campaigns/{campaign_id}/send", headers=tenant.auth())
    assert sent.status_code == 202, sent.text
    return tenant, campaign_id, tokens


def _in_flight_per_job(settings: Settings) -> int:
    """Devices a push job has at the provider at once (``push_slice_size`` devices a
    slice, ``push_slices_in_flight`` slices): what a killed process may send twice."""
    return settings.push_slice_size * settings.push_slices_in_flight


def _campaign_after_kill(
    tenant: PushTenant, campaign_id: str, tokens: dict[str, str], name: str, at_kill: int
) -> tuple[dict[str, Any], int]:
    """Wait for the campaign to complete; assert nothing was lost; (its stats, duplicates)."""

    def finished() -> dict[str, Any] | None:
        body = tenant.get(f"/api/v1/campaigns/{campaign_id}").json()["campaign"]
        return body if body["status"] == "completed" else None

    campaign = wait_until(finished, 120, "the campaign to complete after the kill")
    received = Counter(r["token"] for r in tenant.push_requests("fcm") if r.get("status") == 200)
    lost = [t for t in tokens if received[t] == 0]
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    record_figure(
        name,
        {
            "device_sends": len(tokens),
            "sent_before_kill": at_kill,
            "lost": len(lost),
            "duplicates": duplicates,
        },
    )
    assert at_kill < len(tokens)  # the kill did land mid-campaign
    assert lost == []
    stats = campaign["stats"]
    assert (stats["recipients"], stats["sent"], stats["failed"]) == (len(tokens), len(tokens), 0)
    return stats, duplicates


def test_every_device_event_arrives_after_a_worker_sigkill_and_a_receiver_outage(
    fault_stack: FaultStack, http: httpx.Client, sim_tls_port: int, sim_ca_file: Path
) -> None:
    """Results and their events are written together: a worker killed mid-burst loses
    neither (its unrecorded devices are sent again and make their events then), and a
    receiver that refuses for a while gets every event once the retries run."""
    tenant = make_push_tenant(
        fault_stack.settings,
        fault_stack.sim_url,
        fault_stack.api_url,
        http,
        sim_tls_port,
        sim_ca_file,
    )
    receiver = EventReceiver(RECEIVER_HOST, answer=204, refuse_first=60)

    def received() -> Counter[str]:
        return Counter(headers["webhook-id"] for headers, _ in receiver.accepted)

    try:
        made = http.post(
            f"{tenant.api_url}/api/v1/webhooks",
            json={
                "url": receiver.url,
                "events": ["push.delivered", "push.failed"],
            },
            headers=tenant.auth(),
        )
        assert made.status_code == 201, made.text
        time.sleep(SUBSCRIBERS_SEEN_S)  # workers re-read which accounts have endpoints
        contacts = [f"cct_wh{i:02d}" for i in range(8)]
        for c, contact in enumerate(contacts):
            pairs = [("fcm", f"whk{c:02d}-{i:03d}:APA91b-event-device") for i in range(25)]
            assert tenant.register(contact, *pairs).status_code in (200, 201)
        ids = []
        for contact in contacts:
            answer = tenant.push(
                {"title": "T", "message": "M", "contact_id": contact}, Prefer="respond-async"
            )
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        wait_until(lambda: len(tenant.push_requests()) >= 50, 60, "50 device sends")
        [victim] = fault_stack.workers
        fault_stack.kill_worker(victim)
        fault_stack.start_worker()
        details = _wait_all_final(tenant, ids, 90)
        devices = sum(d["delivered"] + d["failed"] for d in details.values())
        assert devices == 200
        wait_until(lambda: len(received()) >= devices, 60, "an event per device")
        time.sleep(1.0)  # a duplicate on its way
        ids = received()
        record_figure(
            "webhook_kill_test",
            {
                "devices": devices,
                "events": len(ids),
                "duplicates": sum(n - 1 for n in ids.values()),
                "refused_requests": receiver.refuse_first,
                "requests": receiver.calls,
            },
        )
        assert len(ids) == devices  # an event for every device: none lost
        # At least once: a sender killed after a POST and before recording its answer
        # posts it again, under the same webhook-id (receivers drop repeats by it); at
        # most what one sender had in flight.
        assert sum(ids.values()) - devices <= 8
    finally:
        receiver.close()


def test_a_worker_killed_mid_campaign_loses_no_recipient(
    fault_stack: FaultStack, http: httpx.Client, sim_tls_port: int, sim_ca_file: Path
) -> None:
    tenant, campaign_id, tokens = _fcm_campaign(
        fault_stack, http, sim_tls_port, sim_ca_file, 1500, 0.25
    )
    wait_until(lambda: len(tenant.push_requests("fcm")) >= 300, 60, "300 device sends")
    [victim] = fault_stack.workers
    fault_stack.kill_worker(victim)
    at_kill = len(tenant.push_requests("fcm"))
    fault_stack.start_worker()
    _, duplicates = _campaign_after_kill(tenant, campaign_id, tokens, "campaign_kill_test", at_kill)
    # Only what was in flight can go twice: a job's slices in flight, per pool process.
    assert duplicates <= POOL_PROCESSES * _in_flight_per_job(fault_stack.settings)


def test_a_pool_process_killed_mid_campaign_is_taken_over_within_seconds(
    fault_stack: FaultStack, http: httpx.Client, sim_tls_port: int, sim_ca_file: Path
) -> None:
    """The job of a killed pool process is given back at once (reject on worker lost); its
    lease, no longer renewed, lets the job delivered again take over within the lease's
    time to live instead of the longest a job may run."""
    tenant, campaign_id, tokens = _fcm_campaign(
        fault_stack, http, sim_tls_port, sim_ca_file, 2000, 0.5
    )
    wait_until(lambda: len(tenant.push_requests("fcm")) >= 400, 60, "400 device sends")
    [worker] = fault_stack.workers
    client = redis.Redis.from_url(fault_stack.settings.effective_redis_url, decode_responses=True)
    watch = LeaseWatch(client, tenant.name, fault_stack.settings.lease_ttl_s)
    app = create_celery(fault_stack.settings)
    killed_at, held = kill_busy_batch(app, client, f"{worker.name}@{socket.gethostname()}")
    app.close()
    at_kill = len(tenant.push_requests("fcm"))
    dead = watch.unrenewed(held)
    assert dead, "the killed pool process held no lease: it was between jobs"
    resumed_s = watch.taken_over(dead, killed_at, 30)
    worker.check_alive()  # the worker lives on, with a new pool process
    _, duplicates = _campaign_after_kill(tenant, campaign_id, tokens, "pool_kill_test", at_kill)
    record_figure("pool_kill_resume_s", round(resumed_s, 2))
    assert resumed_s <= 15
    # Only what the killed process had in flight can go twice: its job's slices.
    assert duplicates <= _in_flight_per_job(fault_stack.settings)
    client.close()


# --- 2. Redis restarted during a burst ----------------------------------------------------


def test_a_redis_restart_during_a_burst_loses_no_accepted_send(
    fault_stack: FaultStack, http: httpx.Client
) -> None:
    tenant = make_tenant(fault_stack.settings, fault_stack.sim_url, fault_stack.api_url, http)
    # Slow provider answers, so that jobs are in the middle of a send when Redis goes.
    tenant.fault(kind="delay", delay_s=0.4, count=None, for_s=15)
    statuses: list[tuple[str, int, str | None]] = []
    lock = threading.Lock()

    def one(number: str) -> None:
        try:
            response = httpx.post(
                f"{tenant.api_url}/api/v1/channels/whatsapp/send",
                json={**SPEC_BODY, "to": number, "contact_id": None},
                headers={**tenant.auth(), "Prefer": "respond-async"},
                timeout=30,
            )
            code, message_id = response.status_code, response.json().get("id")
        except httpx.HTTPError:
            code, message_id = 0, None
        with lock:
            statuses.append((number, code, message_id))

    def burst() -> None:
        with ThreadPoolExecutor(4) as pool:
            for number in NUMBERS[:80]:
                pool.submit(one, number)
                time.sleep(0.04)

    sender = threading.Thread(target=burst)
    sender.start()
    time.sleep(0.8)
    fault_stack.restart_valkey(down_s=1.5)
    sender.join()

    codes = Counter(code for _, code, _ in statuses)
    record_figure("redis_restart_test", dict(sorted(codes.items())))
    assert set(codes) <= {202, 503}, codes
    assert codes[503] > 0, "the restart did not overlap the burst"
    accepted = [(n, m) for n, code, m in statuses if code == 202 and m]
    details = _wait_all_final(tenant, [m for _, m in accepted], 90)
    assert {d["status"] for d in details.values()} == {"sent"}
    received = {r["to"] for r in tenant.sim_requests() if r.get("status") == 200}
    assert {n.removeprefix("+") for n, _ in accepted} <= received


# --- 3. a provider storm --------------------------------------------------------------------


def test_a_provider_storm_is_ridden_out_within_budget_and_retry_after(
    fault_stack: FaultStack, http: httpx.Client
) -> None:
    tenant = make_tenant(fault_stack.settings, fault_stack.sim_url, fault_stack.api_url, http)
    storm_s = 5.0
    tenant.fault(kind="error", code=130429, retry_after_s=2, count=None, for_s=storm_s, every=2)
    tenant.fault(kind="http", http_status=503, count=None, for_s=storm_s)
    storm_end = time.time() + storm_s

    ids = [
        _send_async(tenant, {**SPEC_BODY, "to": n, "contact_id": None}).json()["id"]
        for n in NUMBERS[:40]
    ]
    details = _wait_all_final(tenant, ids, 90)
    drained_at = max(r["at"] for r in tenant.sim_requests() if r.get("status") == 200)

    assert {d["status"] for d in details.values()} == {"sent"}
    by_number: dict[str, list[dict[str, Any]]] = {}
    for r in tenant.sim_requests():
        by_number.setdefault(r["to"], []).append(r)
    early = sum(
        1
        for requests in by_number.values()
        for before, after in itertools.pairwise(requests)
        if before.get("retry_after_s") and after["at"] < before["at"] + before["retry_after_s"]
    )
    attempts = [len(d["attempts"]) for d in details.values()]
    record_figure(
        "storm_test",
        {
            "sends": len(ids),
            "max_attempts": max(attempts),
            "attempts_total": sum(attempts),
            "drain_after_storm_s": round(drained_at - storm_end, 2),
            "early_retries": early,
        },
    )
    assert early == 0
    assert max(attempts) <= 10  # DISPATCH_WHATSAPP_MAX_ATTEMPTS of the fault stack


# --- 4. the rate limit holds across worker processes ---------------------------------------


def test_the_rate_limit_holds_across_two_workers(
    fault_stack: FaultStack, http: httpx.Client
) -> None:
    cap = 50
    tenant = make_tenant(
        fault_stack.settings, fault_stack.sim_url, fault_stack.api_url, http, rate_per_s=cap
    )
    second = fault_stack.start_worker()
    try:
        # 8 s at the cap: eight one-second windows and more.
        bodies = [{**SPEC_BODY, "to": NUMBERS[i % 100], "contact_id": None} for i in range(400)]
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda b: _send_async(tenant, b), bodies))
        assert {r.status_code for r in responses} == {202}
        ids = [r.json()["id"] for r in responses]
        _wait_all_final(tenant, ids, 120)
    finally:
        fault_stack.kill_worker(second)

    times = sorted(r["at"] for r in tenant.sim_requests())
    assert len(times) == 400
    # The most sends in any one-second window (sliding, starting at each send).
    j, busiest = 0, 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + 1.0:
            j += 1
        busiest = max(busiest, j - i)
    # The rate once the backlog is there: the first second is the API still taking the
    # 400 requests (24 sends in it on a slow hour, then 45-48 in each second after), the
    # last one the queue running dry; what is judged is the limiter's pace, not theirs.
    steady = [t for t in times if times[0] + 1 <= t <= times[-1] - 1]
    average = (len(steady) - 1) / (steady[-1] - steady[0])
    record_figure(
        "rate_limit_test",
        {
            "cap_per_s": cap,
            "workers": 2,
            "sends": len(times),
            "max_in_any_second": busiest,
            "average_per_s": round(average, 2),
            "average_pct_of_cap": round(100 * average / cap, 1),
        },
    )
    assert busiest <= cap
    assert average >= 0.9 * cap


# --- 5. idempotency under a race --------------------------------------------------------------


def test_twenty_racing_requests_with_one_key_send_once(tenant: Tenant) -> None:
    key = f"order-98765-{os.getpid()}-{time.time()}"
    with ThreadPoolExecutor(20) as pool:
        responses = list(
            pool.map(lambda _: tenant.send(SPEC_BODY, **{"Idempotency-Key": key}), range(20))
        )

    assert len(tenant.sim_requests()) == 1
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 1
    assert sum(1 for r in responses if r.headers.get("idempotent-replayed") == "true") == 19

    later = tenant.send(SPEC_BODY, **{"Idempotency-Key": key})
    assert later.text == responses[0].text
    other_body = tenant.send({**SPEC_BODY, "to": "+14155552671"}, **{"Idempotency-Key": key})
    assert other_body.status_code == 422
    assert other_body.json()["code"] == "idempotency_key_reused"
    assert len(tenant.sim_requests()) == 1


def test_a_rejected_request_does_not_use_up_the_key(tenant: Tenant) -> None:
    key = f"fix-and-retry-{time.time()}"
    bad = tenant.send({**SPEC_BODY, "template_name": "no_such"}, **{"Idempotency-Key": key})
    assert bad.status_code == 422
    good = tenant.send(SPEC_BODY, **{"Idempotency-Key": key})
    assert good.status_code == 200
    assert good.json()["status"] == "sent"


def test_idempotent_push(push_tenant: PushTenant) -> None:
    from tests.integration.conftest import FCM_TOKEN_1

    push_tenant.register("cct_abc123", ("fcm", FCM_TOKEN_1))
    body = {"contact_id": "cct_abc123", "title": "t", "message": "m"}
    first = push_tenant.push(body, **{"Idempotency-Key": "push-1"})
    again = push_tenant.push(body, **{"Idempotency-Key": "push-1"})
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert len(push_tenant.push_requests()) == 1


# --- 6. dead letters ----------------------------------------------------------------------------


def test_a_send_that_keeps_failing_is_dead_lettered_and_can_be_redriven(
    tenant: Tenant, service_env: dict[str, str]
) -> None:
    tenant.fault(kind="http", http_status=503, count=None)
    try:
        failed = tenant.send(SPEC_BODY)
    finally:
        tenant.http.delete(f"{tenant.sim_url}/_sim/faults")
    assert failed.status_code == 502
    message_id = failed.json()["id"]

    listing = tenant.get("/api/v1/dead-letters").json()
    [dead] = listing["dead_letters"]
    assert dead["id"] == message_id
    assert dead["code"] == "provider_unavailable"
    assert dead["attempts"] == 3
    assert "503" in dead["error"]
    send_only = tenant.new_key(Scope.SEND)
    assert tenant.get("/api/v1/dead-letters", key=send_only).status_code == 403

    shown = dispatch(service_env, "dlq", "list", "--account", tenant.name)
    assert message_id in shown.stdout
    assert "1 dead letter(s)" in shown.stdout

    redriven = tenant.http.post(
        f"{tenant.api_url}/api/v1/dead-letters/{message_id}/redrive", headers=tenant.auth()
    )
    assert redriven.status_code == 202
    wait_until(
        lambda: tenant.get(f"/api/v1/messages/{message_id}").json()["status"] == "sent",
        20,
        "the redriven send",
    )
    assert tenant.get("/api/v1/dead-letters").json()["total"] == 0
    again = tenant.http.post(
        f"{tenant.api_url}/api/v1/dead-letters/{message_id}/redrive", headers=tenant.auth()
    )
    assert again.status_code == 404


# --- account-level stops ------------------------------------------------------------------------


def test_a_refused_access_token_stops_the_accounts_whatsapp_until_reconfigured(
    tenant: Tenant,
) -> None:
    tenant.fault(kind="error", code=190, count=1)

    first = tenant.send(SPEC_BODY)

    assert first.status_code == 403
    assert first.json()["code"] == "channel_auth_failed"
    stopped = tenant.send(SPEC_BODY)
    assert stopped.status_code == 403
    assert stopped.json()["code"] == "channel_suspended"
    assert "configured again" in stopped.json()["error"]
    assert len(tenant.sim_requests()) == 1  # the queue is not fed to a refusing provider

    async def reconfigure(redis: Any) -> None:
        await configure_whatsapp(
            redis,
            tenant.settings,
            tenant.name,
            phone_number_id=tenant.phone_number_id,
            waba_id=tenant.waba_id,
            access_token=tenant.access_token,
            app_secret=tenant.app_secret,
            base_url=tenant.sim_url,
        )

    run_async(reconfigure, tenant.settings)
    assert tenant.send(SPEC_BODY).status_code == 200


def test_refused_push_credentials_stop_that_platform_without_blaming_tokens(
    push_tenant: PushTenant,
) -> None:
    from tests.integration.conftest import APNS_TOKEN_1, FCM_TOKEN_1

    push_tenant.register("cct_abc123", ("fcm", FCM_TOKEN_1), ("apns", APNS_TOKEN_1))
    # Refused every time (firebase-admin refreshes its token and tries again on a 401).
    push_tenant.push_fault("fcm", code="THIRD_PARTY_AUTH_ERROR", count=None)
    body = {"contact_id": "cct_abc123", "title": "t", "message": "m"}
    try:
        first = push_tenant.push(body).json()
        fcm_calls = len(push_tenant.push_requests("fcm"))
        second = push_tenant.push(body).json()
    finally:
        push_tenant.http.delete(f"{push_tenant.sim_url}/_sim/faults")

    assert (first["delivered"], first["failed"]) == (1, 1)
    [fcm] = [r for r in second["results"] if r["platform"] == "fcm"]
    assert fcm["code"] == "channel_suspended"
    assert "FCM refused this account's credentials" in fcm["error"]
    assert len(push_tenant.push_requests("fcm")) == fcm_calls  # none while stopped
    assert len(push_tenant.push_requests("apns")) == 2
    tokens = {
        t["token"]: t
        for t in push_tenant.get("/api/v1/contacts/cct_abc123").json()["contact"]["push_tokens"]
    }
    assert tokens[mask_token(FCM_TOKEN_1)]["failed"] == 0  # not the device's fault


# --- a message whose job was never published -----------------------------------------------


def test_a_stored_message_whose_publish_was_lost_is_sent_anyway(tenant: Tenant) -> None:
    """As if the API had died between storing the message and publishing its job."""
    from worker.models import Channel
    from worker.store import messages

    message = messages.new(
        tenant.name,
        Channel.WHATSAPP,
        to="+919876543210",
        template_name="order_confirmation",
        language="en",
        parameters=["ORD-1", "$1"],
    )
    run_async(lambda redis: messages.create(redis, message, 3600), tenant.settings)

    # The beat sweeps every 5 s for messages untouched for DISPATCH_UNSTARTED_AFTER_S (3 s).
    wait_until(
        lambda: tenant.get(f"/api/v1/messages/{message.id}").json()["status"] == "sent",
        20,
        "the swept message to be sent",
    )
    assert len(tenant.sim_requests()) == 1


# --- 6. automation runs waiting through a killed worker and a Redis restart --------------


def test_runs_parked_in_a_wait_survive_a_killed_worker_and_a_redis_restart(
    fault_stack: FaultStack, http: httpx.Client
) -> None:
    """1,000 runs wait; meanwhile the worker is SIGKILLed and Redis restarted (AOF). Nothing
    of a wait lives in a worker: after the restart every run sends its next step once."""
    n, wait_s = 1000, 8.0
    # 1,000/s: the most Meta upgrades a number to.
    tenant = make_tenant(
        fault_stack.settings, fault_stack.sim_url, fault_stack.api_url, http, rate_per_s=1000
    )
    phones = {f"cct_dur{i:04d}": f"+1650555{i:04d}" for i in range(n)}
    imported = http.post(
        f"{fault_stack.api_url}/api/v1/contacts/import",
        json=[{"id": c, "phone": p, "name": f"N{c[-4:]}"} for c, p in phones.items()],
        headers=tenant.auth(),
    )
    assert imported.status_code == 200, imported.text
    created = http.post(
        f"{fault_stack.api_url}/api/v1/automations",
        json={
            "name": "durable",
            "trigger": {"type": "manual"},
            "steps": [
                {"type": "wait", "seconds": wait_s},
                {
                    "type": "send_whatsapp",
                    "template_name": "shipping_update",
                    "parameters": ["{{contact.name}}"],
                },
            ],
        },
        headers=tenant.auth(),
    )
    assert created.status_code == 201, created.text
    automation_id = created.json()["automation"]["id"]
    base = f"{fault_stack.api_url}/api/v1/automations/{automation_id}"
    assert http.patch(f"{base}/activate", json={"active": True}, headers=tenant.auth()).is_success

    def enroll(contact_id: str) -> int:
        return http.post(
            f"{base}/enroll", json={"contact_id": contact_id}, headers=tenant.auth()
        ).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(enroll, phones)) == {202}

    def waiting() -> int:
        steps = http.get(base, headers=tenant.auth()).json()["automation"]["steps"]
        return int(steps[0]["stats"]["waiting"])

    wait_until(
        lambda: (
            waiting() == n
            and http.get(f"{base}/runs?status=waiting&limit=1", headers=tenant.auth()).json()[
                "total"
            ]
            == n
        ),
        30,
        "every run parked in its wait",
    )
    assert time.monotonic() - started < wait_s, "the runs must still be waiting"
    [victim] = fault_stack.workers
    fault_stack.kill_worker(victim)
    fault_stack.restart_valkey(down_s=1.0)
    fault_stack.start_worker()

    def finished() -> bool:
        runs = http.get(f"{base}/runs?status=done&limit=1", headers=tenant.auth())
        return runs.status_code == 200 and runs.json()["total"] == n

    wait_until(finished, 90, "every run to finish")
    wait_until(lambda: len(tenant.sim_requests()) >= n, 60, "the sends")
    time.sleep(1.0)  # a duplicate would show by now
    received = Counter(r["body"]["to"] for r in tenant.sim_requests())
    expected = {p.lstrip("+") for p in phones.values()}
    record_figure(
        "automation_durability_test",
        {
            "runs": n,
            "sends": sum(received.values()),
            "duplicates": sum(c - 1 for c in received.values() if c > 1),
            "missing": len(expected - set(received)),
        },
    )
    assert set(received) == expected
    assert all(count == 1 for count in received.values())
    steps = http.get(base, headers=tenant.auth()).json()["automation"]["steps"]
    assert [s["stats"]["done"] for s in steps] == [n, n]
