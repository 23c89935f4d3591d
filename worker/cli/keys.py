"""``dispatch keys …``: API keys; a secret is shown once, then only its hash is kept."""

from __future__ import annotations

from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.markup import escape
from rich.table import Column, Table

from worker.cli.common import AccountOpt, console, err, when, with_redis
from worker.config import Settings
from worker.models import KEY_NAME_MAX_CHARS, Scope
from worker.store import accounts

app = typer.Typer(help="API keys (msk_…) and their scopes.", no_args_is_help=True)


@app.command("create")
def keys_create(
    account: AccountOpt,
    scope: Annotated[
        list[Scope] | None, typer.Option("--scope", "-s", help="Repeat for several; default: send.")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help=f"What the key is for (≤ {KEY_NAME_MAX_CHARS} chars)."),
    ] = None,
) -> None:
    """Create an API key; the key is printed once and stored only as a hash."""
    if name is not None and len(name) > KEY_NAME_MAX_CHARS:
        err.print(f"[red]--name is {len(name)} characters; at most {KEY_NAME_MAX_CHARS}[/]")
        raise typer.Exit(2)

    async def action(redis: Redis, _: Settings) -> str:
        secret, record = await accounts.create_key(redis, account, scope or [Scope.SEND], name=name)
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
    """List keys (id, prefix, scopes, state, last use); secrets are never shown."""

    async def action(redis: Redis, _: Settings) -> Table:
        # "last used" is written at most once a minute per API process: about a minute's
        # precision.
        table = Table(
            # The id is what `keys revoke` takes: never wrapped; a long name is cut instead.
            Column("id", no_wrap=True),
            "account",
            "key",
            "scopes",
            "created",
            "last used",
            "state",
            Column("name", max_width=40, no_wrap=True, overflow="ellipsis"),
        )
        records = await accounts.list_keys(redis, account)
        used = await accounts.last_used(redis, [r.id for r in records])
        for r in records:
            table.add_row(
                r.id,
                r.account,
                f"{r.prefix}…",
                ",".join(s.value for s in r.scopes)
                + (" (legacy send: campaigns too)" if r.legacy_send else ""),
                when(r.created_at),
                when(used.get(r.id)),
                f"revoked {when(r.revoked_at)}" if r.revoked_at else "active",
                escape(r.name or ""),
            )
        if any(r.legacy_send for r in records):
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
