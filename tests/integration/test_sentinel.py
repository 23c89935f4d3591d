"""Redis Sentinel: with DISPATCH_REDIS_SENTINELS set, every process finds the master
through the sentinels (the API's and workers' clients, Celery's broker), and sends go on
after a failover to the replica."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import TEST_SECRET_KEY
from tests.integration.conftest import SPEC_BODY, make_tenant
from tests.support import Service, wait_until
from worker.config import Settings
from worker.stack.processes import EmbeddedValkey, free_port, terminate, valkey_binary
from worker.store import keys
from worker.store import secrets as store_secrets

MASTER = "dispatchmaster"


class SentinelStack:
    def __init__(self, root: Path, data_dir: Path) -> None:
        self.root = root
        self.master = EmbeddedValkey(root / "master", free_port())
        self.replica = EmbeddedValkey(
            root / "replica",
            free_port(),
            extra_args=("--replicaof", "127.0.0.1", str(self.master.port)),
        )
        self.sentinel_port = free_port()
        self.sentinel: subprocess.Popen[bytes] | None = None
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
        self.env.update(
            {
                # Nothing listens here: where Redis is must come from the sentinels.
                "DISPATCH_REDIS_URL": "redis://127.0.0.1:1/0",
                "DISPATCH_REDIS_SENTINELS": f"127.0.0.1:{self.sentinel_port}",
                "DISPATCH_REDIS_SENTINEL_MASTER": MASTER,
                "DISPATCH_DATA_DIR": str(data_dir),  # the simulator's CA
                "DISPATCH_SEND_WAIT_S": "5",
                "DISPATCH_RETRY_BASE_DELAY_S": "0.3",
                "DISPATCH_RETRY_MAX_DELAY_S": "1",
                "DISPATCH_VISIBILITY_TIMEOUT_S": "10",
                "DISPATCH_TASK_TIME_LIMIT_S": "8",
                "DISPATCH_SECRET_KEY": TEST_SECRET_KEY,
            }
        )
        self.settings = Settings(
            redis_url="redis://127.0.0.1:1/0",
            redis_sentinels=f"127.0.0.1:{self.sentinel_port}",
            redis_sentinel_master=MASTER,
            secret_key=TEST_SECRET_KEY,
        )
        # The test provisions credentials itself (run alone, no other fixture set the key).
        store_secrets.use(self.settings)
        self.services: list[Service] = []

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        conf = self.root / "sentinel.conf"
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.sentinel_port}",
                    f"dir {self.root}",
                    f"sentinel monitor {MASTER} 127.0.0.1 {self.master.port} 1",
                    f"sentinel down-after-milliseconds {MASTER} 1000",
                    f"sentinel failover-timeout {MASTER} 5000",
                ]
            )
            + "\n"
        )
        self.sentinel = subprocess.Popen(
            [valkey_binary(), str(conf), "--sentinel"],
            stdout=(self.root / "sentinel.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self.master_port() == self.master.port, 15, "the sentinel")
        for name, args in (
            ("api", ("api", "--port", str(self.api_port))),
            ("worker", ("worker", "--queues", "transactional,bulk,webhooks", "--concurrency", "1")),
            ("beat", ("beat",)),
        ):
            self.services.append(
                Service(
                    name,
                    [sys.executable, "-m", "worker.cli", *args],
                    self.env,
                    self.root / f"{name}.log",
                )
            )
        wait_until(self._ready, 60, "the API and the worker, through the sentinel")

    def _ready(self) -> bool:
        for service in self.services:
            service.check_alive()
        try:
            return httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def master_port(self) -> int | None:
        client = redis.Redis(port=self.sentinel_port, socket_timeout=1)
        try:
            addr = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
            return int(addr[1]) if addr else None
        except redis.RedisError:
            return None
        finally:
            client.close()

    def stop(self) -> None:
        for service in self.services:
            if service.process.poll() is None:
                service.stop()
        if self.sentinel is not None:
            terminate(self.sentinel.pid, group=False, timeout_s=10)
        self.replica.stop()
        self.master.stop()


@pytest.fixture(scope="module")
def sentinel_stack(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> Iterator[SentinelStack]:
    stack = SentinelStack(tmp_path_factory.mktemp("sentinel"), data_dir)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def test_sends_go_through_the_sentinels_master_and_survive_a_failover(
    sentinel_stack: SentinelStack, sim_url: str, http: httpx.Client
) -> None:
    stack = sentinel_stack
    tenant = make_tenant(stack.settings, sim_url, stack.api_url, http)
    body = {**SPEC_BODY, "contact_id": None}
    first = tenant.send(body)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "sent"
    # Let the replica catch up with the tenant and the message before the master goes.
    replica = redis.Redis(port=stack.replica.port)
    wait_until(
        lambda: (
            replica.info("replication")["master_link_status"] == "up"
            and replica.exists(keys.message(tenant.name, first.json()["id"])) == 1
        ),
        10,
        "the replica to catch up",
    )

    stack.master.stop()
    wait_until(lambda: stack.master_port() == stack.replica.port, 30, "the failover")
    failed_over_at = time.monotonic()

    # As a client would: retried while the API cannot reach Redis (503), under one
    # Idempotency-Key, so that a retry never makes a second message.
    def accepted() -> httpx.Response | None:
        response = tenant.send(body, **{"Prefer": "respond-async", "Idempotency-Key": "k-2"})
        return response if response.status_code == 202 else None

    second_id = wait_until(accepted, 30, "the API on the new master").json()["id"]
    wait_until(
        lambda: tenant.get(f"/api/v1/messages/{second_id}").json().get("status") == "sent",
        30,
        "the second send to go out",
    )
    assert time.monotonic() - failed_over_at < 30
    # Both sends reached the provider, once each.
    assert len(tenant.sim_requests()) == 2
    ready = wait_until(
        lambda: (r := httpx.get(f"{stack.api_url}/readyz", timeout=5)).status_code == 200 and r,
        20,
        "/readyz after the failover",
    )
    assert ready.json()["workers"]["transactional"] == 1
