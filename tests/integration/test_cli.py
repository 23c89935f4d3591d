"""The `dispatch` admin commands, run as a user runs them: a subprocess per command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import SPEC_BODY
from tests.support import dispatch, register_push_credentials


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
