"""``dispatch tokens …``: device tokens, their delivery counters, and expiring idle ones."""

from __future__ import annotations

import time
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
                    when(t.last_success_at),
                    when(active_at),
                    t.last_error or "-",
                    "stale" if is_stale else state,
                )
        table.caption = (
            f"{totals[0]} token(s): {totals[1]} delivered, {totals[2]} failed, "
            f"{totals[3]} pruned, {totals[4]} stale (idle {idle_days:g}+ days); tokens idle "
            f"{settings.push_token_max_idle_days:g}+ days are no longer sent to"
        )
        return table

    console.print(with_redis(action))


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
