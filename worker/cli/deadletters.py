"""``dispatch dlq …``: dead letters, listed, shown and sent again."""

from __future__ import annotations

from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.table import Table

from worker.cli.common import AccountOpt, console, err, when, with_redis
from worker.cli.messages import messages_show
from worker.config import Settings
from worker.masking import mask_phone
from worker.store import accounts, deadletters, messages
from worker.store.jobs import publish

app = typer.Typer(help="Dead letters: sends that ran out of attempts or age.", no_args_is_help=True)


@app.command("list")
def dlq_list(
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only this account.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many per account, newest first.")] = 50,
) -> None:
    """List dead letters with their last error."""

    async def action(redis: Redis, _: Settings) -> Table:
        table = Table(
            "account", "id", "channel", "to / contact", "dead since", "attempts", "last error"
        )
        total = 0
        for acc in [account] if account else await accounts.list_accounts(redis):
            await accounts.require_account(redis, acc)
            items, count = await deadletters.page(redis, acc, 0, limit)
            total += count
            for m in items:
                target = mask_phone(m.to) if m.to else (m.contact_id or "-")
                table.add_row(
                    acc,
                    m.id,
                    m.channel.value,
                    target,
                    when(m.dead_lettered_at),
                    str(m.attempts),
                    f"{m.error or '-'} ({m.code or '?'})",
                )
        table.caption = f"{total} dead letter(s)"
        return table

    console.print(with_redis(action))


@app.command("show")
def dlq_show(
    account: AccountOpt,
    message_id: Annotated[str, typer.Argument(help="The send's id (msg_…).")],
) -> None:
    """Show a dead letter: the send, and every attempt with its error."""
    messages_show(account, message_id)


@app.command("redrive")
def dlq_redrive(
    account: AccountOpt,
    message_ids: Annotated[list[str] | None, typer.Argument(help="Ids to send again.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter of the account.")] = False,
) -> None:
    """Send dead letters again with a fresh budget (push: only the devices that ran out)."""

    if not message_ids and not all_:
        err.print("[red]name the ids to redrive, or pass --all[/]")
        raise typer.Exit(2)

    async def action(redis: Redis, _: Settings) -> tuple[int, list[str]]:
        await accounts.require_account(redis, account)
        ids = list(message_ids or [])
        if all_:
            items, _total = await deadletters.page(redis, account, 0, 100_000)
            ids = [m.id for m in items]
        done, missing = 0, []
        for message_id in ids:
            message = await deadletters.redrive(redis, account, message_id)
            if message is None:
                missing.append(message_id)
                continue
            await publish(redis, messages.task_name(message), account, message.id)
            done += 1
        return done, missing

    done, missing = with_redis(action)
    err.print(f"{done} dead letter(s) queued again")
    if missing:
        err.print(f"[yellow]not dead letters of {account}:[/] {', '.join(missing)}")
        raise typer.Exit(1)
