"""The `dispatch` admin commands, run as a user runs them: a subprocess per command."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RECEIVER_HOST, SUBSCRIBERS_SEEN_S
from tests.integration.conftest import SPEC_BODY, Tenant
from tests.support import EventReceiver, dispatch, register_push_credentials, wait_until


@pytest.fixture
def account_name(request: pytest.FixtureRequest) -> str:
    return f"cli{abs(hash(request.node.name)) % 10**8}-{os.getpid()}"


def test_account_key_channel_templates_lifecycle(
    stack: Any, service_env: dict[str, str], sim_url: str, api_url: str, account_name: str
) -> None:
    env = service_env
    created = dispatch(env, "accounts", "create", account_name)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("msk_")
    assert "shown only now" in created.stderr

    again = dispatch(env, "accounts", "create", account_name)
    assert again.returncode == 1
    assert "already exists" in again.stderr

    # 130 templates on the simulated WABA: more than one page of 100.
    waba, number, token, secret = (
        "99" + account_name[3:11],
        "98" + account_name[3:11],
        "EAAcli-token-123456",
        "cli-app-secret-987",
    )
    httpx.put(
        f"{sim_url}/_sim/whatsapp/numbers/{number}", json={"waba_id": waba, "access_token": token}
    ).raise_for_status()
    templates = [
        {"waba_id": waba, "name": f"t{i:03d}", "language": "en", "body_text": "x {{1}}"}
        for i in range(129)
    ]
    templates.append(
        {
            "waba_id": waba,
            "name": "order_confirmation",
            "language": "en",
            "body_text": "Order {{1}} costs {{2}}",
        }
    )
    httpx.post(f"{sim_url}/_sim/whatsapp/templates", json=templates).raise_for_status()

    configured = dispatch(
        env,
        "channels",
        "whatsapp",
        "configure",
        "--account",
        account_name,
        "--phone-number-id",
        number,
        "--waba-id",
        waba,
        "--access-token",
        token,
        "--app-secret",
        secret,
        "--base-url",
        sim_url,
    )
    assert configured.returncode == 0, configured.stderr
    output = configured.stdout + configured.stderr
    assert token not in output
    assert secret not in output
    shown = dispatch(env, "channels", "whatsapp", "show", "--account", account_name)
    assert shown.returncode == 0
    assert token not in shown.stdout
    assert "EAAc…3456" in shown.stdout

    synced = dispatch(env, "templates", "sync", "--account", account_name)
    assert synced.returncode == 0, synced.stderr
    assert "130 template(s) synced" in synced.stderr
    listed = dispatch(env, "templates", "list", "--account", account_name)
    assert "order_confirmation" in listed.stdout
    assert "t128" in listed.stdout

    # The printed key works, and the spec's example goes through with it.
    httpx.patch(
        f"{api_url}/api/v1/contacts/cct_abc123",
        json={"phone": "+919876543210"},
        headers={"Authorization": f"Bearer {key}"},
    ).raise_for_status()
    sent = httpx.post(
        f"{api_url}/api/v1/channels/whatsapp/send",
        json=SPEC_BODY,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert sent.status_code == 200, sent.text
    shown = dispatch(env, "messages", "show", "--account", account_name, sent.json()["id"])
    assert shown.returncode == 0, shown.stderr
    assert sent.json()["message_id"] in shown.stdout
    assert "+91******3210" in shown.stdout
    assert "+919876543210" not in shown.stdout

    # A contacts-only key, listed without its secret, then revoked.
    made = dispatch(
        env, "keys", "create", "--account", account_name, "--scope", "contacts", "--name", "crm"
    )
    assert made.returncode == 0, made.stderr
    contacts_key = made.stdout.strip()
    forbidden = httpx.post(
        f"{api_url}/api/v1/channels/whatsapp/send",
        json=SPEC_BODY,
        headers={"Authorization": f"Bearer {contacts_key}"},
    )
    assert forbidden.status_code == 403
    listing = dispatch(env, "keys", "list", "--account", account_name)
    assert contacts_key not in listing.stdout
    assert contacts_key[:8] in listing.stdout
    row = next(line for line in listing.stdout.splitlines() if contacts_key[:8] in line)
    key_id = row.split()[1]
    # Its last use (the refused send above was made with it), its state and its name.
    last_used, state, name = [cell.strip() for cell in row.split("│")][6:9]
    assert last_used.endswith("Z"), row
    assert (state, name) == ("active", "crm")
    revoked = dispatch(env, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    after = httpx.get(
        f"{api_url}/api/v1/contacts/cct_abc123", headers={"Authorization": f"Bearer {contacts_key}"}
    )
    assert after.status_code == 401
    assert "revoked" in dispatch(env, "keys", "list", "--account", account_name).stdout


def test_commands_for_an_unknown_account_say_so(service_env: dict[str, str]) -> None:
    result = dispatch(service_env, "templates", "list", "--account", "nobody-here")
    assert result.returncode == 1
    assert "no account named nobody-here" in result.stderr


def test_an_unreachable_redis_is_a_clear_error(service_env: dict[str, str]) -> None:
    env = {**service_env, "DISPATCH_REDIS_URL": "redis://127.0.0.1:1/0"}
    result = dispatch(env, "accounts", "list")
    assert result.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_account_name_is_refused(service_env: dict[str, str]) -> None:
    result = dispatch(service_env, "accounts", "create", "Bad Name!")
    assert result.returncode == 2
    assert "must be 1-63 characters" in result.stderr


def test_push_channels_and_token_stats(
    stack: Any,
    service_env: dict[str, str],
    sim_url: str,
    api_url: str,
    sim_tls_port: int,
    sim_ca_file: Path,
    account_name: str,
    tmp_path: Path,
) -> None:
    from worker.sim import credentials as sim_credentials

    env = service_env
    key = dispatch(env, "accounts", "create", account_name).stdout.strip()
    project = f"cli-{account_name}"
    sa = sim_credentials.service_account(project, f"{sim_url}/token")
    apns_key = sim_credentials.apns_key()
    register_push_credentials(httpx, sim_url, project, sa, apns_key, ["com.example.cli"])
    (tmp_path / "sa.json").write_text(sa.json)
    (tmp_path / "AuthKey.p8").write_text(apns_key.private_key_pem)

    bad = dispatch(
        env,
        "channels",
        "fcm",
        "configure",
        "--account",
        account_name,
        "--service-account",
        str(tmp_path / "AuthKey.p8"),
    )
    assert bad.returncode == 2
    assert "not JSON" in bad.stderr

    fcm = dispatch(
        env,
        "channels",
        "fcm",
        "configure",
        "--account",
        account_name,
        "--service-account",
        str(tmp_path / "sa.json"),
        "--endpoint",
        f"https://127.0.0.1:{sim_tls_port}",
        "--ca-file",
        str(sim_ca_file),
    )
    assert fcm.returncode == 0, fcm.stderr
    assert f"project {project}" in fcm.stderr
    apns = dispatch(
        env,
        "channels",
        "apns",
        "configure",
        "--account",
        account_name,
        "--key-file",
        str(tmp_path / "AuthKey.p8"),
        "--key-id",
        apns_key.key_id,
        "--team-id",
        apns_key.team_id,
        "--topic",
        "com.example.cli",
        "--endpoint",
        f"127.0.0.1:{sim_tls_port}",
        "--ca-file",
        str(sim_ca_file),
    )
    assert apns.returncode == 0, apns.stderr
    for result in (fcm, apns):
        assert "PRIVATE KEY" not in result.stdout + result.stderr
    listed = dispatch(env, "accounts", "list")
    row = next(line for line in listed.stdout.splitlines() if account_name in line)
    assert row.count("configured") == 2  # fcm and apns; no WhatsApp

    headers = {"Authorization": f"Bearer {key}"}
    dead = "0e" * 32
    httpx.patch(
        f"{api_url}/api/v1/contacts/cct_cli",
        headers=headers,
        json={
            "push_tokens": [
                {"platform": "fcm", "token": "cli-fcm-token:APA91b-0001"},
                {"platform": "apns", "token": dead},
            ]
        },
    ).raise_for_status()
    httpx.post(
        f"{sim_url}/_sim/faults",
        json={
            "channel": "apns",
            "code": "Unregistered",
            "count": 1,
            "match": {"token": dead},
        },
    ).raise_for_status()
    sent = httpx.post(
        f"{api_url}/api/v1/channels/push/send",
        headers=headers,
        timeout=30,
        json={"contact_id": "cct_cli", "title": "Hi", "message": "There"},
    )
    assert sent.json()["delivered"] == 1, sent.text

    stats = dispatch(env, "tokens", "stats", "--account", account_name)
    assert stats.returncode == 0, stats.stderr
    assert "2 token(s): 1 delivered, 1 failed, 1 pruned" in stats.stdout
    assert "pruned: APNs 410 Unregistered" in stats.stdout
    assert dead not in stats.stdout  # masked
    problems = dispatch(env, "tokens", "stats", "--account", account_name, "--problems")
    assert "cli-" not in problems.stdout.split("token(s)")[0]


# --- dispatch webhooks ------------------------------------------------------------------


@pytest.fixture
def events() -> Iterator[EventReceiver]:
    receiver = EventReceiver(RECEIVER_HOST, answer=500)
    yield receiver
    receiver.close()


def _answers(events: EventReceiver) -> list[tuple[int, str]]:
    """(what the receiver answered, webhook-id) of every request it took."""
    return [(status, headers["webhook-id"]) for headers, _, status in list(events.requests)]


def _rows(output: str, needle: str) -> list[list[str]]:
    """The cells of every table row of ``output`` that contains ``needle``."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in output.splitlines()
        if needle in line
    ]


def test_webhooks_list_deliveries_and_replay(
    service_env: dict[str, str], tenant: Tenant, events: EventReceiver
) -> None:
    receiver = events.url
    env, account = service_env, tenant.name
    made = tenant.http.post(
        f"{tenant.api_url}/api/v1/webhooks",
        json={"url": receiver, "events": ["message.sent"]},
        headers=tenant.auth(),
    )
    assert made.status_code == 201, made.text
    hook_id = made.json()["webhook"]["id"]
    time.sleep(SUBSCRIBERS_SEEN_S)  # workers re-read which accounts have endpoints

    # Three events the receiver refuses (500) until each runs out of attempts (~4.6 s).
    template = {k: v for k, v in SPEC_BODY.items() if k != "contact_id"}
    for i in range(3):
        sent = tenant.send({**template, "to": f"+1415555012{i}"})
        assert sent.status_code == 200, sent.text

    def all_failed() -> bool:
        listed = tenant.get(f"/api/v1/webhooks/{hook_id}/deliveries").json()
        return listed["total"] == 3 and {d["status"] for d in listed["deliveries"]} == {"failed"}

    wait_until(all_failed, 40, "three failed deliveries")
    failed_ids = {event_id for answer, event_id in _answers(events)}
    assert len(failed_ids) == 3
    assert len(_answers(events)) == 3 * 8  # every attempt of the schedule (7 waits) was made

    listed = dispatch(env, "webhooks", "list", "--account", account)
    assert listed.returncode == 0, listed.stderr
    [row] = _rows(listed.stdout, hook_id)
    # id, url, events, state, created, queued, retrying, delivered, failed, dropped
    assert row[0] == hook_id
    assert row[2:4] == ["message.sent", "active"]
    assert row[5:] == ["0", "0", "0", "3", "0"]
    everyone = dispatch(env, "webhooks", "list")
    assert everyone.returncode == 0, everyone.stderr
    [row] = _rows(everyone.stdout, hook_id)
    assert row[0] == account  # the operator's view names the account

    failed = dispatch(
        env, "webhooks", "deliveries", hook_id, "--account", account, "--status", "failed"
    )
    assert failed.returncode == 0, failed.stderr
    rows = _rows(failed.stdout, f"{hook_id}.")
    assert len(rows) == 3
    for cells in rows:
        # id, event, status, attempts, last answer, created, next attempt
        assert cells[1:5] == ["message.sent", "failed", "8", "the endpoint answered 500"]
        assert cells[6] == "-"
    assert "3 failed shown of 3 delivery(ies)" in failed.stdout
    none_delivered = dispatch(
        env, "webhooks", "deliveries", hook_id, "-a", account, "--status", "delivered"
    )
    assert "0 delivered shown of 3" in none_delivered.stdout

    # Refusals: a bad or future --since, delivered ones without --all, an unknown endpoint.
    for since, says in (("soon", "neither a duration"), ("2999-01-01", "in the future")):
        bad = dispatch(env, "webhooks", "replay", hook_id, "-a", account, "--since", since)
        assert bad.returncode == 2, bad.stderr
        assert says in bad.stderr
    bad = dispatch(
        env, "webhooks", "replay", hook_id, "-a", account, "--since", "1h", "--status", "delivered"
    )
    assert bad.returncode == 2
    assert "replaying them must be asked for explicitly (add --all)" in bad.stderr
    unknown = dispatch(env, "webhooks", "replay", "wh_nothere", "-a", account, "--since", "1h")
    assert unknown.returncode == 1
    assert "webhook_not_found" in unknown.stderr

    dry = dispatch(env, "webhooks", "replay", hook_id, "-a", account, "--since", "10m", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == "3"
    assert "3 of the 3 delivery(ies) created since" in dry.stderr
    declined = dispatch(
        env, "webhooks", "replay", hook_id, "-a", account, "--since", "10m", input_="n\n"
    )
    assert declined.returncode == 1
    assert "Replay 3 delivery(ies)" in declined.stderr
    assert declined.stdout.strip() == ""  # (click's input() writes the prompt's last space)
    time.sleep(1.0)
    assert len(_answers(events)) == 3 * 8  # neither the dry run nor the declined one posted

    # The receiver is back: a replay posts each failed event again, and it arrives.
    events.answer = 204
    replayed = dispatch(
        env, "webhooks", "replay", hook_id, "--account", account, "--since", "10m", "--yes"
    )
    assert replayed.returncode == 0, replayed.stderr
    assert "3 delivery(ies) replayed" in replayed.stderr

    def delivered_again() -> set[str]:
        return {event_id for answer, event_id in _answers(events) if answer == 204}

    assert wait_until(lambda: len(delivered_again()) == 3, 20, "the replayed events")
    assert delivered_again() == failed_ids
    wait_until(
        lambda: (
            {
                d["status"]
                for d in tenant.get(f"/api/v1/webhooks/{hook_id}/deliveries").json()["deliveries"]
            }
            == {"delivered"}
        ),
        20,
        "the deliveries recorded as delivered",
    )
    # Nothing failed is left; delivered ones are replayed only with --all.
    again = dispatch(env, "webhooks", "replay", hook_id, "-a", account, "--since", "10m", "--yes")
    assert again.stdout.strip() == "0"
    every = dispatch(
        env, "webhooks", "replay", hook_id, "-a", account, "--since", "1h", "--all", "--dry-run"
    )
    assert every.stdout.strip() == "3"
    listed = dispatch(env, "webhooks", "list", "--account", account)
    [row] = _rows(listed.stdout, hook_id)
    assert row[5:] == ["0", "0", "3", "3", "0"]
