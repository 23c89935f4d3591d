"""`dispatch up --demo` as a child process on free ports: for the latency script,
the benchmarks and the tests that exercise the whole stack the way `make demo` does."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from worker.config import child_environment
from worker.stack.processes import free_port, port_free

READY_MARK = "Ctrl-C stops everything"


@dataclass
class DemoStack:
    process: subprocess.Popen[str]
    data_dir: Path
    flower_url: str
    api_url: str
    sim_url: str
    redis_url: str
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)
    ready_s: float = 0.0

    @property
    def key(self) -> str:
        return (self.data_dir / "demo.env").read_text().strip().split("=", 1)[1]

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout_s: float = 60) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout_s)


def _free_run(n: int = 3) -> int:
    """A free port whose next ``n - 1`` ports are free too (`dispatch up` serves worker
    metrics on DISPATCH_METRICS_PORT_BASE + 1, + 2 and + 3)."""
    for _ in range(50):
        port = free_port()
        if all(port_free("127.0.0.1", port + i) for i in range(1, n)):
            return port
    raise RuntimeError(f"no {n} consecutive free ports")


@contextmanager
def demo_stack(
    workdir: Path,
    *,
    redis_port: int | None = None,
    log_level: str = "INFO",
    timeout_s: float = 120,
    overrides: dict[str, str] | None = None,
) -> Iterator[DemoStack]:
    """``overrides``: more settings for the stack, by name (``supervisor_backoff_base_s``)."""
    data_dir = workdir / ".data"
    api_port, sim_port, sim_tls_port = free_port(), free_port(), free_port()
    redis_port = redis_port or free_port()
    flower_port, metrics_base = free_port(), _free_run() - 1
    env = child_environment(
        {
            "data_dir": str(data_dir),
            "embedded_redis_port": str(redis_port),
            "api_port": str(api_port),
            "sim_port": str(sim_port),
            "sim_tls_port": str(sim_tls_port),
            "flower_port": str(flower_port),
            "metrics_port_base": str(metrics_base),
            "log_level": log_level,
            **(overrides or {}),
        },
        clean=True,
    )
    env["COLUMNS"] = "200"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "up", "--demo"],
        cwd=workdir,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    stack = DemoStack(
        process,
        data_dir,
        f"http://127.0.0.1:{flower_port}",
        f"http://127.0.0.1:{api_port}",
        f"http://127.0.0.1:{sim_port}",
        f"redis://127.0.0.1:{redis_port}/0",
        env,
    )
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stack.lines.append(line)
            if READY_MARK in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(timeout_s):
            raise RuntimeError("the stack did not become ready:\n" + "".join(stack.lines[-40:]))
        stack.ready_s = time.monotonic() - started
        yield stack
    finally:
        stack.stop()
