"""Automations end to end: real Valkey, the API, workers, the beat and the simulator, with
short waits. The platform's SDK paths: /api/v1/automations, /activate, /enroll, /runs,
/automation-runs/{id}, /track/event."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from tests.conftest import RECEIVER_HOST
from tests.integration.conftest import PushTenant, Tenant
from tests.support import dispatch, wait_until

_phones = itertools.count(100)


def _phone() -> str:
    return f"+1415555{next(_phones):04d}"


def _fcm(n: int) -> str:
    return f"auto{n:05d}:APA91b-automation-test-token"


def _create(tenant: Tenant, body: dict[str, Any], activate: bool = True) -> dict[str, Any]:
    response = tenant.http.post(
        f"{tenant.api_url}/api/v1/automations", json=body, headers=tenant.auth()
    )
    assert response.status_code == 201, response.text
    automation: dict[str, Any] = response.json()["automation"]
    assert automation["active"] is False  # always created inactive
    if activate:
        activated = tenant.http.patch(
            f"{tenant.api_url}/api/v1/automations/{automation['id']}/activate",
            json={"active": True},
            headers=tenant.auth(),
        )
        assert activated.status_code == 200, activated.text
        assert activated.json()["automation"]["active"] is True
    return automation


def _contact(tenant: Tenant, contact_id: str, **fields: Any) -> None:
    response = tenant.http.post(
        f"{tenant.api_url}/api/v1/contacts",
        json={"id": contact_id, **fields},
        headers=tenant.auth(),
    )
    assert response.status_code == 201, response.text


def _runs(tenant: Tenant, automation_id: str, status: str | None = None) -> list[dict[str, Any]]:
    params = {"limit": 200, **({"status": status} if status else {})}
    response = tenant.get(
        f"/api/v1/automations/{automation_id}/runs?"
        + "&".join(f"{k}={v}" for k, v in params.items())
    )
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()["runs"]
    return runs


def _wa_to(tenant: Tenant, phone: str) -> list[dict[str, Any]]:
    return [r for r in tenant.sim_requests() if r["body"]["to"] == phone.lstrip("+")]


def _params(request: dict[str, Any]) -> list[str]:
    return [p["text"] for p in request["body"]["template"]["components"][0]["parameters"]]


# --- the welcome flow ---------------------------------------------------------------------

WAIT_S = 1.5


def test_welcome_flow_pushes_only_when_whatsapp_failed(
    push_tenant: PushTenant, service_env: dict[str, str]
) -> None:
    tenant = push_tenant
    automation = _create(
        tenant,
        {
            "name": "welcome",
            "trigger": {"type": "contact.created"},
            "steps": [
                {
                    "type": "send_whatsapp",
                    "template_name": "shipping_update",
                    "parameters": ["{{contact.name}}"],
                },
                {"type": "wait", "seconds": WAIT_S},
                {"type": "condition", "if": {"step": 0, "outcome": "failed"}, "else": "end"},
                {"type": "send_push", "title": "Hi {{contact.name}}", "message": "Welcome!"},
            ],
        },
    )
    reachable, unreachable = _phone(), _phone()
    tenant.fault(code=131026, count=None, match={"to": unreachable.lstrip("+")})
    created_at = time.time()
    _contact(
        tenant,
        "w-ok",
        phone=reachable,
        name="Ann",
        push_tokens=[{"platform": "fcm", "token": _fcm(1)}],
    )
    _contact(
        tenant,
        "w-fail",
        phone=unreachable,
        name="Bo",
        push_tokens=[{"platform": "fcm", "token": _fcm(2)}],
    )

    done = wait_until(
        lambda: (runs := _runs(tenant, automation["id"], "done")) and len(runs) == 2 and runs,
        30,
        "both runs to finish",
    )
    by_contact = {r["contact_id"]: r for r in done}
    ok, failed = by_contact["w-ok"], by_contact["w-fail"]

    # WhatsApp went to both, once, with the contact's name in the template.
    assert [_params(r) for r in _wa_to(tenant, reachable)] == [["Ann"]]
    assert _wa_to(tenant, unreachable)  # tried (and refused by the provider)
    # The push went only where WhatsApp failed, after the wait (the step made the message;
    # its own job sends it).
    pushed = wait_until(lambda: tenant.push_requests("fcm"), 10, "the push")
    time.sleep(0.3)
    pushed = tenant.push_requests("fcm")
    assert [r["token"] for r in pushed] == [_fcm(2)]
    assert pushed[0]["body"]["message"]["notification"]["title"] == "Hi Bo"
    assert pushed[0]["at"] >= created_at + WAIT_S

    steps_ok = {s["step"]: s for s in ok["timeline"]}
    assert steps_ok[0]["status"] == "done"
    assert steps_ok[0]["message_id"]
    assert steps_ok[2]["holds"] is False
    assert 3 not in steps_ok
    steps_failed = {s["step"]: s for s in failed["timeline"]}
    assert steps_failed[2]["holds"] is True
    assert steps_failed[3]["status"] == "done"
    assert steps_failed[1]["waited_until"] - failed["created_at"] >= WAIT_S

    detail = tenant.get(f"/api/v1/automations/{automation['id']}").json()["automation"]
    stats = [s["stats"] for s in detail["steps"]]
    assert [s["done"] for s in stats] == [2, 2, 2, 1]
    assert all(s["waiting"] == 0 and s["failed"] == 0 for s in stats)
    one = tenant.get(f"/api/v1/automation-runs/{failed['id']}").json()["run"]
    assert one["status"] == "done"
    assert one["contact_id"] == "w-fail"

    # The operator's view: the automation, nothing in progress, the 7 steps done.
    status = dispatch(service_env, "status", "--json")
    flows = {a["id"]: a for a in json.loads(status.stdout)["automations"]}
    assert flows[automation["id"]] == {
        "account": tenant.name,
        "id": automation["id"],
        "name": automation["name"],
        "active": True,
        "in_progress": 0,
        "steps_done": 7,
        "steps_failed": 0,
    }
    # /metrics has the total, and names no tenant (DISPATCH_METRICS_TENANT_LABELS is off).
    scraped = tenant.get("/metrics").text
    assert "\ndispatch_automation_runs_in_progress " in scraped
    assert tenant.name not in scraped
    assert automation["id"] not in scraped


# --- triggers -----------------------------------------------------------------------------


def test_tag_trigger_enrols_only_matching_contacts_once(
    tenant: Tenant, service_env: dict[str, str]
) -> None:
    automation = _create(
        tenant,
        {
            "name": "vip",
            "trigger": {"type": "contact.tag_added", "filters": {"tag": "vip"}},
            "steps": [{"type": "add_tag", "tag": "welcomed-vip"}],
        },
    )
    _contact(tenant, "t-plain", phone=_phone())
    _contact(tenant, "t-vip", phone=_phone())
    for contact_id, tags in (("t-vip", ["vip"]), ("t-plain", ["other"]), ("t-vip", ["vip"])):
        response = tenant.http.patch(
            f"{tenant.api_url}/api/v1/contacts/{contact_id}",
            json={"tags": tags},
            headers=tenant.auth(),
        )
        assert response.status_code == 200, response.text
    wait_until(lambda: _runs(tenant, automation["id"], "done"), 20, "the run")
    time.sleep(0.5)  # anything else would have been enrolled by now
    runs = _runs(tenant, automation["id"])
    assert [r["contact_id"] for r in runs] == ["t-vip"]
    tags = {
        c: tenant.get(f"/api/v1/contacts/{c}").json()["contact"]["tags"]
        for c in ("t-vip", "t-plain")
    }
    assert tags == {"t-vip": ["vip", "welcomed-vip"], "t-plain": ["other"]}

    # The same, as an operator sees it.
    listed = dispatch(service_env, "automations", "list", "--account", tenant.name)
    assert listed.returncode == 0, listed.stderr
    assert automation["id"] in listed.stdout
    assert "contact.tag_added (tag=vip)" in listed.stdout
    shown = dispatch(service_env, "automations", "show", automation["id"], "-a", tenant.name)
    assert shown.returncode == 0, shown.stderr
    assert "add_tag tag=welcomed-vip" in shown.stdout
    runs_out = dispatch(service_env, "automations", "runs", automation["id"], "-a", tenant.name)
    assert runs_out.returncode == 0, runs_out.stderr
    assert "t-vip" in runs_out.stdout
    assert "t-plain" not in runs_out.stdout
    assert "1 of 1" in runs_out.stdout


def test_event_trigger_puts_event_properties_in_the_template(tenant: Tenant) -> None:
    automation = _create(
        tenant,
        {
            "name": "shipped",
            "trigger": {"type": "event.tracked", "filters": {"event": "order_shipped"}},
            "steps": [
                {
                    "type": "send_whatsapp",
                    "template_name": "shipping_update",
                    "parameters": ["{{event.order_id}}"],
                }
            ],
        },
    )
    phone = _phone()
    _contact(tenant, "e-1", phone=phone)
    for event, order in (("order_shipped", "ORD-77"), ("order_paid", "ORD-78")):
        response = tenant.http.post(
            f"{tenant.api_url}/api/v1/track/event",
            json={"contact_id": "e-1", "event": event, "properties": {"order_id": order}},
            headers=tenant.auth(),
        )
        assert response.status_code == 202, response.text
    wait_until(lambda: _wa_to(tenant, phone), 20, "the send")
    time.sleep(0.5)
    assert [_params(r) for r in _wa_to(tenant, phone)] == [["ORD-77"]]
    assert len(_runs(tenant, automation["id"])) == 1
    unknown = tenant.http.post(
        f"{tenant.api_url}/api/v1/track/event",
        json={"contact_id": "nobody", "event": "order_shipped"},
        headers=tenant.auth(),
    )
    assert unknown.status_code == 404


def test_an_inactive_automation_enrols_nobody(tenant: Tenant) -> None:
    automation = _create(
        tenant,
        {
            "name": "dormant",
            "trigger": {"type": "contact.created"},
            "steps": [{"type": "add_tag", "tag": "never"}],
        },
        activate=False,
    )
    _contact(tenant, "i-1", phone=_phone())
    manual = tenant.http.post(
        f"{tenant.api_url}/api/v1/automations/{automation['id']}/enroll",
        json={"contact_id": "i-1"},
        headers=tenant.auth(),
    )
    assert manual.status_code == 409
    assert manual.json()["code"] == "automation_inactive"
    time.sleep(0.5)
    assert _runs(tenant, automation["id"]) == []
    assert tenant.get("/api/v1/contacts/i-1").json()["contact"]["tags"] == []


# --- validation ----------------------------------------------------------------------------

_SEND = {"type": "send_whatsapp", "template_name": "shipping_update", "parameters": ["x"]}


@pytest.mark.parametrize(
    ("steps", "status", "fragment"),
    [
        ([_SEND, {"type": "teleport"}], 400, "steps[1]"),
        ([_SEND, {"type": "wait"}], 400, "steps[1]"),
        ([_SEND, {"type": "wait", "seconds": 0}], 400, "steps[1]"),
        ([{**_SEND, "template_name": "nope"}], 422, "steps[0]"),
        ([_SEND, {**_SEND, "parameters": []}], 422, "steps[1]"),
        ([_SEND, {"type": "condition", "if": {"step": 3, "outcome": "failed"}}], 400, "steps[1]"),
        ([{"type": "condition", "if": {"tag": "a"}, "then": 0}], 400, "steps[0]"),
    ],
)
def test_invalid_automations_name_the_step_and_store_nothing(
    tenant: Tenant, steps: list[dict[str, Any]], status: int, fragment: str
) -> None:
    before = tenant.get("/api/v1/automations").json()["total"]
    response = tenant.http.post(
        f"{tenant.api_url}/api/v1/automations",
        json={"name": "bad", "trigger": {"type": "contact.created"}, "steps": steps},
        headers=tenant.auth(),
    )
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"], response.json()
    assert tenant.get("/api/v1/automations").json()["total"] == before


# --- contact steps and a webhook -----------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((dict(self.headers), body))
        self.send_response(500 if len(self.seen) == 1 else 200)  # the first one fails
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def test_contact_steps_and_a_signed_webhook_retried_under_one_key(tenant: Tenant) -> None:
    server = ThreadingHTTPServer((RECEIVER_HOST, 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = "whsec-test-1234"
    try:
        automation = _create(
            tenant,
            {
                "name": "upgrade",
                "trigger": {"type": "event.tracked", "filters": {"event": "upgraded"}},
                "steps": [
                    {"type": "update_field", "field": "plan", "value": "{{event.plan}}"},
                    {"type": "remove_tag", "tag": "trial"},
                    {
                        "type": "webhook",
                        "url": f"http://{RECEIVER_HOST}:{server.server_port}/hook",
                        "secret": secret,
                        "body": {"plan": "{{contact.plan}}"},
                    },
                ],
            },
        )
        _contact(tenant, "u-1", phone=_phone(), tags=["trial", "keep"])
        response = tenant.http.post(
            f"{tenant.api_url}/api/v1/track/event",
            json={"contact_id": "u-1", "event": "upgraded", "properties": {"plan": "pro"}},
            headers=tenant.auth(),
        )
        assert response.status_code == 202, response.text
        [run] = wait_until(lambda: _runs(tenant, automation["id"], "done"), 30, "the run")
    finally:
        server.shutdown()
    contact = tenant.get("/api/v1/contacts/u-1").json()["contact"]
    assert contact["attributes"]["plan"] == "pro"
    assert contact["tags"] == ["keep"]
    assert len(_Receiver.seen) == 2
    keys_seen = {headers["Idempotency-Key"] for headers, _ in _Receiver.seen}
    assert keys_seen == {f"{run['id']}:2"}
    for headers, body in _Receiver.seen:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Dispatch-Signature"] == f"sha256={expected}"
        assert json.loads(body)["data"] == {"plan": "pro"}
    webhook_step = {s["step"]: s for s in run["timeline"]}[2]
    assert webhook_step["attempts"] == 2
    assert webhook_step["http_status"] == 200


# --- versions, deactivation ---------------------------------------------------------------


def _enroll(tenant: Tenant, automation_id: str, contact_id: str) -> str:
    response = tenant.http.post(
        f"{tenant.api_url}/api/v1/automations/{automation_id}/enroll",
        json={"contact_id": contact_id},
        headers=tenant.auth(),
    )
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def _tags(tenant: Tenant, contact_id: str) -> list[str]:
    tags: list[str] = tenant.get(f"/api/v1/contacts/{contact_id}").json()["contact"]["tags"]
    return tags


def test_runs_keep_their_version_and_deactivation_can_cancel_them(tenant: Tenant) -> None:
    steps = [{"type": "wait", "seconds": 1.5}, {"type": "add_tag", "tag": "v1"}]
    automation = _create(
        tenant, {"name": "versions", "trigger": {"type": "manual"}, "steps": steps}
    )
    for contact_id in ("v-old", "v-new", "v-cancel"):
        _contact(tenant, contact_id, phone=_phone())
    old_run = _enroll(tenant, automation["id"], "v-old")
    edited = tenant.http.patch(
        f"{tenant.api_url}/api/v1/automations/{automation['id']}",
        json={"steps": [steps[0], {"type": "add_tag", "tag": "v2"}]},
        headers=tenant.auth(),
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["automation"]["version"] == 2
    new_run = _enroll(tenant, automation["id"], "v-new")
    wait_until(lambda: len(_runs(tenant, automation["id"], "done")) == 2, 20, "both runs")
    assert _tags(tenant, "v-old") == ["v1"]  # started on version 1, finished on it
    assert _tags(tenant, "v-new") == ["v2"]
    versions = {
        r: tenant.get(f"/api/v1/automation-runs/{r}").json()["run"]["version"]
        for r in (old_run, new_run)
    }
    assert versions == {old_run: 1, new_run: 2}

    waiting = _enroll(tenant, automation["id"], "v-cancel")
    stopped = tenant.http.patch(
        f"{tenant.api_url}/api/v1/automations/{automation['id']}/activate",
        json={"active": False, "cancel_runs": True},
        headers=tenant.auth(),
    )
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["runs_cancelled"] == 1
    time.sleep(2.5)  # past the wait: a run not cancelled would have tagged by now
    assert _tags(tenant, "v-cancel") == []
    run = tenant.get(f"/api/v1/automation-runs/{waiting}").json()["run"]
    assert run["status"] == "cancelled"
    again = tenant.http.post(
        f"{tenant.api_url}/api/v1/automations/{automation['id']}/enroll",
        json={"contact_id": "v-cancel"},
        headers=tenant.auth(),
    )
    assert again.status_code == 409
