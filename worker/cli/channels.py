"""``dispatch channels …``: an account's provider credentials (WhatsApp, FCM, APNs),
stored encrypted; secrets are never printed back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.table import Table

from worker.cli.common import AccountOpt, console, err, with_redis
from worker.config import FcmSenderName, Settings
from worker.masking import mask_token
from worker.services.provisioning import (
    configure_apns,
    configure_fcm,
    configure_whatsapp,
)
from worker.store import accounts, channels

app = typer.Typer(help="Provider credentials per account.", no_args_is_help=True)
whatsapp_app = typer.Typer(help="WhatsApp Business Cloud API.", no_args_is_help=True)
fcm_app = typer.Typer(help="Firebase Cloud Messaging (Android, web).", no_args_is_help=True)
apns_app = typer.Typer(help="Apple Push Notification service (iOS, macOS).", no_args_is_help=True)
app.add_typer(whatsapp_app, name="whatsapp")
app.add_typer(fcm_app, name="fcm")
app.add_typer(apns_app, name="apns")

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

    with_redis(action)


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

    with_redis(action)


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
    sender: Annotated[
        FcmSenderName | None,
        typer.Option(
            help="This account's FCM sender: firebase-admin's client, or our own HTTP/2 "
            "transport (lean); default: the workers' DISPATCH_FCM_SENDER.",
        ),
    ] = None,
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
            sender=sender,
        )
        err.print(
            f"FCM configured for [bold]{account}[/]: project {config.project_id}"
            + (f" via {config.endpoint}" if config.endpoint else "")
            + (f", sent with the {config.sender} sender" if config.sender else "")
        )

    with_redis(action)


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

    with_redis(action)
