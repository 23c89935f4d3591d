"""Real pieces for the tests: a Valkey server from the wheel, the simulator, a Celery
worker and the API, each a process of its own on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.support import Service, wait_until
from worker.config import Settings
from worker.stack.processes import EmbeddedValkey, free_port, terminate_all
from worker.store import secrets as store_secrets

RECEIVER_HOST = "127.0.0.2"
# Long enough for every process to have re-read which accounts have webhook endpoints
# (DISPATCH_WEBHOOK_SUBSCRIBERS_REFRESH_S below, twice over).
SUBSCRIBERS_SEEN_S = 0.7
# Provider credentials are stored encrypted: the test session's key, given to every
# service the tests start (and used by the test process itself).
TEST_SECRET_KEY = Fernet.generate_key().decode()
# Short retry delays and timeouts, so fault tests finish in seconds.
TEST_ENV = {
    "DISPATCH_RETRY_BASE_DELAY_S": "0.2",
    "DISPATCH_RETRY_MAX_DELAY_S": "1",
    # 1.5 s until 2026-12-01: at a campaign's start the simulator (one process, sharing this
    # 2-core box with every service) took over 1.5 s to answer a burst of 375 push
    # streams, so the deadline measured the box and its retries sent devices twice.
    "DISPATCH_PROVIDER_TIMEOUT_S": "3",
    "DISPATCH_WHATSAPP_MAX_ATTEMPTS": "3",
    # A send left without an answer waits this long for its "sent" status report (30 s by
    # default): long enough for the simulator's retried webhooks (1 + 2 + 4 s) on a busy box.
    "DISPATCH_WHATSAPP_UNCONFIRMED_WAIT_S": "8",
    "DISPATCH_SEND_WAIT_S": "5",
    "DISPATCH_UNSTARTED_AFTER_S": "3",
    "DISPATCH_LOG_LEVEL": "INFO",
    # Tenants' URLs are called on public addresses only: the tests' own receivers listen
    # on 127.0.0.2, allowed as an operator would allow an internal network, so that
    # 127.0.0.1 (the services themselves) stays refused.
    "DISPATCH_OUTBOUND_ALLOW": RECEIVER_HOST + "/32",
    "DISPATCH_OUTBOUND_DEADLINE_S": "2",
    # Event webhooks retried within seconds (the default waits span a day).
    "DISPATCH_WEBHOOK_RETRY_SCHEDULE_S": "0.3,0.3,0.5,0.5,1,1,1",
    # Which accounts have endpoints, re-read this often (2 s by default).
    "DISPATCH_WEBHOOK_SUBSCRIBERS_REFRESH_S": "0.3",
    # One key sends for many tests at once: its limit is checked (every request pays for
    # the check) at a rate no test reaches; tests/security tests the limit itself.
    "DISPATCH_API_KEY_RATE_PER_S": "1000000",
    "DISPATCH_SECRET_KEY": TEST_SECRET_KEY,
}


def _http_ok(url: str, service: Service) -> Callable[[], bool]:
    def check() -> bool:
        service.check_alive()
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return check


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def settings(valkey: EmbeddedValkey) -> Settings:
    settings = Settings(
        redis_url=valkey.url,
        **{k.removeprefix("DISPATCH_").lower(): v for k, v in TEST_ENV.items()},
    )
    store_secrets.use(settings)
    return settings


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def service_env(valkey: EmbeddedValkey, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
    env.update(TEST_ENV)
    env["DISPATCH_REDIS_URL"] = valkey.url
    env["DISPATCH_DATA_DIR"] = str(data_dir)
    return env


@pytest.fixture(scope="session")
def sim_tls_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def sim_ca_file(data_dir: Path) -> Path:
    """The CA the simulator's HTTP/2 + TLS port is certified by (written when it starts)."""
    return data_dir / "sim" / "ca.pem"


@pytest.fixture(scope="session")
def sim_url(
    service_env: dict[str, str], logs_dir: Path, sim_tls_port: int, sim_ca_file: Path
) -> Iterator[str]:
    port = free_port()
    service = Service(
        "sim",
        [
            sys.executable,
            "-m",
            "worker.cli",
            "sim",
            "--port",
            str(port),
            "--tls-port",
            str(sim_tls_port),
        ],
        service_env,
        logs_dir / "sim.log",
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(_http_ok(f"{url}/_sim/health", service), 30, "the simulator")
    assert sim_ca_file.exists()
    yield url
    service.stop()


@pytest.fixture(scope="session")
def api_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def api_url(api_port: int) -> str:
    return f"http://127.0.0.1:{api_port}"


def _celery_worker(name: str, queues: str, env: dict[str, str], logs_dir: Path) -> Service:
    service = Service(
        name,
        [
            sys.executable,
            "-m",
            "worker.cli",
            "worker",
            "--queues",
            queues,
            "--concurrency",
            "2",
        ],
        env,
        logs_dir / f"{name}.log",
    )

    def ready() -> bool:
        service.check_alive()
        return b"ready." in service.log.read_bytes()

    wait_until(ready, 60, f"the Celery worker for {queues}")
    return service


@pytest.fixture(scope="session")
def worker_service(service_env: dict[str, str], logs_dir: Path) -> Iterator[Service]:
    service = _celery_worker("worker", "transactional", service_env, logs_dir)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def bulk_worker_service(service_env: dict[str, str], logs_dir: Path) -> Iterator[Service]:
    """The campaign jobs' own worker, as deployed: `transactional` sends never wait on it.
    It serves the `webhooks` queue too (`dispatch up` gives that one a worker of its own
    at the lowest CPU priority: the suite saves the process)."""
    service = _celery_worker("bulk-worker", "bulk,webhooks", service_env, logs_dir)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def api_service(
    service_env: dict[str, str], logs_dir: Path, api_port: int, api_url: str
) -> Iterator[Service]:
    service = Service(
        "api",
        [sys.executable, "-m", "worker.cli", "api", "--port", str(api_port)],
        service_env,
        logs_dir / "api.log",
    )
    wait_until(_http_ok(f"{api_url}/healthz", service), 30, "the API")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def beat_service(service_env: dict[str, str], logs_dir: Path) -> Iterator[Service]:
    service = Service(
        "beat",
        [sys.executable, "-m", "worker.cli", "beat"],
        service_env,
        logs_dir / "beat.log",
    )

    def ready() -> bool:
        service.check_alive()
        return b"beat: moving due jobs" in service.log.read_bytes()

    wait_until(ready, 30, "the beat")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def stack(
    sim_url: str,
    api_service: Service,
    worker_service: Service,
    bulk_worker_service: Service,
    beat_service: Service,
) -> Iterator[dict[str, Any]]:
    """The whole service running: simulator, API, both workers and beat on one Valkey.
    At the end of the session they stop at once (a worker's warm shutdown takes a second
    or so), before the simulator and Valkey they may still need."""
    services = [api_service, worker_service, bulk_worker_service, beat_service]
    yield {
        "sim": sim_url,
        "api": api_service,
        "worker": worker_service,
        "bulk": bulk_worker_service,
        "beat": beat_service,
    }
    pids = [s.process.pid for s in services]
    terminate_all(pids, groups=pids, timeout_s=10)
