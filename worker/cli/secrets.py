"""``dispatch secrets …``: the key provider credentials are encrypted with at rest."""

from __future__ import annotations

from typing import Annotated

import typer
from redis.asyncio import Redis

from worker.cli.common import console, err, with_redis
from worker.config import Settings, get_settings
from worker.store import accounts, channels
from worker.store import secrets as store_secrets

app = typer.Typer(help="The key that encrypts provider credentials at rest.", no_args_is_help=True)


@app.command("init")
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


@app.command("rotate")
def secrets_rotate() -> None:
    """Encrypt every account's stored credentials again with the first key of
    DISPATCH_SECRET_KEY (plaintext ones from before encryption too). To change keys: put
    the new key first and the old one after it (comma-separated), restart, run this, then
    drop the old key."""

    async def action(redis: Redis, _: Settings) -> tuple[int, int]:
        names = await accounts.list_accounts(redis)
        return len(names), sum([await channels.rotate(redis, name) for name in names])

    try:
        count, rewritten = with_redis(action)
    except store_secrets.SecretKeyError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    console.print(f"{rewritten} channel(s) of {count} account(s) encrypted with the current key")
