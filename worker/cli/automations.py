"""``dispatch automations …``: look at automations and their runs from a terminal."""

from __future__ import annotations

from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.table import Table

from worker.cli.common import AccountOpt, console, err, when, with_redis
from worker.config import Settings
from worker.store import accounts, automations
from worker.store.automations import Automation, Run

app = typer.Typer(
    help="Automations: triggers and steps, and the runs going through them.",
    no_args_is_help=True,
)
AutomationArg = Annotated[str, typer.Argument(help="Automation id (aut_…).")]


def _describe(step: dict[str, object]) -> str:
    kind = str(step["type"])
    details = {k: v for k, v in step.items() if k not in ("type", "secret")}
    return f"{kind} " + " ".join(f"{k}={v}" for k, v in details.items())


@app.command("list")
def list_automations(account: AccountOpt) -> None:
    """The account's automations, newest first."""

    async def action(redis: Redis, _: Settings) -> list[Automation]:
        await accounts.require_account(redis, account)
        items, _total = await automations.page(redis, account, 1, 200)
        return items

    table = Table("id", "name", "trigger", "steps", "active", "version", "updated")
    for a in with_redis(action):
        filters = ",".join(f"{k}={v}" for k, v in a.trigger.get("filters", {}).items())
        table.add_row(
            a.id,
            a.name,
            a.trigger["type"] + (f" ({filters})" if filters else ""),
            str(len(a.steps)),
            "[green]yes[/]" if a.active else "no",
            str(a.version),
            when(a.updated_at),
        )
    console.print(table)


@app.command("show")
def show(automation_id: AutomationArg, account: AccountOpt) -> None:
    """The steps, with how many runs wait at, finished or failed each one."""

    async def action(
        redis: Redis, _: Settings
    ) -> tuple[Automation | None, dict[int, dict[str, int]]]:
        await accounts.require_account(redis, account)
        automation = await automations.load(redis, account, automation_id)
        counts = await automations.step_counts(redis, account, automation_id)
        return automation, counts

    automation, counts = with_redis(action)
    if automation is None:
        err.print(f"[red]no automation {automation_id} in account {account}[/]")
        raise typer.Exit(1)
    console.print(
        f"[bold]{automation.name}[/] ({automation.id}, version {automation.version}) "
        f"{'[green]active[/]' if automation.active else '[yellow]inactive[/]'}, "
        f"trigger {automation.trigger['type']} {automation.trigger.get('filters') or ''}",
        highlight=False,
    )
    table = Table("#", "step", "waiting", "done", "failed")
    for i, step in enumerate(automation.steps):
        c = counts.get(i, {})
        table.add_row(
            str(i),
            _describe(step),
            str(c.get("waiting", 0)),
            str(c.get("done", 0)),
            f"[red]{c['failed']}[/]" if c.get("failed") else "0",
        )
    console.print(table)


@app.command("runs")
def runs(
    automation_id: AutomationArg,
    account: AccountOpt,
    status: Annotated[
        str | None, typer.Option(help="Only runs in this status: active, waiting, done, …")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """The automation's runs, newest first: contact, where each is, and until when it waits."""

    async def action(redis: Redis, _: Settings) -> tuple[list[Run], int]:
        await accounts.require_account(redis, account)
        return await automations.runs_page(redis, account, automation_id, status, 1, limit)

    items, total = with_redis(action)
    table = Table("run", "contact", "status", "step", "waits until", "started", "error")
    for r in items:
        table.add_row(
            r.id,
            r.contact,
            r.status,
            str(r.step),
            when(r.due_at) if r.status == "waiting" else "-",
            when(r.created_at),
            r.error or "",
        )
    console.print(table)
    console.print(f"[dim]{len(items)} of {total}[/]")
