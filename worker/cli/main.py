"""``dispatch``: run the service's processes and administer accounts, keys and channels.

This module assembles the command: the processes (``up``, ``api``, ``worker``, ``beat``,
``sim``…) are here; each administration group lives in its own module beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Annotated

import typer
from redis.asyncio import Redis

from worker.cli.accounts import app as accounts_app
from worker.cli.automations import app as automations_app
from worker.cli.campaigns import app as campaigns_app
from worker.cli.channels import app as channels_app
from worker.cli.common import console, err, with_redis
from worker.cli.contacts import app as contacts_app
from worker.cli.deadletters import app as dlq_app
from worker.cli.keys import app as keys_app
from worker.cli.messages import app as messages_app
from worker.cli.secrets import app as secrets_app
from worker.cli.status import status_command
from worker.cli.templates import app as templates_app
from worker.cli.tokens import app as tokens_app
from worker.cli.webhooks import app as webhooks_app
from worker.config import Settings, get_settings
from worker.observe import logs, metrics_setup
from worker.stack.processes import lower_priority
from worker.store import keys

app = typer.Typer(
    help="multichannel-dispatch: WhatsApp and push notifications through Celery workers on Redis.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
# Registration order is the order `dispatch --help` lists them in (commands first).
app.command("status")(status_command)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(channels_app, name="channels")
app.add_typer(tokens_app, name="tokens")
app.add_typer(secrets_app, name="secrets")
app.add_typer(contacts_app, name="contacts")
app.add_typer(templates_app, name="templates")
app.add_typer(messages_app, name="messages")
app.add_typer(dlq_app, name="dlq")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(automations_app, name="automations")
app.add_typer(webhooks_app, name="webhooks")


def _logging(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_json)


# --- processes ------------------------------------------------------------------


@app.command()
def up(
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Also start the provider simulator, provision a 'demo' account and "
            "send the spec's WhatsApp example.",
        ),
    ] = False,
) -> None:
    """Start everything in the foreground; Ctrl-C stops every process it started.

    Embedded Valkey (unless DISPATCH_REDIS_URL is set), one worker and the API.

    A process that exits is started again; one that keeps exiting stops them all."""
    from worker.stack import up as up_module

    settings = get_settings()
    _logging(settings)
    raise typer.Exit(up_module.run(settings, with_demo=demo, console=console))


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Default: DISPATCH_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: DISPATCH_API_PORT.")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Serve the HTTP API (FastAPI on uvicorn)."""
    import uvicorn

    settings = get_settings()
    _logging(settings)
    # Every uvicorn process writes its counters where /metrics (in any of them) reads.
    metrics_setup.prepare(settings, f"api-{port or settings.api_port}")
    uvicorn.run(
        "worker.api.app:serve_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        access_log=access_log,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's lines go through our handler (JSON, masked) too
    )


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues to consume.")
    ] = "transactional",
    concurrency: Annotated[
        int | None,
        typer.Option(help="Prefork child processes. Default: DISPATCH_WORKER_CONCURRENCY."),
    ] = None,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork or solo.")] = "prefork",
    name: Annotated[str | None, typer.Option(help="Worker node name.")] = None,
    nice: Annotated[
        int,
        typer.Option(
            min=0,
            max=19,
            help="Lower CPU priority (Unix niceness) for this worker and its children: a "
            "`bulk` worker sharing a host with the API and the transactional worker gives "
            "way to them, so an OTP never waits behind a campaign for the CPU.",
        ),
    ] = 0,
    idle: Annotated[
        bool,
        typer.Option(
            "--idle",
            help="Run at the scheduler's idle priority (Linux SCHED_IDLE, niceness 19): only "
            "on CPU time the other processes leave, preempted as soon as one wakes. For the "
            "`webhooks` worker: events wait for a busy CPU (and catch up after) instead of "
            "slowing the sends.",
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve this worker group's Prometheus /metrics on this port (all its "
            "processes). Default: DISPATCH_WORKER_METRICS_PORT; 0: none.",
        ),
    ] = None,
) -> None:
    """Run a Celery worker that performs the sends."""
    settings = get_settings()
    _logging(settings)  # before Celery starts: its warnings at start-up are records too
    node = name or queues.split(",")[0]
    # Before anything imports prometheus_client: the pool's processes count into files here.
    metrics_setup.prepare(settings, f"worker-{node}")
    from worker.observe import metrics
    from worker.runtime.celery_app import app as celery

    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    if port:
        try:
            metrics.serve(port, settings.metrics_host)
        except OSError as exc:
            err.print(f"[red]cannot serve metrics on {settings.metrics_host}:{port}:[/] {exc}")
            raise typer.Exit(2) from exc
        celery.conf.dispatch_metrics_port = port
    if nice or idle:
        lower_priority(nice, idle=idle)
    # Celery's banner is for a terminal; in JSON mode every line is a JSON object.
    quiet = ["--quiet"] if logs.json_wanted(settings.log_json) else []
    argv = [
        *quiet,
        "worker",
        f"--queues={queues}",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        f"--pool={pool}",
        f"--loglevel={settings.log_level}",
        f"--hostname={node}@%h",
        # Mingle and gossip cost seconds at start and chatter on the broker for nothing here.
        "--without-mingle",
        "--without-gossip",
        "--events",
    ]
    celery.worker_main(argv)


@app.command("worker-alive")
def worker_alive(
    name: Annotated[str, typer.Argument(help="The worker's --name (default: its first queue).")],
) -> None:
    """Exit 0 if the worker group NAME on this host has a fresh heartbeat (written every 2 s
    from its consumer loop), 1 otherwise: a container health check that a hung consumer
    fails, where a process check would pass."""
    node = f"{name}@{socket.gethostname()}"

    async def action(redis: Redis, _: Settings) -> bool:
        return bool(await redis.exists(keys.worker_heartbeat(node)))

    if not with_redis(action):
        err.print(f"[red]no heartbeat from {node}[/]")
        raise typer.Exit(1)
    console.print(f"{node} alive")


@app.command()
def flower(
    host: Annotated[str | None, typer.Option(help="Default: DISPATCH_FLOWER_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: DISPATCH_FLOWER_PORT.")] = None,
) -> None:
    """Flower, Celery's web monitor, on the broker: workers, queues, every task with its
    state and timing. Behind basic auth (DISPATCH_FLOWER_BASIC_AUTH=user:password; there
    is no default). Task arguments are ids only: no phone number, token or text."""
    settings = get_settings()
    auth = settings.flower_basic_auth.get_secret_value() if settings.flower_basic_auth else ""
    user, _, password = auth.partition(":")
    generate = 'python3 -c "import secrets; print(secrets.token_urlsafe(18))"'
    if not user or not password:
        err.print(
            "[red]Flower needs a login:[/] set DISPATCH_FLOWER_BASIC_AUTH=user:password "
            "(there is no default password; `dispatch up --demo` makes one up and prints it; "
            f"make one with {generate})"
        )
        raise typer.Exit(2)
    if len(password) < FLOWER_MIN_PASSWORD or password.lower() in _WEAK_PASSWORDS:
        err.print(
            f"[red]Flower's password is too weak:[/] at least {FLOWER_MIN_PASSWORD} "
            f"characters, and not an example's; make one with {generate}"
        )
        raise typer.Exit(2)
    from worker.runtime.celery_app import app as celery

    # Flower reads FLOWER_* variables; on its command line the password would show in `ps`.
    os.environ["FLOWER_BASIC_AUTH"] = auth
    celery.start(
        [
            "flower",
            f"--address={host or settings.flower_host}",
            f"--port={port or settings.flower_port}",
            # A bounded history: Flower keeps every task it hears of in memory otherwise.
            f"--max_tasks={settings.flower_max_tasks}",
            "--purge_offline_workers=300",
        ]
    )


# Flower shows every task of every tenant: its login must not be guessable. The old
# example file's value is refused too, so a copied example never goes live.
FLOWER_MIN_PASSWORD = 12
_WEAK_PASSWORDS = {"change-me", "changeme", "change-me-please", "password123456", "admin"}


@app.command()
def beat() -> None:
    """Move delayed jobs (long retries, rate-limit waits) back onto the queue when due."""
    from worker.runtime import beat as beat_module

    settings = get_settings()
    _logging(settings)
    asyncio.run(beat_module.run(settings))


@app.command()
def sim(
    host: Annotated[str | None, typer.Option(help="Default: DISPATCH_SIM_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: DISPATCH_SIM_PORT.")] = None,
    tls_port: Annotated[
        int | None,
        typer.Option(help="HTTP/2 + TLS port for APNs and FCM. Default: DISPATCH_SIM_TLS_PORT."),
    ] = None,
) -> None:
    """Run the provider simulator (WhatsApp Graph API, Google OAuth2 + FCM, APNs)."""
    import uvicorn

    from worker.sim.app import create_sim_app

    settings = get_settings()
    _logging(settings)
    # The simulator stands in for remote servers with CPUs of their own. On a machine
    # shared with the workers it asks for a higher scheduling priority (best effort), so
    # that the arrival times it records are not the CPU contention of its neighbours.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    app = create_sim_app(
        tls_host=host or settings.sim_host,
        tls_port=tls_port or settings.sim_tls_port,
        ca_dir=settings.sim_ca_dir,
    )
    uvicorn.run(
        app,
        host=host or settings.sim_host,
        port=port or settings.sim_port,
        access_log=False,
        log_level="warning",
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
