"""The API's own OpenAPI schema, fuzzed (schemathesis): whatever arrives, no 5xx, every
error in the JSON error shape, and nothing stored by a request that was rejected."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from redis import Redis

from tests.integration.conftest import make_tenant
from worker.api.app import create_app
from worker.config import Settings

# The schema the running API serves (built from the same app), one test per operation.
SCHEMA = schemathesis.openapi.from_dict(create_app(Settings()).openapi())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.fixture(scope="module")
def fuzz_account(
    stack: dict[str, Any], settings: Settings, sim_url: str, api_url: str
) -> tuple[str, str]:
    with httpx.Client(timeout=30) as http:
        tenant = make_tenant(settings, sim_url, api_url, http)
    return tenant.name, tenant.key


def snapshot(url: str, account: str) -> str:
    """A digest of everything stored for the account."""
    client = Redis.from_url(url, decode_responses=True)
    digest = hashlib.sha256()
    for key in sorted(client.scan_iter(match=f"dispatch:{account}:*")):
        kind = client.type(key)
        value: Any = {
            "hash": client.hgetall,
            "set": lambda k: sorted(client.smembers(k)),
            "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            "list": lambda k: client.lrange(k, 0, -1),
            "string": client.get,
        }[kind](key)
        digest.update(f"{key}={value!r}\n".encode())
    client.close()
    return digest.hexdigest()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_fuzzed_requests_never_500_and_rejections_change_nothing(
    operation: Any, fuzz_account: tuple[str, str], api_url: str, settings: Settings
) -> None:
    account, key = fuzz_account
    redis_url = settings.effective_redis_url

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
        before = snapshot(redis_url, account)

        response = case.call(base_url=api_url, timeout=30)

        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            body = response.json()
            assert body["success"] is False
            assert isinstance(body["error"], str)
            assert isinstance(body["code"], str)
            assert body["error"]
            assert body["code"]
            assert snapshot(redis_url, account) == before, f"{response.status_code} changed state"

    check()
