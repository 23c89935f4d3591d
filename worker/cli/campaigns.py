"""``dispatch campaigns …``: create, send and follow campaigns from a terminal.

The same checks as the API (``worker.services.campaigns``), straight against Redis; an
operator needs no API key.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from redis.asyncio import Redis
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.cli.common import AccountOpt, console, err, when, with_redis
from worker.config import Settings
from worker.models import CampaignCreate, CampaignStatus
from worker.services import campaigns as ops
from worker.store import accounts, campaigns
from worker.store.campaigns import Campaign
from worker.store.campaigns import Progress as Counts

app = typer.Typer(
    help="Campaigns: one WhatsApp template or push to an audience, with live progress.",
    no_args_is_help=True,
)
CampaignArg = Annotated[str, typer.Argument(help="Campaign id (cmp_…).")]
_FINISHED = (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED)


def _body(
    name: str | None,
    channel: str | None,
    file: Path | None,
    template: str | None,
    language: str,
    params: list[str],
    title: str | None,
    message: str | None,
    url: str | None,
    data: str | None,
    audience_all: bool,
    tag: str | None,
    where: list[str],
    contact: list[str],
) -> CampaignCreate:
    raw: dict[str, Any] = json.loads(file.read_text()) if file else {}
    if name:
        raw["name"] = name
    if channel:
        raw["channel"] = channel
    if template:
        raw["content"] = {"template_name": template, "language": language, "parameters": params}
    elif title or message:
        raw["content"] = {"title": title, "message": message, "url": url}
        if data:
            raw["content"]["data"] = json.loads(data)
    if audience_all:
        raw["audience"] = {"all": True}
    elif tag or where:
        attributes: dict[str, Any] = {}
        for item in where:
            key, sep, value = item.partition("=")
            if not sep:
                raise typer.BadParameter(f"--where takes key=value, got {item!r}")
            attributes[key] = value
        raw["audience"] = {"segment": {"tag": tag, "attributes": attributes}}
    elif contact:
        raw["audience"] = {"contact_ids": [c for item in contact for c in item.split(",") if c]}
    try:
        return CampaignCreate.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where_ = ".".join(str(p) for p in first["loc"])
        err.print(f"[red]invalid campaign[/]: {where_ + ': ' if where_ else ''}{first['msg']}")
        raise typer.Exit(2) from None


def _by_reason(total: int, by: dict[str, int]) -> str:
    if not by:
        return f"{total:,}"
    return f"{total:,} (" + ", ".join(f"{k}: {v:,}" for k, v in sorted(by.items())) + ")"


def _stats_table(campaign: Campaign, counts: Counts, why: campaigns.Reasons) -> Table:
    table = Table(title=f"{campaign.id} — {campaign.name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    eta = counts.eta_s(campaign.deferred_until)
    rows = [
        ("status", campaign.status.value),
        ("channel", campaign.channel.value),
        ("send at", when(campaign.send_at)),
        ("started", when(campaign.started_at)),
        ("finished", when(campaign.finished_at)),
        ("contacts", f"{counts.counts['enqueued']:,} of {counts.counts['total']:,} walked"),
        ("skipped", _by_reason(counts.counts["skipped"], why.skipped)),
        ("deferred", _by_reason(counts.counts["deferred"], why.deferred)),
        ("deferred until", when(campaign.deferred_until)),
        ("sends planned", f"{counts.counts['recipients']:,}"),
        ("sent", f"{counts.counts['sent']:,}"),
        ("delivered", f"{counts.counts['delivered']:,}"),
        ("failed", f"{counts.counts['failed']:,}"),
        ("cancelled", f"{counts.counts['cancelled']:,}"),
        ("pending", f"{counts.pending:,}"),
        ("rate", f"{counts.rate_per_s:,.1f}/s"),
        ("eta", "-" if eta is None else f"{eta:,.0f}s"),
    ]
    if campaign.last_error:
        rows.append(("last error", f"{campaign.last_error} at {when(campaign.last_error_at)}"))
    for label, value in rows:
        table.add_row(label, value)
    return table


async def _show(redis: Redis, account: str, campaign_id: str) -> None:
    campaign = await ops.load(redis, account, campaign_id)
    counts = await campaigns.progress(redis, account, campaign_id)
    why = await campaigns.reasons(redis, account, campaign_id)
    console.print(_stats_table(campaign, counts, why))


async def _watch(redis: Redis, account: str, campaign_id: str, interval_s: float) -> int:
    """A live bar until the campaign is over; returns the exit code."""
    columns = (
        TextColumn("[bold]{task.fields[status]}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}/s  eta {task.fields[eta]}  failed {task.fields[failed]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(campaign_id, total=None, status="", rate="0", eta="-", failed=0)
        while True:
            campaign = await ops.load(redis, account, campaign_id)
            counts = await campaigns.progress(redis, account, campaign_id)
            eta = counts.eta_s(campaign.deferred_until)
            bar.update(
                task,
                completed=counts.done,
                total=counts.done + counts.remaining_estimate(),
                status=campaign.status.value,
                rate=f"{counts.rate_per_s:,.0f}",
                eta="-" if eta is None else f"{eta:,.0f}s",
                failed=counts.counts["failed"],
            )
            if campaign.status in _FINISHED and campaign.finished_at is not None:
                break
            await asyncio.sleep(interval_s)
    await _show(redis, account, campaign_id)
    return 0 if campaign.status is CampaignStatus.COMPLETED else 1


@app.command()
def create(
    account: AccountOpt,
    name: Annotated[str | None, typer.Option(help="Campaign name.")] = None,
    channel: Annotated[str | None, typer.Option(help="whatsapp or push.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="A JSON body as POST /api/v1/campaigns takes."
        ),
    ] = None,
    template: Annotated[str | None, typer.Option(help="WhatsApp template name.")] = None,
    language: Annotated[str, typer.Option(help="WhatsApp template language.")] = "en",
    param: Annotated[
        list[str] | None,
        typer.Option(help="Template parameter, in order; may use {{name}}, {{city|default}}."),
    ] = None,
    title: Annotated[str | None, typer.Option(help="Push title (placeholders allowed).")] = None,
    message: Annotated[str | None, typer.Option(help="Push message.")] = None,
    url: Annotated[str | None, typer.Option(help="Push deep link.")] = None,
    data: Annotated[str | None, typer.Option(help="Push data, a JSON object.")] = None,
    audience_all: Annotated[bool, typer.Option("--all", help="Every contact.")] = False,
    tag: Annotated[str | None, typer.Option(help="Contacts with this tag.")] = None,
    where: Annotated[
        list[str] | None, typer.Option(help="Attribute filter key=value (repeatable).")
    ] = None,
    contact: Annotated[
        list[str] | None, typer.Option(help="Contact ids (repeatable, or comma-separated).")
    ] = None,
    send: Annotated[bool, typer.Option("--send", help="Send it right away.")] = False,
) -> None:
    """Create a draft campaign (and, with --send, send it)."""
    body = _body(
        name,
        channel,
        file,
        template,
        language,
        param or [],
        title,
        message,
        url,
        data,
        audience_all,
        tag,
        where or [],
        contact or [],
    )

    async def action(redis: Redis, _: Settings) -> Campaign:
        await accounts.require_account(redis, account)
        campaign = await ops.create(redis, account, body)
        if send:
            campaign = await ops.send(redis, account, campaign.id, None)
        return campaign

    campaign = with_redis(action)
    console.print(f"[green]{campaign.status.value}[/] {campaign.id}  {campaign.name}")
    console.print(f"follow it with: dispatch campaigns watch {campaign.id} --account {account}")


@app.command("send")
def send_cmd(
    campaign_id: CampaignArg,
    account: AccountOpt,
    at: Annotated[
        datetime | None,
        typer.Option(
            "--at",
            formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"],
            help="Send later, at this UTC time.",
        ),
    ] = None,
    watch: Annotated[bool, typer.Option(help="Then follow it with a live progress bar.")] = False,
) -> None:
    """Send a draft now, or schedule it with --at."""

    async def action(redis: Redis, _: Settings) -> int:
        campaign = await ops.send(redis, account, campaign_id, at)
        console.print(f"[green]{campaign.status.value}[/] {campaign.id}")
        if watch and campaign.status is not CampaignStatus.SCHEDULED:
            return await _watch(redis, account, campaign_id, 0.5)
        return 0

    raise typer.Exit(with_redis(action))


@app.command("list")
def list_cmd(
    account: AccountOpt,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
) -> None:
    """The account's campaigns, newest first."""

    async def action(redis: Redis, _: Settings) -> tuple[list[Campaign], list[Counts]]:
        await accounts.require_account(redis, account)
        items, _total = await campaigns.page(redis, account, 1, limit)
        return items, await campaigns.progress_many(redis, account, [c.id for c in items])

    items, progress = with_redis(action)
    table = Table(
        "id", "name", "channel", "status", "sent", "failed", "skipped", "pending", "created"
    )
    for c, p in zip(items, progress, strict=True):
        table.add_row(
            c.id,
            c.name,
            c.channel.value,
            c.status.value,
            f"{p.counts['sent']:,}",
            f"{p.counts['failed']:,}",
            f"{p.counts['skipped']:,}",
            f"{p.pending:,}",
            when(c.created_at),
        )
    console.print(table)


@app.command()
def show(campaign_id: CampaignArg, account: AccountOpt) -> None:
    """A campaign's status and every counter."""

    async def action(redis: Redis, _: Settings) -> None:
        await _show(redis, account, campaign_id)

    with_redis(action)


@app.command()
def watch(
    campaign_id: CampaignArg,
    account: AccountOpt,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes.")] = 0.5,
) -> None:
    """A live progress bar (sent, rate, ETA) until the campaign finishes.

    Exits 0 when it completed, 1 when it was cancelled."""

    async def action(redis: Redis, _: Settings) -> int:
        return await _watch(redis, account, campaign_id, interval)

    raise typer.Exit(with_redis(action))


def _mover(action_name: str, doc: str) -> None:
    def command(campaign_id: CampaignArg, account: AccountOpt) -> None:
        async def action(redis: Redis, _: Settings) -> Campaign:
            return await ops.move(redis, account, campaign_id, action_name)

        campaign = with_redis(action)
        console.print(f"[green]{campaign.status.value}[/] {campaign.id} at {when(time.time())}")

    command.__doc__ = doc
    app.command(action_name)(command)


_mover("pause", "Stop sending within seconds; resume goes on where it stopped.")
_mover("resume", "Go on with a paused campaign.")
_mover("cancel", "Stop for good: what was not sent is counted as cancelled.")
