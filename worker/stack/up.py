"""``dispatch up``: the whole stack in the foreground, stopped together on Ctrl-C; a child
that exits is started again, and a crash-looping one stops the stack."""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from rich.console import Console

from worker.config import Settings, child_environment
from worker.masking import redacted_url
from worker.services.provisioning import redis_session
from worker.stack import demo
from worker.stack.processes import (
    Child,
    EmbeddedValkey,
    ProcessError,
    Supervisor,
    exit_reason,
    port_free,
)
from worker.stack.restart_policy import RestartPolicy
from worker.store import restarts as child_restarts
from worker.store import secrets as store_secrets
from worker.store.client import create_sync_redis

# Children run as `python -m worker.cli …`; stale ones are recognised by this.
CHILD_MARK = "worker.cli"


def _spawn(
    supervisor: Supervisor,
    name: str,
    env: dict[str, str],
    *args: str,
    serves_others: bool = False,
) -> None:
    """Start ``python -m worker.cli <args>`` as the child ``name``."""
    hint = (
        f"Its output is above (lines starting '{name} |'); to watch it fail on its own, "
        f"run: dispatch {shlex.join(args)}"
    )
    argv = [sys.executable, "-m", CHILD_MARK, *args]
    supervisor.spawn(name, argv, env, hint, serves_others=serves_others)


def _start_valkey(supervisor: Supervisor, valkey: EmbeddedValkey) -> None:
    def launch() -> subprocess.Popen[bytes]:
        try:
            valkey.start()
        except ProcessError:
            # One that came up too slowly must not go on running unsupervised.
            valkey.stop()
            raise
        assert valkey.process is not None
        return valkey.process

    hint = (
        f"See its log, {valkey.logfile}; check the free disk space and the append-only "
        f"file in {valkey.data_dir}/appendonlydir."
    )
    supervisor.adopt("valkey", launch, valkey.pidfile, group=False, hint=hint, serves_others=True)


def _restart_reporter(settings: Settings) -> Callable[[list[Child]], bool]:
    """Writes the children's restarts where `dispatch status` reads them."""
    client = create_sync_redis(settings)

    def report(children: list[Child]) -> bool:
        rows = [
            child_restarts.ChildRestarts(
                c.name, c.restarts, c.last_exit_code, exit_reason(c.last_exit_code), c.last_exit_at
            )
            for c in children
            if c.last_exit_code is not None and c.last_exit_at is not None
        ]
        try:
            child_restarts.write(client, rows)
        except redis.RedisError:
            return False  # Valkey itself restarting, say: the supervisor tries again
        return True

    return report


def _start_store(supervisor: Supervisor, settings: Settings, console: Console) -> Settings:
    """The embedded Valkey, unless Redis is elsewhere; returns the settings that point at
    the store, where the restarts of the children are recorded from now on."""
    if settings.uses_embedded_redis:
        valkey = EmbeddedValkey(
            settings.data_dir,
            settings.embedded_redis_port,
            password=_embedded_password(settings),
            maxmemory=settings.redis_maxmemory,
        )
        where = redacted_url(valkey.url)
        console.print(f"starting embedded Valkey on {where} (data in {settings.data_dir}/)")
        _start_valkey(supervisor, valkey)
        settings = settings.model_copy(update={"redis_url": valkey.url})
    supervisor.report = _restart_reporter(settings)
    supervisor.report_restarts()  # clears what an earlier run recorded
    return settings


def _wait_worker(settings: Settings, timeout_s: float) -> None:
    from worker.runtime.celery_app import create_celery

    celery = create_celery(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if celery.control.ping(timeout=0.5):
                return
        raise ProcessError(f"no worker answered within {timeout_s:.0f}s")
    finally:
        celery.close()


async def _provision(settings: Settings) -> str:
    async with redis_session(settings) as redis:
        return await demo.provision(redis, settings)


def _embedded_password(settings: Settings) -> str:
    """The embedded Valkey's password: made once (owner-only file), so that another user
    of the machine cannot read or write the store through its port."""
    path = settings.embedded_redis_password_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


@dataclass(frozen=True)
class _Plan:
    """What this run starts beyond the fixed children, decided before anything starts."""

    with_demo: bool
    flower_auth: str | None  # None: Flower is not started
    metrics_ports: dict[str, int]  # worker group -> its /metrics port


def _plan(settings: Settings, *, with_demo: bool) -> _Plan:
    flower_auth = (
        settings.flower_basic_auth.get_secret_value() if settings.flower_basic_auth else None
    )
    if flower_auth is None and with_demo:
        # Flower shows every task: never without a login, but a demo should not need setup.
        flower_auth = f"demo:{secrets.token_urlsafe(12)}"
    metrics_ports = {
        "worker": settings.metrics_port_base + 1,
        "bulk": settings.metrics_port_base + 2,
        "webhooks": settings.metrics_port_base + 3,
    }
    return _Plan(with_demo, flower_auth, metrics_ports)


def _ports_free(settings: Settings, plan: _Plan, console: Console) -> bool:
    """Every port the stack will listen on, checked up front: a clash found after Valkey
    and the workers are up would leave a half-started stack to explain."""
    ports = [(settings.api_host, settings.api_port, "DISPATCH_API_PORT")]
    if plan.flower_auth is not None:
        ports.append((settings.flower_host, settings.flower_port, "DISPATCH_FLOWER_PORT"))
    for port in plan.metrics_ports.values():
        ports.append((settings.metrics_host, port, "DISPATCH_METRICS_PORT_BASE"))
    if plan.with_demo:
        ports.append((settings.sim_host, settings.sim_port, "DISPATCH_SIM_PORT"))
        ports.append((settings.sim_host, settings.sim_tls_port, "DISPATCH_SIM_TLS_PORT"))
    for host, port, env_name in ports:
        if not port_free(host, port):
            console.print(
                f"[red]port {port} on {host} is in use[/]: stop what holds it or set {env_name}"
            )
            return False
    return True


def _start_children(supervisor: Supervisor, settings: Settings, plan: _Plan) -> None:
    """The simulator (demo), the workers, Flower, beat and the API, in the order each needs
    the one before; returns once the API answers and a worker replies to a ping."""
    overrides = {"redis_url": settings.redis_url} if settings.redis_url else {}
    if settings.log_json is None and sys.stderr.isatty():
        overrides["log_json"] = "false"  # readable lines in this terminal; JSON when piped
    env = child_environment(overrides)
    flower_env = child_environment(
        {**overrides, "flower_basic_auth": plan.flower_auth} if plan.flower_auth else overrides
    )
    if plan.with_demo:
        # Workers in their warm shutdown may still be sending to it.
        _spawn(supervisor, "sim", env, "sim", serves_others=True)
        demo.wait_http(f"{settings.sim_base_url}/_sim/health", 30, "the simulator")
    metrics = ("--metrics-port", str(plan.metrics_ports["worker"]))
    _spawn(supervisor, "worker", env, "worker", *metrics)
    # Campaign jobs have workers of their own, so that an OTP never queues behind them.
    bulk = ("--queues", "bulk", "--nice", "10", "--metrics-port", str(plan.metrics_ports["bulk"]))
    _spawn(supervisor, "bulk", env, "worker", *bulk)
    # Event webhooks at the idle priority: under a campaign that fills the CPU they wait
    # for it (and catch up after) rather than slow the sending (docs/webhooks.md).
    hooks = ["--queues", "webhooks", "--idle"]
    hooks += ["--metrics-port", str(plan.metrics_ports["webhooks"])]
    _spawn(supervisor, "webhooks", env, "worker", *hooks)
    if plan.flower_auth is not None:
        _spawn(supervisor, "flower", flower_env, "flower")
    _spawn(supervisor, "beat", env, "beat")
    _spawn(supervisor, "api", env, "api")
    demo.wait_http(f"{settings.api_base_url}/healthz", 30, "the API")
    _wait_worker(settings, 60)


def _run_demo_examples(settings: Settings, console: Console) -> None:
    """Provision the demo account and send the spec's examples, showing each as curl."""
    key = asyncio.run(_provision(settings))
    for name, path, body in demo.EXAMPLES:
        # Plain text, no box: the command is meant to be copied and pasted.
        console.rule(f"the spec's {name} example, against this stack")
        console.print(
            demo.curl_example(settings, key, path, body),
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
        demo.send_example(settings, key, path, body, console)
    console.rule(f"key saved in {demo.demo_env_path(settings)}")


def _announce(settings: Settings, plan: _Plan, console: Console, started: float) -> None:
    """Where everything listens, and how to log in to Flower: the last lines before the
    children's own output takes over the terminal."""
    if plan.flower_auth is not None:
        user, _, password = plan.flower_auth.partition(":")
        shown = password if settings.flower_basic_auth is None else "(DISPATCH_FLOWER_BASIC_AUTH)"
        console.print(
            f"Flower on http://{settings.flower_host}:{settings.flower_port} "
            f"(user [bold]{user}[/], password [bold]{shown}[/])",
            highlight=False,
        )
    else:
        console.print("[yellow]Flower not started:[/] set DISPATCH_FLOWER_BASIC_AUTH=user:password")
    console.print(
        "metrics: "
        + ", ".join(
            f"http://{settings.metrics_host}:{p}/metrics ({name})"
            for name, p in plan.metrics_ports.items()
        )
        + f", {settings.api_base_url}/metrics (api)",
        highlight=False,
    )
    console.print(
        f"[bold green]ready[/] in {time.monotonic() - started:.1f}s: API on "
        f"{settings.api_base_url}"
        + (f", simulator on {settings.sim_base_url}" if plan.with_demo else "")
        + " — Ctrl-C stops everything"
    )


def _supervise(supervisor: Supervisor, console: Console) -> int:
    """Restart children that exit until Ctrl-C (0) or a crash loop (1)."""
    looping = supervisor.wait()
    if looping is None:
        return 0
    # Unwrapped: the command in the hint is meant to be copied.
    console.print(
        looping.crash_loop_message(),
        style="red",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return 1


def run(settings: Settings, *, with_demo: bool, console: Console) -> int:
    """Start the stack, supervise it until Ctrl-C or a crash loop, then stop every child.

    Returns the exit code: 0 after Ctrl-C, 1 when it could not start or a child crash-looped,
    2 when a port it needs is taken (nothing has been started then).
    """
    started = time.monotonic()
    # Provider credentials are stored encrypted: a local key, made once, owner-only.
    store_secrets.ensure_key_file(settings)
    policy = RestartPolicy.from_settings(settings)
    supervisor = Supervisor(settings.data_dir / "run", policy, console)
    stale = supervisor.stop_stale(CHILD_MARK)
    if stale:
        console.print(f"[yellow]stopped processes left by an earlier run:[/] {', '.join(stale)}")
    plan = _plan(settings, with_demo=with_demo)
    if not _ports_free(settings, plan, console):
        return 2

    code = 0
    try:
        settings = _start_store(supervisor, settings, console)
        _start_children(supervisor, settings, plan)
        if with_demo:
            _run_demo_examples(settings, console)
        _announce(settings, plan, console, started)
        code = _supervise(supervisor, console)
    except (ProcessError, RuntimeError) as exc:
        console.print(f"[red]could not start:[/] {exc}")
        code = 1
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping…")
        supervisor.stop_all()
        console.print("stopped")
    return code
