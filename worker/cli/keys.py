"""``dispatch keys …``: API keys; a secret is shown once, then only its hash is kept."""

from __future__ import annotations

from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.table import Table

from worker.cli.common import AccountOpt, console, err, when, with_redis
from worker.config import Settings
from worker.models import Scope
from worker.store import accounts

app = typer.Typer(help="API keys (msk_…) and their scopes.", no_args_is_help=True)


@app.command("create")
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

    console.print(with_redis(action))


@app.command("list")
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
                when(r.created_at),
                f"revoked {when(r.revoked_at)}" if r.revoked_at else "active",
            )
        if any(r.legacy_send for r in await accounts.list_keys(redis, account)):
            table.caption = (
                "A legacy send key may also manage campaigns (made before the campaigns scope): "
                "create a send-only key for web apps and revoke it."
            )
        return table

    console.print(with_redis(action))


@app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")]) -> None:
    """Revoke a key: requests with it get 401 from now on."""

    async def action(redis: Redis, _: Settings) -> None:
        record = await accounts.revoke_key(redis, key_id)
        if record is None:
            err.print(f"[red]no key with id {key_id}[/] (see `dispatch keys list`)")
            raise typer.Exit(1)
        err.print(f"key {key_id} of {record.account} revoked at {when(record.revoked_at)}")

    with_redis(action)
