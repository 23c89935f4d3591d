"""Provider credentials are stored encrypted: neither Redis's values nor its files on disk
(the append-only file a backup copies) hold an access token, an app secret, a private key
or a provider JWT in clear; and the key can be changed without losing any."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from redis.asyncio import Redis

from tests.conftest import TEST_SECRET_KEY
from tests.integration.conftest import PushTenant
from tests.support import dispatch, run_async
from worker.stack.processes import EmbeddedValkey
from worker.store import channels, keys
from worker.store import secrets as store_secrets


async def _every_value(redis: Redis, pattern: str) -> list[str]:
    values: list[str] = []
    async for key in redis.scan_iter(match=pattern, count=1000):
        kind = await redis.type(key)
        if kind == "string":
            values.append(str(await redis.get(key)))
        elif kind == "hash":
            values += [str(v) for v in (await redis.hgetall(key)).values()]
    return values


def _secrets_of(tenant: PushTenant, settings: Any) -> list[str]:
    async def read(redis: Redis) -> list[str]:
        whatsapp = await channels.load_whatsapp(redis, tenant.name)
        push = await channels.load_push(redis, tenant.name)
        assert whatsapp is not None
        found = [whatsapp.access_token.get_secret_value(), tenant.app_secret]
        fcm, apns = push["fcm"][0], push["apns"][0]
        # A line from the middle of each private key (PEM headers are not secret).
        found += [fcm.service_account.get_secret_value().split("\\n")[5]]  # type: ignore[union-attr]
        found += [apns.key.get_secret_value().splitlines()[2]]  # type: ignore[union-attr]
        return found

    return list(run_async(read, settings))


def test_redis_and_its_files_hold_no_provider_secret_in_clear(
    push_tenant: PushTenant, valkey: EmbeddedValkey
) -> None:
    assert push_tenant.register("cct_abc123", ("apns", "a8b2cd3e" * 8)).is_success
    sent = push_tenant.push({"contact_id": "cct_abc123", "title": "t", "message": "m"})
    assert sent.json()["delivered"] == 1  # the worker decrypted the key and signed
    secrets = _secrets_of(push_tenant, push_tenant.settings)
    assert all(len(s) >= 10 for s in secrets)
    values = run_async(lambda r: _every_value(r, "dispatch:*"), push_tenant.settings)
    stored = "\n".join(values)
    for secret in secrets:
        assert secret not in stored
    records = run_async(lambda r: _every_value(r, keys.provider_token("*")), push_tenant.settings)
    assert records
    box = store_secrets.box_for(push_tenant.settings)
    for record in records:
        # "issued-at fingerprint sealed": the token itself only sealed. (A search for
        # "eyJ" in the record failed now and then: a random ciphertext holds it by chance.)
        issued_at, fingerprint, sealed = record.split(" ")
        assert float(issued_at) > 0
        assert len(fingerprint) == 32
        assert sealed.startswith(store_secrets.PREFIX)
        jwt = box.open(sealed)
        assert jwt.startswith("eyJ")  # what it hides is a provider JWT
        assert jwt not in stored
        secrets.append(jwt)  # and not on disk either
    run_async(lambda r: r.execute_command("BGREWRITEAOF"), push_tenant.settings)
    on_disk = b"".join(p.read_bytes() for p in Path(valkey.data_dir).rglob("*") if p.is_file())
    for secret in secrets:
        assert secret.encode() not in on_disk


def test_the_key_changes_without_losing_a_credential(
    push_tenant: PushTenant, service_env: dict[str, str]
) -> None:
    """A credential stored in clear by an earlier version is still read; rotation under
    "new,old" encrypts everything with the new key, after which the old one can go."""
    name = push_tenant.name

    async def store_plaintext(redis: Redis) -> str:
        await redis.hset(keys.channel(name, "whatsapp"), "app_secret", "legacy-plain-secret")
        return str(await redis.hget(keys.channel(name, "whatsapp"), "access_token"))

    before = run_async(store_plaintext, push_tenant.settings)
    new = Fernet.generate_key().decode()
    rotated = dispatch(
        {**service_env, "DISPATCH_SECRET_KEY": f"{new},{TEST_SECRET_KEY}"}, "secrets", "rotate"
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "encrypted with the current key" in rotated.stdout

    async def raw(redis: Redis) -> dict[str, str]:
        return dict(await redis.hgetall(keys.channel(name, "whatsapp")))

    after = run_async(raw, push_tenant.settings)
    assert after["access_token"] != before
    assert after["app_secret"].startswith("fernet:")
    only_new = {**service_env, "DISPATCH_SECRET_KEY": new}
    shown = dispatch(only_new, "channels", "whatsapp", "show", "--account", name)
    assert shown.returncode == 0, shown.stderr
    assert "app secret" in shown.stdout
    old_only = dispatch(service_env, "channels", "whatsapp", "show", "--account", name)
    assert old_only.returncode == 2
    assert "does not decrypt" in old_only.stderr
