"""``dispatch templates …``: sync an account's WhatsApp templates from Meta, and list them."""

from __future__ import annotations

import typer
from redis.asyncio import Redis
from rich.table import Table

from worker.cli.common import AccountOpt, console, err, with_redis
from worker.config import Settings
from worker.errors import DeliveryError
from worker.services.provisioning import (
    ChannelNotConfiguredError,
    sync_templates,
)
from worker.store import accounts, templates

app = typer.Typer(help="WhatsApp message templates.", no_args_is_help=True)


@app.command("sync")
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

    count = with_redis(action)
    err.print(f"{count} template(s) synced for {account}")


@app.command("list")
def templates_list(account: AccountOpt) -> None:
    """List the templates known for an account (as of the last sync)."""

    async def action(redis: Redis, _: Settings) -> Table:
        await accounts.require_account(redis, account)
        table = Table("name", "language", "category", "status", "body parameters")
        for t in await templates.list_templates(redis, account):
            table.add_row(t.name, t.language, t.category, t.status, str(t.body_parameters))
        return table

    console.print(with_redis(action))
