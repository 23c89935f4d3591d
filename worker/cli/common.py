"""What every CLI command shares: consoles, the account option, and a Redis session."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rich.console import Console
from rich.markup import escape

from worker.config import Settings, get_settings
from worker.errors import Rejected
from worker.masking import redacted_text, redacted_url
from worker.services.provisioning import redis_session
from worker.store import accounts
from worker.store import secrets as store_secrets

T = TypeVar("T")

# Piped output (grep, scripts) gets wide lines instead of rich's 80-column default,
# so ids in tables are never cut.
console = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=200)

AccountOpt = Annotated[str, typer.Option("--account", "-a", help="Account name.")]


def when(ts: float | None, *, ms: bool = False) -> str:
    if ts is None:
        return "-"
    text = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return (text[:-3] if ms else text[:-7]) + "Z"


def with_redis(action: Callable[[Redis, Settings], Awaitable[T]]) -> T:
    """Run one admin action against the configured Redis, with a clear error if it is down."""
    settings = get_settings()

    async def _run() -> T:
        async with redis_session(settings) as redis:
            return await action(redis, settings)

    try:
        return asyncio.run(_run())
    except RedisConnectionError as exc:
        hint = " (is `dispatch up` running?)" if settings.uses_embedded_redis else ""
        where = redacted_url(settings.effective_redis_url)
        err.print(f"[red]cannot reach Redis at {where}{hint}:[/] {redacted_text(str(exc))}")
        raise typer.Exit(1) from None
    except store_secrets.SecretKeyError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    except accounts.UnknownAccountError as exc:
        err.print(f"[red]no account named {exc}[/]; create it with `dispatch accounts create`")
        raise typer.Exit(1) from None
    except Rejected as exc:
        # The same refusal the API would give (a campaign that cannot be paused, say),
        # with its code for a script to tell refusals apart.
        err.print(f"[red]{escape(exc.message)}[/] ({exc.code})")
        raise typer.Exit(1) from None
    except ValueError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
