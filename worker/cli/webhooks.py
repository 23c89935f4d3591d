"""``dispatch webhooks …``: event webhook endpoints, their deliveries, and replaying them.

What is chosen and how (``--since``, which statuses) is ``worker.services.webhooks``'s, as
the API would choose it; here it is printed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Column, Table

from worker.cli.common import AccountOpt, console, err, when, with_redis
from worker.config import Settings
from worker.errors import Rejected
from worker.models.webhooks import Delivery, DeliveryStatus, Endpoint
from worker.services import webhooks as ops
from worker.store import accounts, webhooks
from worker.store import webhook_deliveries as deliveries

app = typer.Typer(
    help="Event webhook endpoints: their backlog, their deliveries, replaying them.",
    no_args_is_help=True,
)

EndpointArg = Annotated[str, typer.Argument(help="The endpoint's id (wh_…).")]
SinceHelp = (
    "Created since then: a duration back from now (30m, 2h, 1d, 1h30m) or an ISO 8601 "
    "time (UTC unless it gives its offset)."
)
# Past this many, a replay shows a progress bar.
_PROGRESS_FROM = 50


def _since(value: str, now: float) -> float:
    """``--since`` parsed, or the command stopped with exit 2, as a bad parameter is."""
    try:
        return ops.parse_since(value, now)
    except Rejected as exc:
        err.print(f"[red]--since: {escape(exc.message)}[/] ({exc.code})")
        raise typer.Exit(2) from None


def _state(endpoint: Endpoint) -> str:
    if endpoint.active:
        return "active"
    if endpoint.disabled_reason:
        return f"disabled {when(endpoint.disabled_at)}: {escape(endpoint.disabled_reason)}"
    return "off"


@app.command("list")
def webhooks_list(
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only this account (default: all).")
    ] = None,
) -> None:
    """List endpoints with their state, backlog (queued, retrying) and counters."""

    async def action(redis: Redis, _: Settings) -> Table:
        table = Table(
            *([] if account else ["account"]),
            Column("id", no_wrap=True),
            Column("url", overflow="fold"),
            "events",
            "state",
            "created",
            Column("queued", justify="right"),
            Column("retrying", justify="right"),
            Column("delivered", justify="right"),
            Column("failed", justify="right"),
            Column("dropped", justify="right"),
        )
        names = [account] if account else await accounts.list_accounts(redis)
        count = 0
        for name in names:
            await accounts.require_account(redis, name)
            for endpoint in await webhooks.list_all(redis, name):
                queued, retrying = await deliveries.backlog(redis, name, endpoint.id)
                stats = await deliveries.stats(redis, name, endpoint.id)
                table.add_row(
                    *([] if account else [name]),
                    endpoint.id,
                    escape(endpoint.url),
                    ",".join(endpoint.events),
                    _state(endpoint),
                    when(endpoint.created_at),
                    str(queued),
                    str(retrying),
                    *(stats.get(counter, "0") for counter in ("delivered", "failed", "dropped")),
                )
                count += 1
        table.caption = f"{count} endpoint(s)"
        return table

    console.print(with_redis(action))


@app.command("deliveries")
def webhooks_deliveries(
    account: AccountOpt,
    endpoint_id: EndpointArg,
    status: Annotated[
        DeliveryStatus | None, typer.Option("--status", "-s", help="Only those in this state.")
    ] = None,
    since: Annotated[str | None, typer.Option(help=SinceHelp)] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
) -> None:
    """List an endpoint's recent deliveries, newest first (the last 10,000 are kept)."""
    after = _since(since, time.time()) if since is not None else 0.0

    async def action(redis: Redis, _: Settings) -> Table:
        await accounts.require_account(redis, account)
        await ops.require(redis, account, endpoint_id)
        found, total = await ops.find_deliveries(
            redis,
            account,
            endpoint_id,
            since=after,
            statuses=frozenset({status}) if status else None,
            limit=limit,
        )
        table = Table(
            Column("id", no_wrap=True),
            "event",
            "status",
            Column("attempts", justify="right"),
            Column("last answer", overflow="fold"),
            "created",
            "next attempt",
        )
        for d in found:
            table.add_row(
                d.id,
                d.type,
                d.status.value,
                str(d.attempts),
                _last_answer(d),
                when(d.created_at),
                when(d.next_attempt_at) if d.status is DeliveryStatus.RETRYING else "-",
            )
        scope = f" since {when(after)}" if since is not None else ""
        which = f" {status.value}" if status else ""
        table.caption = f"{len(found)}{which} shown of {total} delivery(ies){scope}"
        return table

    console.print(with_redis(action))


def _last_answer(delivery: Delivery) -> str:
    """The last attempt's error (it names the HTTP status when there was one), else its
    status."""
    if delivery.last_error and delivery.status is not DeliveryStatus.DELIVERED:
        return escape(delivery.last_error)
    return f"HTTP {delivery.last_status}" if delivery.last_status is not None else "-"


@dataclass(frozen=True)
class _Chosen:
    endpoint: Endpoint
    items: list[Delivery]
    total: int


@app.command("replay")
def webhooks_replay(
    account: AccountOpt,
    endpoint_id: EndpointArg,
    since: Annotated[str, typer.Option(help=SinceHelp)],
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            "-s",
            help="Comma-separated: failed, dropped, retrying, delivered (this one only with "
            "--all). Default: failed,dropped.",
        ),
    ] = None,
    all_: Annotated[
        bool,
        typer.Option(
            "--all", help="Delivered ones too (with no --status: every status but pending)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be replayed.")
    ] = False,
) -> None:
    """Post an endpoint's deliveries created since then again, each with a fresh budget of
    attempts (a receiver that lost or refused them)."""
    now = time.time()
    after = _since(since, now)
    try:
        statuses = ops.replay_statuses(status, include_delivered=all_)
    except Rejected as exc:
        hint = " (add --all)" if DeliveryStatus.DELIVERED.value in (status or "") else ""
        err.print(f"[red]--status: {escape(exc.message)}{hint}[/] ({exc.code})")
        raise typer.Exit(2) from None
    names = ",".join(sorted(s.value for s in statuses))

    async def choose(redis: Redis, _: Settings) -> _Chosen:
        await accounts.require_account(redis, account)
        endpoint = await ops.require(redis, account, endpoint_id)
        items, total = await ops.find_deliveries(
            redis, account, endpoint_id, since=after, statuses=statuses
        )
        return _Chosen(endpoint, items, total)

    chosen = with_redis(choose)
    count = len(chosen.items)
    err.print(
        f"{count} of the {chosen.total} delivery(ies) created since {when(after)} are "
        f"{names} ({endpoint_id} → {escape(chosen.endpoint.url)})"
    )
    if not chosen.endpoint.active:
        err.print(
            f"[yellow]{endpoint_id} is {_state(chosen.endpoint)}[/]: replayed deliveries wait "
            "until it is active again (PATCH /api/v1/webhooks/{id} with active: true)"
        )
    if dry_run or not count:
        console.print(count)
        return
    if not yes:
        # On stderr, as every message here: stdout holds only the count, for scripts.
        typer.confirm(
            f"Replay {count} delivery(ies) to {chosen.endpoint.url}?", abort=True, err=True
        )

    async def replay(redis: Redis, _: Settings) -> int:
        with Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
            disable=count < _PROGRESS_FROM,
        ) as progress:
            task = progress.add_task("replay", total=count)
            return await ops.replay(
                redis,
                account,
                endpoint_id,
                chosen.items,
                statuses,
                time.time(),
                on_each=lambda _d: progress.advance(task),
            )

    done = with_redis(replay)
    skipped = count - done
    note = f" ({skipped} skipped: their status changed or their record expired)" if skipped else ""
    err.print(f"{done} delivery(ies) replayed{note}")
    console.print(done)
