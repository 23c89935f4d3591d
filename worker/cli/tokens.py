"""``dispatch tokens …``: device tokens, their delivery counters, and expiring idle ones."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.table import Table

from worker.cli.common import console, err, when, with_redis
from worker.config import Settings
from worker.masking import mask_token
from worker.store import accounts, tokens

app = typer.Typer(help="Device tokens and their delivery counters.", no_args_is_help=True)


@app.command("stats")
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
        table = Table(*_COLUMNS)
        totals = _Totals()
        for acc in names:
            await accounts.require_account(redis, acc)
            for t in await tokens.load_many(redis, acc, await tokens.all_members(redis, acc)):
                active_at = tokens.last_activity(t)
                is_stale = t.active and (active_at or 0) < stale_before
                totals.add(t, is_stale)
                if problems and t.active and not t.failed:
                    continue
                if stale and not is_stale:
                    continue
                table.add_row(*_row(acc, t, active_at, is_stale))
        table.caption = (
            f"{totals.count} token(s): {totals.delivered} delivered, {totals.failed} failed, "
            f"{totals.pruned} pruned, {totals.stale} stale (idle {idle_days:g}+ days); tokens "
            f"idle {settings.push_token_max_idle_days:g}+ days are no longer sent to"
        )
        return table

    console.print(with_redis(action))


_COLUMNS = (
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


@dataclass
class _Totals:
    """Counted over every token, whichever rows --problems or --stale show: the caption
    gives the whole picture the filtered rows are part of."""

    count: int = 0
    delivered: int = 0
    failed: int = 0
    pruned: int = 0
    stale: int = 0

    def add(self, token: tokens.TokenStats, is_stale: bool) -> None:
        self.count += 1
        self.delivered += token.delivered
        self.failed += token.failed
        self.pruned += 0 if token.active else 1
        self.stale += 1 if is_stale else 0


def _row(
    account: str, token: tokens.TokenStats, active_at: float | None, is_stale: bool
) -> list[str]:
    state = "active" if token.active else f"pruned: {token.prune_reason or '?'}"
    return [
        account,
        token.contact or "-",
        token.platform,
        mask_token(token.token),
        str(token.delivered),
        str(token.failed),
        when(token.last_success_at),
        when(active_at),
        token.last_error or "-",
        "stale" if is_stale else state,
    ]


@app.command("expire")
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

    expired = with_redis(action)
    console.print(f"{expired} token(s) idle too long: no longer sent to")
