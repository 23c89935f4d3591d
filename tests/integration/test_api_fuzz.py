"""The API's own OpenAPI schema, fuzzed (schemathesis): whatever arrives, no 5xx, every
error in the JSON error shape, and nothing stored by a request that was rejected."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from redis import Redis

from tests.integration.conftest import make_tenant
from tests.support import http_client
from worker.api.app import create_app
from worker.config import Settings

# The schema the running API serves (built from the same app), one test per operation.
SCHEMA = schemathesis.openapi.from_dict(create_app(Settings()).openapi())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.fixture(scope="module")
def fuzz_account(
    stack: dict[str, Any], settings: Settings, sim_url: str, api_url: str
) -> tuple[str, str]:
    with http_client() as http:
        tenant = make_tenant(settings, sim_url, api_url, http)
    return tenant.name, tenant.key


def snapshot(client: Redis, account: str) -> str:
    """A digest of everything stored for the account (the keys found in large SCAN steps,
    read in one pipeline: the session's store holds every earlier test's keys)."""
    found = sorted(client.scan_iter(match=f"dispatch:{account}:*", count=5000))
    with client.pipeline(transaction=False) as pipe:
        for key in found:
            pipe.type(key)
        kinds = pipe.execute()
    # A key that expired since the SCAN is no longer stored.
    found, kinds = (
        [k for k, t in zip(found, kinds, strict=True) if t != "none"],
        [t for t in kinds if t != "none"],
    )
    with client.pipeline(transaction=False) as pipe:
        for key, kind in zip(found, kinds, strict=True):
            {
                "hash": pipe.hgetall,
                "set": pipe.smembers,
                "zset": lambda k: pipe.zrange(k, 0, -1, withscores=True),
                "list": lambda k: pipe.lrange(k, 0, -1),
                "string": pipe.get,
            }[kind](key)
        values = pipe.execute()
    digest = hashlib.sha256()
    for key, kind, value in zip(found, kinds, values, strict=True):
        shown = sorted(value) if kind == "set" else value
        digest.update(f"{key}={shown!r}\n".encode())
    return digest.hexdigest()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_fuzzed_requests_never_500_and_rejections_change_nothing(
    operation: Any, fuzz_account: tuple[str, str], api_url: str, settings: Settings
) -> None:
    account, key = fuzz_account
    client = Redis.from_url(settings.effective_redis_url, decode_responses=True)

    @given(case=operation.as_strategy())
    @hypothesis_settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        # Fuzz the request, not the credentials: most cases must get past authentication.
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
        before = snapshot(client, account)

        response = case.call(base_url=api_url, timeout=30)

        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            body = response.json()
            assert body["success"] is False
            assert isinstance(body["error"], str)
            assert isinstance(body["code"], str)
            assert body["error"]
            assert body["code"]
            assert snapshot(client, account) == before, f"{response.status_code} changed state"

    try:
        check()
    finally:
        client.close()
