"""``dispatch accounts …``: create accounts (tenants) and list them with their channels."""

from __future__ import annotations

from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.table import Table

from worker.cli.common import console, err, with_redis
from worker.config import Settings
from worker.models import Scope
from worker.store import accounts, channels

app = typer.Typer(
    help="Accounts (tenants). Each has its own keys, channels and data.", no_args_is_help=True
)


@app.command("create")
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

    secret = with_redis(action)
    err.print(f"account [bold]{name}[/] created. Its API key (shown only now, store it safely):")
    console.print(secret)


@app.command("list")
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
    for acc, wa, push in with_redis(action):
        table.add_row(
            acc, *("configured" if on else "-" for on in (wa, "fcm" in push, "apns" in push))
        )
    console.print(table)
