"""The bench's own stack on free ports: Valkey, two simulators, the API, a transactional
a bulk and a webhooks worker, the beat; each a process whose CPU time can be read.

Two simulators: in production the providers are other machines. Here the campaign's
provider (FCM, APNs, WhatsApp for campaigns) is one simulator process and the OTP's
WhatsApp number another, so an OTP measured during a campaign does not queue behind
the campaign's requests inside the simulator's own event loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from worker.config import Settings, child_environment
from worker.models import Scope
from worker.services.provisioning import configure_whatsapp, redis_session, sync_templates
from worker.stack import demo
from worker.stack.processes import EmbeddedValkey, free_port, terminate, terminate_all
from worker.store import accounts, keys
from worker.store import secrets as store_secrets

RECEIVER_HOST = "127.0.0.2"  # the webhook step's receiver (`benchkit/receiver.py`)
OTP_ACCOUNT = "otp"
OTP_NUMBER_ID = "100000000000777"
OTP_WABA_ID = "200000000000777"
# The simulator's credentials for the OTP number (not secrets: nothing real is behind them).
OTP_TOKEN, OTP_SECRET = "otp-token", "otp-secret"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def _tree(self) -> list[psutil.Process]:
        """The process and its children (a worker's pool)."""
        try:
            me = psutil.Process(self.popen.pid)
            return [me, *me.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _sum(self, measure: Callable[[psutil.Process], float]) -> float:
        total = 0.0
        for p in self._tree():
            with suppress(psutil.NoSuchProcess):
                total += measure(p)
        return total

    def rss_mb(self) -> float:
        """Resident memory of the process and its children, MB."""
        return self._sum(lambda p: p.memory_info().rss) / 1e6

    def cpu_s(self) -> float:
        """CPU seconds of the process and its children."""
        return self._sum(lambda p: sum(p.cpu_times()[:2]))


# As `dispatch up` runs the bulk worker: it gives way to the API and the OTPs. Loops
# compared with it run at the same niceness, so that both are preempted alike.
BULK_NICE = 10


@dataclass
class BenchStack:
    workdir: Path
    settings: Settings
    env: dict[str, str]
    valkey: EmbeddedValkey
    procs: dict[str, Proc] = field(default_factory=dict)
    key: str = ""
    otp_key: str = ""
    sim_b_url: str = ""

    @property
    def api_url(self) -> str:
        return self.settings.api_base_url

    @property
    def sim_url(self) -> str:
        return self.settings.sim_base_url

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        popen = subprocess.Popen(
            argv,
            env=env or self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc = Proc(name, popen, log)
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            terminate(proc.popen.pid, group=True, timeout_s=15)

    def stop_all(self) -> None:
        """Every process at once, then the simulators (a worker's warm shutdown may still
        be answered by them)."""
        sims = {n: p for n, p in self.procs.items() if n.startswith("sim")}
        others = [p.popen.pid for n, p in self.procs.items() if n not in sims]
        terminate_all(others, groups=others, timeout_s=15)
        sim_pids = [p.popen.pid for p in sims.values()]
        terminate_all(sim_pids, groups=sim_pids, timeout_s=15)
        self.procs.clear()

    def wait_log(self, name: str, mark: bytes, timeout_s: float = 60) -> None:
        proc = self.procs[name]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if mark in proc.log.read_bytes():
                return
            if proc.popen.poll() is not None:
                break
            time.sleep(0.1)
        tail = proc.log.read_bytes()[-3000:].decode(errors="replace")
        raise RuntimeError(f"{name} did not start:\n{tail}")

    def worker(
        self, name: str, queues: str, *extra: str, nice: int = 0, env: dict[str, str] | None = None
    ) -> Proc:
        proc = self.spawn_worker(name, queues, *extra, nice=nice, env=env)
        wait_worker(proc)
        return proc

    def spawn_worker(
        self, name: str, queues: str, *extra: str, nice: int = 0, env: dict[str, str] | None = None
    ) -> Proc:
        """A worker started, not waited for (see ``wait_worker``)."""
        argv = [
            sys.executable,
            "-m",
            "worker.cli",
            "worker",
            "--queues",
            queues,
            "--name",
            name,
        ]
        argv += ["--nice", str(nice), *extra]
        return self.spawn(name, argv, env)

    def run(self, coro_fn: Any, *args: Any) -> Any:
        async def _run() -> Any:
            async with redis_session(self.settings) as redis:
                return await coro_fn(redis, *args)

        return asyncio.run(_run())

    def valkey_info(self) -> dict[str, float]:
        async def info(redis: Redis) -> dict[str, float]:
            cpu = await redis.info("cpu")
            stats = await redis.info("stats")
            return {
                "cpu_s": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
                "commands": float(stats["total_commands_processed"]),
            }

        result: dict[str, float] = self.run(info)
        return result


class IdleShare:
    """The share of the machine's CPU time left idle from creation to ``share()``: the
    gaps where neither the stack nor the simulator had work (a pipeline that stalls)."""

    def __init__(self) -> None:
        self._start = psutil.cpu_times()

    def share(self) -> float:
        end = psutil.cpu_times()
        total = _cpu_total(end) - _cpu_total(self._start)
        return (end.idle - self._start.idle) / total if total > 0 else 0.0


def _cpu_total(times: Any) -> float:
    """Every CPU second once: Linux counts guest time inside user (and nice) time too."""
    return float(sum(times)) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def wait_worker(proc: Proc, timeout_s: float = 60) -> None:
    """Until the Celery worker ``proc`` (named ``--name`` as it) answers a ping (its pool
    is up)."""
    node = f"{proc.name}@{socket.gethostname()}"
    from worker.runtime.celery_app import app as celery

    deadline = time.monotonic() + timeout_s
    while not celery.control.ping(destination=[node], timeout=0.5):
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            tail = proc.log.read_bytes()[-3000:].decode(errors="replace")
            raise RuntimeError(f"{node} did not start:\n{tail}")


@contextmanager
def bench_stack(
    workdir: Path, log_level: str = "WARNING", settings: dict[str, str] | None = None
) -> Iterator[BenchStack]:
    """The stack every step runs on; ``settings``: more of its settings (by name)."""
    data_dir = workdir / ".data"
    valkey = EmbeddedValkey(data_dir, free_port())
    valkey.start()
    from worker.runtime.celery_app import app as celery

    celery.conf.broker_url = valkey.url  # this process publishes too (naive jobs, control)
    overrides = {
        "redis_url": valkey.url,
        "data_dir": str(data_dir),
        "api_port": str(free_port()),
        "sim_port": str(free_port()),
        "sim_tls_port": str(free_port()),
        "log_level": log_level,
        # One key drives the API at its full rate: its per-key limit is still checked on
        # every request (the cost is measured), at a rate the bench never reaches.
        "api_key_rate_per_s": "1000000",
        # This stack's own key for the credentials it stores.
        "secret_key": Fernet.generate_key().decode(),
        # Tenants' URLs are called on public addresses only: the webhook step's receiver
        # listens on 127.0.0.2, allowed as an operator allows an internal network (the
        # services on 127.0.0.1 stay refused).
        "outbound_allow": RECEIVER_HOST + "/32",
        # Each process re-reads which accounts have an endpoint this often (one SMEMBERS):
        # the webhooks step waits that long after making or deleting its endpoint.
        "webhook_subscribers_refresh_s": "0.5",
        **(settings or {}),
    }
    env = child_environment(overrides, clean=True)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])  # for benchkit.*
    settings = Settings(**overrides)  # type: ignore[arg-type]
    store_secrets.use(settings)  # this process stores the demo's credentials too
    stack = BenchStack(workdir, settings, env, valkey)
    try:
        stack.spawn("sim", [sys.executable, "-m", "worker.cli", "sim"])
        demo.wait_http(f"{settings.sim_base_url}/_sim/health", 30, "the simulator")
        sim_b_port = free_port()
        env_b = child_environment(
            {
                **overrides,
                "sim_port": str(sim_b_port),
                "sim_tls_port": str(free_port()),
                "data_dir": str(workdir / ".data-sim-b"),
            },
            clean=True,
        )
        stack.sim_b_url = f"http://127.0.0.1:{sim_b_port}"
        stack.spawn("sim-b", [sys.executable, "-m", "worker.cli", "sim"], env_b)
        demo.wait_http(f"{stack.sim_b_url}/_sim/health", 30, "the second simulator")
        stack.spawn("api", [sys.executable, "-m", "worker.cli", "api"])
        demo.wait_http(f"{settings.api_base_url}/healthz", 30, "the API")
        stack.spawn("beat", [sys.executable, "-m", "worker.cli", "beat"])
        # The workers start together (each takes a second or two to boot its pool).
        workers = [
            stack.spawn_worker("transactional", "transactional"),
            stack.spawn_worker("bulk", "bulk", nice=BULK_NICE),
            stack.spawn_worker("webhooks", "webhooks", "--idle"),  # it gives way to every send
        ]
        for proc in workers:
            wait_worker(proc)
        stack.key = stack.run(demo.provision, settings)
        stack.otp_key = stack.run(_provision_otp, settings, stack.sim_b_url)
        yield stack
    finally:
        stack.stop_all()
        valkey.stop()


async def _provision_otp(redis: Redis, settings: Settings, sim_url: str) -> str:
    """A second account whose WhatsApp number lives on the second simulator."""
    await accounts.create_account(redis, OTP_ACCOUNT)
    async with httpx.AsyncClient(base_url=sim_url, timeout=5) as client:
        (
            await client.put(
                f"/_sim/whatsapp/numbers/{OTP_NUMBER_ID}",
                json={
                    "waba_id": OTP_WABA_ID,
                    "access_token": OTP_TOKEN,
                    "app_secret": OTP_SECRET,
                    "webhook_url": f"{settings.api_base_url}/webhooks/whatsapp",
                },
            )
        ).raise_for_status()
        (
            await client.post(
                "/_sim/whatsapp/templates",
                json=[{"waba_id": OTP_WABA_ID, **t} for t in demo.TEMPLATES],
            )
        ).raise_for_status()
    await configure_whatsapp(
        redis,
        settings,
        OTP_ACCOUNT,
        phone_number_id=OTP_NUMBER_ID,
        waba_id=OTP_WABA_ID,
        access_token=OTP_TOKEN,
        app_secret=OTP_SECRET,
        verify_token=None,
        base_url=sim_url,
    )
    await sync_templates(redis, settings, OTP_ACCOUNT)
    secret, _ = await accounts.create_key(redis, OTP_ACCOUNT, list(Scope))
    return secret


async def seed_contacts(
    redis: Redis,
    account: str,
    tag: str,
    count: int,
    *,
    fcm: bool = False,
    apns: bool = False,
    phone: bool = False,
    zones: Sequence[str] = (),
    chunk: int = 5000,
) -> None:
    """Contacts written straight in the store's layout (what an import leaves), fast:
    the bench measures sending, not importing (`dispatch contacts import` has its own).
    ``zones``: the contacts' ``timezone`` attributes, in turn."""
    now = time.time()
    for start in range(0, count, chunk):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(count, start + chunk)):
                cid = f"{tag}-{i:07d}"
                values = {"id": cid, "created_at": now, "updated_at": now, "name": f"N{i}"}
                if phone:
                    values["phone"] = f"+91{9_000_000_000 + i}"
                if zones:
                    values["attr:timezone"] = json.dumps(zones[i % len(zones)])
                pipe.hset(keys.contact(account, cid), mapping=values)  # type: ignore[arg-type]
                pipe.zadd(keys.contacts(account), {cid: now + i * 1e-6})
                pipe.zadd(keys.tag_members(account, tag), {cid: 0})
                pipe.sadd(keys.contact_tags(account, cid), tag)
                members = []
                if fcm:
                    members.append(f"fcm:{tag}{i:07d}:APA91b-bench-device-token")
                if apns:
                    members.append(f"apns:{abs(hash(tag)) % 10**6:06d}{i:058x}")
                for m in members:
                    pipe.sadd(keys.contact_push_tokens(account, cid), m)
                    pipe.hset(
                        keys.push_token(account, m),
                        mapping={
                            "platform": m.split(":", 1)[0],
                            "contact": cid,
                            "registered_at": now,
                        },
                    )
                    pipe.sadd(keys.push_tokens(account), m)
            await pipe.execute()
