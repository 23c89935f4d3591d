"""``dispatch``: run the service's processes and administer accounts, keys and channels."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.table import Table

from worker.cli.automations import app as automations_app
from worker.cli.campaigns import app as campaigns_app
from worker.cli.common import AccountOpt, console, err, when, with_redis
from worker.cli.status import status_command
from worker.config import Settings, get_settings
from worker.errors import DeliveryError
from worker.masking import mask_phone, mask_token
from worker.models import Scope
from worker.observe import logs, metrics_setup
from worker.services.importer import ImportReport
from worker.services.provisioning import (
    ChannelNotConfiguredError,
    configure_apns,
    configure_fcm,
    configure_whatsapp,
    sync_templates,
)
from worker.store import accounts, channels, deadletters, keys, messages, templates, tokens
from worker.store import secrets as store_secrets
from worker.store.enqueue import publish

app = typer.Typer(
    help="multichannel-dispatch: WhatsApp and push notifications through Celery workers on Redis.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
accounts_app = typer.Typer(
    help="Accounts (tenants). Each has its own keys, channels and data.", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys (msk_…) and their scopes.", no_args_is_help=True)
channels_app = typer.Typer(help="Provider credentials per account.", no_args_is_help=True)
whatsapp_app = typer.Typer(help="WhatsApp Business Cloud API.", no_args_is_help=True)
templates_app = typer.Typer(help="WhatsApp message templates.", no_args_is_help=True)
messages_app = typer.Typer(help="Sends and what happened to them.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Dead letters: sends that ran out of attempts or age.", no_args_is_help=True
)
app.command("status")(status_command)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(channels_app, name="channels")
channels_app.add_typer(whatsapp_app, name="whatsapp")
fcm_app = typer.Typer(help="Firebase Cloud Messaging (Android, web).", no_args_is_help=True)
apns_app = typer.Typer(help="Apple Push Notification service (iOS, macOS).", no_args_is_help=True)
tokens_app = typer.Typer(help="Device tokens and their delivery counters.", no_args_is_help=True)
contacts_app = typer.Typer(help="Contacts: import from CSV.", no_args_is_help=True)
channels_app.add_typer(fcm_app, name="fcm")
channels_app.add_typer(apns_app, name="apns")
app.add_typer(tokens_app, name="tokens")
secrets_app = typer.Typer(
    help="The key that encrypts provider credentials at rest.", no_args_is_help=True
)
app.add_typer(secrets_app, name="secrets")
app.add_typer(contacts_app, name="contacts")
app.add_typer(templates_app, name="templates")
app.add_typer(messages_app, name="messages")
app.add_typer(dlq_app, name="dlq")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(automations_app, name="automations")

RateOpt = Annotated[
    float | None,
    typer.Option(
        min=0.1,
        help="Sends per second for this credential across all workers "
        "(default: the DISPATCH_*_RATE_PER_S setting).",
    ),
]
CaFileOpt = Annotated[
    Path | None,
    typer.Option(exists=True, dir_okay=False, help="CA bundle to trust for --endpoint."),
]


def _logging(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_json)


_with_redis = with_redis
_when = when


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
    if nice:
        os.nice(nice)
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


# --- accounts and keys ------------------------------------------------------------


@accounts_app.command("create")
def accounts_create(
    name: Annotated[str, typer.Argument(help="Account name: a-z, 0-9, '_' and '-'.")],
) -> None:
    """Create an account and print its first API key (all scopes). The key is shown once."""

    async def action(redis: Redis, _: Settings) -> str:
        try:
            await accounts.create_account(redis, name)
        except accounts.AccountExistsError:
            err.print(
                f"[red]account {name!r} already exists[/]; "
                f"add a key with `dispatch keys create --account {name}`"
            )
            raise typer.Exit(1) from None
        secret, _record = await accounts.create_key(redis, name, list(Scope))
        return secret

    secret = _with_redis(action)
    err.print(f"account [bold]{name}[/] created. Its API key (shown only now, store it safely):")
    console.print(secret)


@accounts_app.command("list")
def accounts_list() -> None:
    """List accounts and which channels each has configured."""

    async def action(redis: Redis, _: Settings) -> list[tuple[str, bool, set[str]]]:
        return [
            (
                acc,
                await channels.whatsapp_configured(redis, acc),
                await channels.push_platforms(redis, acc),
            )
            for acc in await accounts.list_accounts(redis)
        ]

    table = Table("account", "whatsapp", "fcm", "apns")
    for acc, wa, push in _with_redis(action):
        table.add_row(
            acc, *("configured" if on else "-" for on in (wa, "fcm" in push, "apns" in push))
        )
    console.print(table)


@keys_app.command("create")
def keys_create(
    account: AccountOpt,
    scope: Annotated[
        list[Scope] | None, typer.Option("--scope", "-s", help="Repeat for several; default: send.")
    ] = None,
) -> None:
    """Create an API key; the key is printed once and stored only as a hash."""

    async def action(redis: Redis, _: Settings) -> str:
        secret, record = await accounts.create_key(redis, account, scope or [Scope.SEND])
        err.print(
            f"key [bold]{record.id}[/] for {account} with scopes "
            f"{', '.join(s.value for s in record.scopes)} (shown only now):"
        )
        return secret

    console.print(_with_redis(action))


@keys_app.command("list")
def keys_list(
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only this account.")
    ] = None,
) -> None:
    """List keys (id, prefix, scopes, state); secrets are never shown."""

    async def action(redis: Redis, _: Settings) -> Table:
        table = Table("id", "account", "key", "scopes", "created", "state")
        for r in await accounts.list_keys(redis, account):
            table.add_row(
                r.id,
                r.account,
                f"{r.prefix}…",
                ",".join(s.value for s in r.scopes)
                + (" (legacy send: campaigns too)" if r.legacy_send else ""),
                _when(r.created_at),
                f"revoked {_when(r.revoked_at)}" if r.revoked_at else "active",
            )
        if any(r.legacy_send for r in await accounts.list_keys(redis, account)):
            table.caption = (
                "A legacy send key may also manage campaigns (made before the campaigns scope): "
                "create a send-only key for web apps and revoke it."
            )
        return table

    console.print(_with_redis(action))


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")]) -> None:
    """Revoke a key: requests with it get 401 from now on."""

    async def action(redis: Redis, _: Settings) -> None:
        record = await accounts.revoke_key(redis, key_id)
        if record is None:
            err.print(f"[red]no key with id {key_id}[/] (see `dispatch keys list`)")
            raise typer.Exit(1)
        err.print(f"key {key_id} of {record.account} revoked at {_when(record.revoked_at)}")

    _with_redis(action)


# --- channels and templates --------------------------------------------------------


@whatsapp_app.command("configure")
def whatsapp_configure(
    account: AccountOpt,
    phone_number_id: Annotated[str, typer.Option(help="The sender's phone number id.")],
    waba_id: Annotated[str, typer.Option(help="WhatsApp Business Account id (for templates).")],
    access_token: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, help="System-user access token; prompted if omitted."
        ),
    ],
    app_secret: Annotated[
        str,
        typer.Option(
            prompt="App secret (verifies webhook signatures; empty to skip)",
            prompt_required=False,
            hide_input=True,
            help="Meta app secret, to verify webhook signatures. Give the option without a "
            "value to be prompted for it (not echoed): a value on the command line shows in "
            "`ps` and in the shell's history.",
        ),
    ] = "",
    verify_token: Annotated[
        str | None, typer.Option(help="Token for Meta's webhook handshake; generated if omitted.")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="Graph API base URL (the simulator's, for a trial). "
            "Default: DISPATCH_WHATSAPP_BASE_URL."
        ),
    ] = None,
    api_version: Annotated[str | None, typer.Option(help="Graph API version, e.g. v21.0.")] = None,
    rate_per_s: RateOpt = None,
) -> None:
    """Store the account's WhatsApp credentials. Secrets are never printed back."""

    async def action(redis: Redis, settings: Settings) -> None:
        config = await configure_whatsapp(
            redis,
            settings,
            account,
            phone_number_id=phone_number_id,
            waba_id=waba_id,
            access_token=access_token,
            app_secret=app_secret or None,
            verify_token=verify_token,
            base_url=base_url,
            api_version=api_version,
            rate_per_s=rate_per_s,
        )
        err.print(
            f"WhatsApp configured for [bold]{account}[/]: number {config.phone_number_id}, "
            f"WABA {config.waba_id}, {config.base_url} {config.api_version}"
        )
        if verify_token is None and config.verify_token is not None:
            err.print(
                "webhook verify token (give it to Meta with the callback URL /webhooks/whatsapp):"
            )
            console.print(config.verify_token.get_secret_value())

    _with_redis(action)


@whatsapp_app.command("show")
def whatsapp_show(account: AccountOpt) -> None:
    """Show the account's WhatsApp settings, secrets masked."""

    async def action(redis: Redis, _: Settings) -> None:
        await accounts.require_account(redis, account)
        config = await channels.load_whatsapp(redis, account)
        if config is None:
            err.print(f"WhatsApp is not configured for {account}")
            raise typer.Exit(1)
        table = Table("setting", "value", show_header=False)
        table.add_row("phone number id", config.phone_number_id)
        table.add_row("WABA id", config.waba_id)
        table.add_row("base URL", f"{config.base_url} ({config.api_version})")
        table.add_row("access token", mask_token(config.access_token.get_secret_value()))
        table.add_row("app secret", "set" if config.app_secret else "not set (webhooks refused)")
        console.print(table)

    _with_redis(action)


@fcm_app.command("configure")
def fcm_configure(
    account: AccountOpt,
    service_account: Annotated[
        Path,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="The Firebase service-account key file (JSON); the project id is read from it.",
        ),
    ],
    endpoint: Annotated[
        str | None,
        typer.Option(help="FCM base URL instead of https://fcm.googleapis.com (a simulator's)."),
    ] = None,
    ca_file: CaFileOpt = None,
    rate_per_s: RateOpt = None,
) -> None:
    """Store the account's FCM credentials. The private key is never printed back."""

    async def action(redis: Redis, _: Settings) -> None:
        config = await configure_fcm(
            redis,
            account,
            service_account.read_text(),
            endpoint=endpoint,
            ca_file=str(ca_file.resolve()) if ca_file else None,
            rate_per_s=rate_per_s,
        )
        err.print(
            f"FCM configured for [bold]{account}[/]: project {config.project_id}"
            + (f" via {config.endpoint}" if config.endpoint else "")
        )

    _with_redis(action)


@apns_app.command("configure")
def apns_configure(
    account: AccountOpt,
    key_file: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, readable=True, help="The AuthKey_XXXXXXXXXX.p8 file."
        ),
    ],
    key_id: Annotated[str, typer.Option(help="The key's id (10 characters).")],
    team_id: Annotated[str, typer.Option(help="Your Apple developer team id.")],
    topic: Annotated[str, typer.Option(help="The app's bundle id, e.g. com.example.app.")],
    sandbox: Annotated[
        bool, typer.Option(help="Use Apple's development servers (apps built for development).")
    ] = False,
    endpoint: Annotated[
        str | None, typer.Option(help="host:port instead of Apple's servers (a simulator's).")
    ] = None,
    ca_file: CaFileOpt = None,
    rate_per_s: RateOpt = None,
) -> None:
    """Store the account's APNs token credentials. The key is never printed back."""

    async def action(redis: Redis, _: Settings) -> None:
        config = await configure_apns(
            redis,
            account,
            key_pem=key_file.read_text(),
            key_id=key_id,
            team_id=team_id,
            topic=topic,
            sandbox=sandbox,
            endpoint=endpoint,
            ca_file=str(ca_file.resolve()) if ca_file else None,
            rate_per_s=rate_per_s,
        )
        where = config.endpoint or ("sandbox" if config.sandbox else "production")
        err.print(
            f"APNs configured for [bold]{account}[/]: topic {config.topic}, "
            f"key {config.key_id}, team {config.team_id} ({where})"
        )

    _with_redis(action)


@tokens_app.command("stats")
def tokens_stats(
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only this account.")
    ] = None,
    problems: Annotated[
        bool, typer.Option("--problems", help="Only tokens that failed or were pruned.")
    ] = False,
    stale: Annotated[
        bool,
        typer.Option(
            "--stale",
            help="Only active tokens with no delivery nor registration in --days days "
            "(FCM calls a token stale after a month without activity).",
        ),
    ] = False,
    days: Annotated[
        float | None,
        typer.Option(
            help="With --stale: idle for this many days. Default: DISPATCH_PUSH_TOKEN_STALE_DAYS."
        ),
    ] = None,
) -> None:
    """Every device token: delivered, failed, last activity, last error, state. Tokens
    are masked."""

    async def action(redis: Redis, settings: Settings) -> Table:
        names = [account] if account else await accounts.list_accounts(redis)
        idle_days = days if days is not None else settings.push_token_stale_days
        stale_before = time.time() - idle_days * 86400
        table = Table(
            "account",
            "contact",
            "platform",
            "token",
            "delivered",
            "failed",
            "last success",
            "last active",
            "last error",
            "state",
        )
        totals = [0, 0, 0, 0, 0]
        for acc in names:
            await accounts.require_account(redis, acc)
            for t in await tokens.load_many(redis, acc, await tokens.all_members(redis, acc)):
                active_at = tokens.last_activity(t)
                is_stale = t.active and (active_at or 0) < stale_before
                totals[0] += 1
                totals[1] += t.delivered
                totals[2] += t.failed
                totals[3] += 0 if t.active else 1
                totals[4] += 1 if is_stale else 0
                if problems and t.active and not t.failed:
                    continue
                if stale and not is_stale:
                    continue
                state = "active" if t.active else f"pruned: {t.prune_reason or '?'}"
                table.add_row(
                    acc,
                    t.contact or "-",
                    t.platform,
                    mask_token(t.token),
                    str(t.delivered),
                    str(t.failed),
                    _when(t.last_success_at),
                    _when(active_at),
                    t.last_error or "-",
                    "stale" if is_stale else state,
                )
        table.caption = (
            f"{totals[0]} token(s): {totals[1]} delivered, {totals[2]} failed, "
            f"{totals[3]} pruned, {totals[4]} stale (idle {idle_days:g}+ days); tokens idle "
            f"{settings.push_token_max_idle_days:g}+ days are no longer sent to"
        )
        return table

    console.print(_with_redis(action))


@tokens_app.command("expire")
def tokens_expire(
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only this account.")
    ] = None,
) -> None:
    """Stop sending to tokens idle past DISPATCH_PUSH_TOKEN_MAX_IDLE_DAYS now (the beat
    does it every hour)."""

    async def action(redis: Redis, settings: Settings) -> int:
        max_idle_s = settings.push_token_max_idle_days * 86400
        if not max_idle_s:
            err.print("DISPATCH_PUSH_TOKEN_MAX_IDLE_DAYS is 0: tokens never expire")
            raise typer.Exit(2)
        names = [account] if account else await accounts.list_accounts(redis)
        count = 0
        for acc in names:
            await accounts.require_account(redis, acc)
            count += len(await tokens.expire_inactive(redis, acc, time.time(), max_idle_s))
        return count

    expired = _with_redis(action)
    console.print(f"{expired} token(s) idle too long: no longer sent to")


@secrets_app.command("init")
def secrets_init(
    print_only: Annotated[
        bool,
        typer.Option(
            "--print",
            help="Print a new key (for DISPATCH_SECRET_KEY, in .env or a secret store) "
            "instead of writing the local key file.",
        ),
    ] = False,
) -> None:
    """Make the key provider credentials are encrypted with: <data dir>/secret.key
    (owner-only), unless DISPATCH_SECRET_KEY is set. `dispatch up` makes it too."""
    from cryptography.fernet import Fernet

    if print_only:
        print(Fernet.generate_key().decode())
        return
    settings = get_settings()
    if settings.secret_key is not None:
        err.print("DISPATCH_SECRET_KEY is set: that key is used, no file is needed")
        return
    path = store_secrets.key_file(settings)
    existed = path.exists()
    store_secrets.ensure_key_file(settings)
    err.print(f"{'kept the existing' if existed else 'made a new'} key in {path}")


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Encrypt every account's stored credentials again with the first key of
    DISPATCH_SECRET_KEY (plaintext ones from before encryption too). To change keys: put
    the new key first and the old one after it (comma-separated), restart, run this, then
    drop the old key."""

    async def action(redis: Redis, _: Settings) -> tuple[int, int]:
        names = await accounts.list_accounts(redis)
        return len(names), sum([await channels.rotate(redis, name) for name in names])

    try:
        count, rewritten = _with_redis(action)
    except store_secrets.SecretKeyError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    console.print(f"{rewritten} channel(s) of {count} account(s) encrypted with the current key")


@templates_app.command("sync")
def templates_sync(account: AccountOpt) -> None:
    """Fetch every template of the account's WABA from the Graph API (all pages)."""

    async def action(redis: Redis, settings: Settings) -> int:
        await accounts.require_account(redis, account)
        try:
            return len(await sync_templates(redis, settings, account))
        except ChannelNotConfiguredError:
            err.print(
                f"[red]WhatsApp is not configured for {account}[/]; "
                "run `dispatch channels whatsapp configure` first"
            )
            raise typer.Exit(1) from None
        except DeliveryError as exc:
            err.print(
                f"[red]the Graph API refused the template list:[/] {exc.reason} "
                f"({exc.provider_code or exc.code})"
            )
            raise typer.Exit(1) from None

    count = _with_redis(action)
    err.print(f"{count} template(s) synced for {account}")


@templates_app.command("list")
def templates_list(account: AccountOpt) -> None:
    """List the templates known for an account (as of the last sync)."""

    async def action(redis: Redis, _: Settings) -> Table:
        await accounts.require_account(redis, account)
        table = Table("name", "language", "category", "status", "body parameters")
        for t in await templates.list_templates(redis, account):
            table.add_row(t.name, t.language, t.category, t.status, str(t.body_parameters))
        return table

    console.print(_with_redis(action))


@messages_app.command("show")
def messages_show(
    account: AccountOpt,
    message_id: Annotated[str, typer.Argument(help="The send's id (msg_…).")],
) -> None:
    """Show a send: its state, the provider's id and status, and every attempt."""

    async def action(redis: Redis, _: Settings) -> None:
        await accounts.require_account(redis, account)
        message = await messages.load(redis, account, message_id)
        if message is None:
            err.print(f"[red]no message {message_id} for {account}[/]")
            raise typer.Exit(1)
        summary = Table("field", "value", show_header=False)
        summary.add_row("status", message.status.value)
        if message.to:
            summary.add_row("to", mask_phone(message.to))
        summary.add_row(
            "template",
            f"{message.template_name} ({message.language})"
            if message.template_name
            else "free-form text",
        )
        summary.add_row("provider id", message.provider_message_id or "-")
        summary.add_row("delivery status", message.delivery_status or "-")
        summary.add_row("error", f"{message.error} ({message.code})" if message.error else "-")
        summary.add_row("created", _when(message.created_at))
        console.print(summary)
        attempts = Table("#", "at", "outcome", "latency ms", "code", "detail")
        for a in await messages.load_attempts(redis, account, message_id):
            detail = a.provider_message_id or a.error or ""
            if a.retry_in_s is not None:
                detail += f" (retry in {a.retry_in_s:.1f}s)"
            attempts.add_row(
                str(a.attempt),
                _when(a.at),
                a.outcome,
                f"{a.latency_ms:.0f}" if a.latency_ms is not None else "-",
                a.provider_code or a.code or "",
                detail,
            )
        console.print(attempts)

    _with_redis(action)


@dlq_app.command("list")
def dlq_list(
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only this account.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many per account, newest first.")] = 50,
) -> None:
    """List dead letters with their last error."""

    async def action(redis: Redis, _: Settings) -> Table:
        table = Table(
            "account", "id", "channel", "to / contact", "dead since", "attempts", "last error"
        )
        total = 0
        for acc in [account] if account else await accounts.list_accounts(redis):
            await accounts.require_account(redis, acc)
            items, count = await deadletters.page(redis, acc, 0, limit)
            total += count
            for m in items:
                target = mask_phone(m.to) if m.to else (m.contact_id or "-")
                table.add_row(
                    acc,
                    m.id,
                    m.channel.value,
                    target,
                    _when(m.dead_lettered_at),
                    str(m.attempts),
                    f"{m.error or '-'} ({m.code or '?'})",
                )
        table.caption = f"{total} dead letter(s)"
        return table

    console.print(_with_redis(action))


@dlq_app.command("show")
def dlq_show(
    account: AccountOpt,
    message_id: Annotated[str, typer.Argument(help="The send's id (msg_…).")],
) -> None:
    """Show a dead letter: the send, and every attempt with its error."""
    messages_show(account, message_id)


@dlq_app.command("redrive")
def dlq_redrive(
    account: AccountOpt,
    message_ids: Annotated[list[str] | None, typer.Argument(help="Ids to send again.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter of the account.")] = False,
) -> None:
    """Send dead letters again with a fresh budget (push: only the devices that ran out)."""

    if not message_ids and not all_:
        err.print("[red]name the ids to redrive, or pass --all[/]")
        raise typer.Exit(2)

    async def action(redis: Redis, _: Settings) -> tuple[int, list[str]]:
        await accounts.require_account(redis, account)
        ids = list(message_ids or [])
        if all_:
            items, _total = await deadletters.page(redis, account, 0, 100_000)
            ids = [m.id for m in items]
        done, missing = 0, []
        for message_id in ids:
            message = await deadletters.redrive(redis, account, message_id)
            if message is None:
                missing.append(message_id)
                continue
            await publish(redis, messages.task_name(message), account, message.id)
            done += 1
        return done, missing

    done, missing = _with_redis(action)
    err.print(f"{done} dead letter(s) queued again")
    if missing:
        err.print(f"[yellow]not dead letters of {account}:[/] {', '.join(missing)}")
        raise typer.Exit(1)


@contacts_app.command("import")
def contacts_import(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV with a header row."),
    ],
    account: AccountOpt,
    batch: Annotated[
        int, typer.Option(min=1, max=10_000, help="Contacts per Redis round trip.")
    ] = 500,
) -> None:
    """Import contacts from a CSV file, streaming (a million rows are fine).

    Columns: id, phone, email, name, fcm_token, apns_token, tags (separated by ; or |);
    any other column becomes an attribute. Existing contacts are merged, as with PATCH.
    Exit code: 0 when every row was imported, 1 when some were skipped, 2 on a bad file."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from worker.services.importer import COLUMNS, Importer, contact_from_row

    size = file.stat().st_size
    consumed = 0

    def lines() -> Iterator[str]:
        nonlocal consumed
        with file.open("rb") as handle:
            for number, raw in enumerate(handle):
                consumed += len(raw)
                text = raw.decode("utf-8", errors="replace")
                yield text.removeprefix("\ufeff") if number == 0 else text

    reader = csv.DictReader(lines())
    header = {str(name).strip().lower() for name in reader.fieldnames or []}
    if not header & (COLUMNS - {"tags", "name"}):
        err.print(
            f"[red]{file} does not look like a contacts CSV[/]: its header needs one of "
            "id, phone, email, fcm_token, apns_token"
        )
        raise typer.Exit(2)

    async def action(redis: Redis, _: Settings) -> ImportReport:
        await accounts.require_account(redis, account)
        importer = Importer(redis, account, contact_from_row, batch)
        columns = [BarColumn(), DownloadColumn(), TimeRemainingColumn()]
        with Progress(*Progress.get_default_columns()[:1], *columns, console=err) as progress:
            task = progress.add_task(f"importing {file.name}", total=size)
            for row in reader:
                await importer.add(row)
                if importer.report.rows % 1000 == 0:
                    progress.update(task, completed=consumed)
            report = await importer.finish()
            progress.update(task, completed=size)
        return report

    report = _with_redis(action)
    summary = Table("rows", "created", "updated", "skipped", title=f"import into {account}")
    summary.add_row(str(report.rows), str(report.created), str(report.updated), str(report.skipped))
    console.print(summary)
    if report.skipped:
        reasons = Table("reason", "rows", title="skipped")
        for reason, count in report.reasons.most_common():
            reasons.add_row(reason, str(count))
        console.print(reasons)
        for row, reason in report.examples[:20]:
            console.print(f"  row {row}: {reason}")
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
