"""Redis down: the API answers 503 in the error shape, and recovers by itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx

from tests.integration.conftest import SPEC_BODY
from tests.support import Service, wait_until
from worker.stack.processes import EmbeddedValkey, free_port


def test_api_answers_503_while_redis_is_down_and_recovers(tmp_path: Path) -> None:
    redis_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
    env["DISPATCH_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    api = Service(
        "api",
        [sys.executable, "-m", "worker.cli", "api", "--port", str(api_port)],
        env,
        tmp_path / "api.log",
    )
    url = f"http://127.0.0.1:{api_port}"
    valkey = EmbeddedValkey(tmp_path / "valkey", redis_port)
    try:
        wait_until(lambda: _healthy(url), 30, "the API")
        headers = {"Authorization": "Bearer msk_whatever"}

        down = httpx.post(
            f"{url}/api/v1/channels/whatsapp/send", json=SPEC_BODY, headers=headers, timeout=30
        )

        assert down.status_code == 503
        assert down.json() == {
            "success": False,
            "error": "The message store is unavailable; try again shortly",
            "code": "store_unavailable",
        }
        assert down.headers["retry-after"] == "1"

        valkey.start()
        back = httpx.post(
            f"{url}/api/v1/channels/whatsapp/send", json=SPEC_BODY, headers=headers, timeout=30
        )
        assert back.status_code == 401  # Redis answered: the key is unknown
    finally:
        api.stop()
        valkey.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
