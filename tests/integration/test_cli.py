"""The `dispatch` admin commands, run as a user runs them: a subprocess per command."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.integration.conftest import SPEC_BODY


def dispatch(
    env: dict[str, str], *args: str, input_: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        input=input_,
        check=False,
    )


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
    made = dispatch(env, "keys", "create", "--account", account_name, "--scope", "contacts")
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
    key_id = next(
        line.split()[1] for line in listing.stdout.splitlines() if contacts_key[:8] in line
    )
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
