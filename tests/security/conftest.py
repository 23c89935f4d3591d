"""The security tests attack the real stack: the integration tests' fixtures (a tenant on
the running API, workers, beat and simulator), and API processes of their own with other
settings on the same store."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _http_ok
from tests.integration.conftest import (  # noqa: F401  (fixtures)
    http,
    other_tenant,
    push_tenant,
    push_tenant_factory,
    tenant,
)
from tests.support import Service, wait_until
from worker.processes import free_port

ApiFactory = Callable[..., str]


@pytest.fixture
def api_process(
    stack: dict[str, Any], service_env: dict[str, str], tmp_path: Path
) -> Iterator[ApiFactory]:
    """``api_process(DISPATCH_X="…")``: another API process on the same store, with
    those settings; its URL."""
    started: list[Service] = []

    def start(wait_path: str = "/healthz", **env: str) -> str:
        port = free_port()
        service = Service(
            f"api-{len(started)}",
            [sys.executable, "-m", "worker.cli", "api", "--port", str(port)],
            {**service_env, **env},
            tmp_path / f"api-{len(started)}.log",
        )
        started.append(service)
        url = f"http://127.0.0.1:{port}"
        wait_until(_http_ok(f"{url}{wait_path}", service), 30, "the extra API")
        return url

    yield start
    for service in started:
        service.stop()
