"""A stack of its own for the fault tests: Valkey, API, workers and beat that a test may
kill and restart without touching the session's stack (the simulator is shared: it
keeps nothing in Redis)."""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import TEST_ENV, TEST_SECRET_KEY
from tests.support import Service, wait_until
from worker.config import Settings
from worker.stack.processes import EmbeddedValkey, free_port, terminate_all
from worker.store import secrets as store_secrets

# Fast redelivery after a crash (the shortest visibility timeout allowed), and budgets
# that outlast a 5-second provider storm. A job a killed worker had popped from its queue
# but not yet recorded as taken is in no broker list: only the beat's sweep of messages
# no job has started brings it back (DISPATCH_UNSTARTED_AFTER_S, 300 s by default), so
# the sweep runs here within the tests' wait too.
FAULT_ENV = {
    "DISPATCH_VISIBILITY_TIMEOUT_S": "6",
    "DISPATCH_UNSTARTED_AFTER_S": "10",
    "DISPATCH_TASK_TIME_LIMIT_S": "8",
    "DISPATCH_WHATSAPP_MAX_ATTEMPTS": "10",
    "DISPATCH_PUSH_MAX_ATTEMPTS": "10",
    "DISPATCH_RETRY_BASE_DELAY_S": "0.3",
    "DISPATCH_RETRY_MAX_DELAY_S": "2",
    "DISPATCH_COUNTDOWN_MAX_S": "1",
    "DISPATCH_PROVIDER_TIMEOUT_S": "3",
    "DISPATCH_SEND_WAIT_S": "5",
    "DISPATCH_PUSH_SLICE_SIZE": "25",
    "DISPATCH_LOG_LEVEL": "INFO",
    # Bursts of thousands of sends with one key: the limit checked, never reached.
    "DISPATCH_API_KEY_RATE_PER_S": "1000000",
    "DISPATCH_SECRET_KEY": TEST_SECRET_KEY,
    # Event webhooks: the tests' receivers, and retries within seconds.
    "DISPATCH_OUTBOUND_ALLOW": TEST_ENV["DISPATCH_OUTBOUND_ALLOW"],
    "DISPATCH_WEBHOOK_RETRY_SCHEDULE_S": TEST_ENV["DISPATCH_WEBHOOK_RETRY_SCHEDULE_S"],
    "DISPATCH_WEBHOOK_SUBSCRIBERS_REFRESH_S": TEST_ENV["DISPATCH_WEBHOOK_SUBSCRIBERS_REFRESH_S"],
}


# Pool processes of each worker the fault tests start.
POOL_PROCESSES = 2


class FaultStack:
    def __init__(
        self,
        root: Path,
        sim_url: str,
        sim_tls_port: int,
        data_dir: Path,
        *,
        maxmemory: str = "0",
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.sim_url = sim_url
        self.sim_tls_port = sim_tls_port
        self.valkey = EmbeddedValkey(root / "valkey", free_port(), maxmemory=maxmemory)
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
        overrides = {**FAULT_ENV, **(env or {})}
        self.env.update(overrides)
        self.env["DISPATCH_REDIS_URL"] = self.valkey.url
        # The simulator's CA lives in the session's data dir.
        self.env["DISPATCH_DATA_DIR"] = str(data_dir)
        self.settings = Settings(
            redis_url=self.valkey.url,
            **{k.removeprefix("DISPATCH_").lower(): v for k, v in overrides.items()},
        )
        # Provider credentials written from the test process are encrypted with its key.
        store_secrets.use(self.settings)
        self.workers: list[Service] = []
        self.services: list[Service] = []
        self._names = itertools.count(1)

    def _service(self, name: str, *args: str) -> Service:
        service = Service(
            name,
            [sys.executable, "-m", "worker.cli", *args],
            self.env,
            self.root / f"{name}.log",
        )
        self.services.append(service)
        return service

    def start(self, *worker_args: str) -> None:
        self.valkey.start()
        api = self._service("api", "api", "--port", str(self.api_port))
        beat = self._service("beat", "beat")
        self.start_worker(*worker_args)

        def api_up() -> bool:
            api.check_alive()
            try:
                return httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(api_up, 30, "the fault stack's API")
        wait_until(lambda: b"beat: moving" in beat.log.read_bytes(), 30, "the fault stack's beat")

    def start_worker(self, *extra: str) -> Service:
        name = f"worker{next(self._names)}"
        # Every queue: the fault tests cover campaigns' and webhooks' jobs too.
        worker = self._service(
            name,
            "worker",
            "--queues",
            "transactional,bulk,webhooks",
            "--concurrency",
            str(POOL_PROCESSES),
            "--name",
            name,
            *extra,
        )

        def ready() -> bool:
            worker.check_alive()
            return b"ready." in worker.log.read_bytes()

        wait_until(ready, 60, f"{name}")
        self.workers.append(worker)
        return worker

    def kill_worker(self, worker: Service) -> None:
        """SIGKILL the worker and its pool children at once: no warm shutdown, no acks."""
        os.killpg(worker.process.pid, 9)
        worker.process.wait(10)
        self.workers.remove(worker)

    def restart_valkey(self, down_s: float) -> None:
        """A graceful Redis restart: SIGTERM (AOF fsynced), a pause, the same port and data."""
        self.valkey.stop()
        time.sleep(down_s)
        self.valkey.start()

    def stop(self) -> None:
        alive = [s.process.pid for s in self.services if s.process.poll() is None]
        terminate_all(alive, groups=alive, timeout_s=10)
        self.valkey.stop()
