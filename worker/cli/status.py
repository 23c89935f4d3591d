"""`dispatch status`: are we keeping up? Queues, workers, send rates, limits, dead letters,
campaigns, automations."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict
from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table

from worker.cli.common import console, when, with_redis
from worker.config import Settings
from worker.observe import status
from worker.services.provisioning import redis_session
from worker.store import throughput
from worker.store.restarts import ChildRestarts

# Exit code when a queue has no live worker group: scripts and probes can tell.
UNSERVED_EXIT = 3


def render(snap: status.Snapshot, now: float) -> Group:
    """The status screen: always memory, queues, workers, rates and dead letters; the
    other tables only when they have rows, so that a quiet stack fits one screen."""
    parts: list[RenderableType] = [
        _memory(snap),
        _queues(snap),
        _workers(snap, now),
        _rates(snap),
    ]
    if snap.busy_limits:
        parts.append(_busy_limits(snap))
    parts.append(_dead_letters(snap))
    if snap.campaigns:
        parts.append(_campaigns(snap))
    if snap.automations:
        parts.append(_automations(snap))
    if snap.webhook_outbox or any(q or r for _, _, q, r in snap.webhook_backlog):
        parts.append(_webhooks(snap))
    if snap.restarts:
        parts.append(_restarts(snap.restarts))
    if snap.job_errors:
        parts.append(_job_errors(snap))
    return Group(*parts)


def _queues(snap: status.Snapshot) -> Table:
    """Depth per queue and how many worker groups consume it; "none" in red is the queue
    that nothing drains (the reason for exit code 3)."""
    queues = Table("queue", "waiting jobs", "worker groups", title="queues", title_justify="left")
    served = snap.workers_by_queue()
    for queue, depth in snap.queues.items():
        groups = served.get(queue, 0)
        queues.add_row(queue, str(depth), str(groups) if groups else "[red]none[/]")
    queues.add_row("[dim](delayed: retries, waits, send_at)[/]", str(snap.delayed), "")
    return queues


def _workers(snap: status.Snapshot, now: float) -> Table:
    workers = Table(
        "worker",
        "queues",
        "processes",
        "running",
        "up for",
        "last beat",
        "metrics",
        title="workers",
        title_justify="left",
    )
    for w in snap.workers:
        workers.add_row(
            w.node,
            ",".join(w.queues),
            str(w.concurrency),
            str(w.active),
            _duration(now - w.started_at),
            f"{now - w.at:.1f}s ago",
            f":{w.metrics_port}/metrics" if w.metrics_port else "-",
        )
    if not snap.workers:
        workers.add_row("[red]no worker alive[/]", "", "", "", "", "", "")
    return workers


def _rates(snap: status.Snapshot) -> Table:
    """Per second, with the minute's count beside it: a rate of 0.02 reads better as 1."""
    rates = Table(
        "channel",
        "sent/s",
        "failed/s",
        "retried/s",
        title="sends, last minute",
        title_justify="left",
    )
    for channel in throughput.CHANNELS:
        row = [snap.rates.get((channel, o), 0.0) for o in throughput.OUTCOMES]
        rates.add_row(channel, *(f"{v:.2f} ({round(v * 60)})" for v in row))
    return rates


def _busy_limits(snap: status.Snapshot) -> Table:
    limits = Table(
        "rate limit",
        "booked ahead",
        "slowed (429)",
        title="rate limits at their cap",
        title_justify="left",
    )
    for key in snap.busy_limits:
        slowed = f"rate / {key.penalty:g}" if key.penalty > 1 else "-"
        limits.add_row(key.name, f"{max(0.0, key.ahead_s) * 1000:.0f} ms", slowed)
    return limits


def _dead_letters(snap: status.Snapshot) -> Table:
    """Only the accounts that have some; an explicit "none" so that an empty table is not
    mistaken for one that failed to load."""
    dead = Table("account", "dead letters", title="dead letters", title_justify="left")
    for account, n in snap.dead_letters.items():
        if n:
            dead.add_row(account, f"[red]{n}[/]")
    if not any(snap.dead_letters.values()):
        dead.add_row("[green]none[/]", "0")
    return dead


def _webhooks(snap: status.Snapshot) -> Table:
    """Event webhooks with deliveries waiting: a receiver slow or down shows here first."""
    table = Table(
        "account",
        "endpoint",
        "queued",
        "retrying",
        title=f"event webhooks (outbox: {snap.webhook_outbox})",
        title_justify="left",
    )
    for account, endpoint_id, queued, retrying in snap.webhook_backlog:
        if queued or retrying:
            table.add_row(
                account, endpoint_id, str(queued), f"[yellow]{retrying}[/]" if retrying else "0"
            )
    return table


def _campaigns(snap: status.Snapshot) -> Table:
    campaigns = Table(
        "campaign",
        "account",
        "status",
        "recipients",
        "sent",
        "failed",
        "pending",
        title="running campaigns",
        title_justify="left",
    )
    for c in snap.campaigns:
        # Pending counts cancelled recipients as done: they will never be sent.
        done = sum(c.counts.get(k, 0) for k in ("sent", "failed", "cancelled"))
        recipients = c.counts.get("recipients", 0)
        campaigns.add_row(
            f"{c.id} {c.name}",
            c.account,
            c.status,
            str(recipients),
            str(c.counts.get("sent", 0)),
            str(c.counts.get("failed", 0)),
            str(max(0, recipients - done)),
        )
    return campaigns


def _automations(snap: status.Snapshot) -> Table:
    flows = Table(
        "automation",
        "account",
        "active",
        "runs in progress",
        "steps done",
        "steps failed",
        title="automations",
        title_justify="left",
    )
    for a in snap.automations:
        flows.add_row(
            f"{a.id} {a.name}",
            a.account,
            "yes" if a.active else "[dim]no[/]",
            str(a.in_progress),
            str(a.steps_done),
            f"[red]{a.steps_failed}[/]" if a.steps_failed else "0",
        )
    return flows


def _memory(snap: status.Snapshot) -> str:
    """Redis's memory against its maxmemory; a warning when it nears the limit, at which
    Redis refuses writes (sends get 503 store_full)."""
    used = _size(snap.memory_used_bytes)
    ratio = snap.memory_ratio
    if ratio is None:
        return f"redis memory: {used} [dim](no maxmemory: no limit)[/]"
    line = f"redis memory: {used} of {_size(snap.memory_max_bytes)} ({ratio:.0%})"
    if snap.memory_high:
        return (
            f"[red]{line}: nearly full[/] - when full, Redis refuses writes and sends get "
            "503: drain or delete data, or raise the limit (DISPATCH_REDIS_MAXMEMORY)"
        )
    return line


def _size(n: int) -> str:
    """Binary units, as Valkey reads "512mb" (512 MiB)."""
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _job_errors(snap: status.Snapshot) -> Table:
    """Jobs that failed on a bug: their work was failed (dead letters) or flagged, and the
    job acknowledged, so that one bad job never stalls the others. Newest first."""
    counts = ", ".join(f"{a} {n}" for a, n in sorted(snap.job_errors.items()))
    table = Table(
        "account",
        "at",
        "job",
        "id",
        "error",
        title=f"jobs failed on a bug (ever: {counts}); the newest",
        title_justify="left",
    )
    for e in snap.latest_job_errors:
        table.add_row(e.account, when(e.at), e.job, e.id, f"[red]{e.error}[/]")
    return table


def _restarts(children: list[ChildRestarts]) -> Table:
    table = Table(
        "process",
        "restarts",
        "last exit",
        "at",
        title="restarted by `dispatch up`",
        title_justify="left",
    )
    for c in children:
        table.add_row(c.name, f"[yellow]{c.restarts}[/]", c.last_exit, when(c.last_exit_at))
    return table


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _as_json(snap: status.Snapshot) -> str:
    out = asdict(snap)
    out["rates"] = {f"{c}:{o}": round(v, 3) for (c, o), v in snap.rates.items()}
    out["workers_by_queue"] = snap.workers_by_queue()
    out["memory_ratio"] = None if snap.memory_ratio is None else round(snap.memory_ratio, 4)
    out["memory_warning"] = snap.memory_high
    return json.dumps(out, indent=2, default=str)


def status_command(
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh every 2 s until Ctrl-C.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document, for scripts.")
    ] = False,
) -> None:
    """Queues and their depth, the workers and what they run, sends per second by channel
    over the last minute, rate limits at their cap, dead letters, running campaigns,
    automations and their runs in progress. Exits 3 when a queue has no live worker."""

    async def once(redis: Redis, _: Settings) -> status.Snapshot:
        return await status.take(redis)

    if watch:
        snap = with_redis(once)  # a clear error if Redis is down, before the live view
        live = Live(render(snap, time.time()), console=console, refresh_per_second=1)
        with live, contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_watch(live))
        return
    snap = with_redis(once)
    if as_json:
        console.print_json(_as_json(snap))
    else:
        console.print(render(snap, time.time()))
        console.print(f"[dim]as of {when(time.time())}[/]")
    if snap.unserved():
        raise typer.Exit(UNSERVED_EXIT)


async def _watch(live: Live) -> None:
    from worker.config import get_settings

    async with redis_session(get_settings()) as redis:
        while True:
            live.update(render(await status.take(redis), time.time()))
            await asyncio.sleep(2)
