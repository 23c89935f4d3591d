"""``dispatch messages …``: one send, its state and every attempt."""

from __future__ import annotations

from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.table import Table

from worker.cli.common import AccountOpt, console, err, when, with_redis
from worker.config import Settings
from worker.masking import mask_phone
from worker.store import accounts, messages

app = typer.Typer(help="Sends and what happened to them.", no_args_is_help=True)


@app.command("show")
def messages_show(
    account: AccountOpt,
    message_id: Annotated[str, typer.Argument(help="The send's id (msg_…).")],
) -> None:
    """Show a send: its state, the provider's id and status, and every attempt."""

    async def action(redis: Redis, _: Settings) -> None:
        await accounts.require_account(redis, account)
        message = await messages.load(redis, account, message_id)
        if message is None:
            err.print(f"[red]no message {message_id} for {account}[/]")
            raise typer.Exit(1)
        summary = Table("field", "value", show_header=False)
        summary.add_row("status", message.status.value)
        if message.to:
            summary.add_row("to", mask_phone(message.to))
        summary.add_row(
            "template",
            f"{message.template_name} ({message.language})"
            if message.template_name
            else "free-form text",
        )
        summary.add_row("provider id", message.provider_message_id or "-")
        summary.add_row("delivery status", message.delivery_status or "-")
        summary.add_row("error", f"{message.error} ({message.code})" if message.error else "-")
        summary.add_row("created", when(message.created_at))
        console.print(summary)
        attempts = Table("#", "at", "outcome", "latency ms", "code", "detail")
        for a in await messages.load_attempts(redis, account, message_id):
            detail = a.provider_message_id or a.error or ""
            if a.retry_in_s is not None:
                detail += f" (retry in {a.retry_in_s:.1f}s)"
            attempts.add_row(
                str(a.attempt),
                when(a.at),
                a.outcome,
                f"{a.latency_ms:.0f}" if a.latency_ms is not None else "-",
                a.provider_code or a.code or "",
                detail,
            )
        console.print(attempts)

    with_redis(action)
