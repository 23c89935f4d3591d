"""``dispatch contacts …``: import contacts from a CSV file, streaming."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.table import Table

from worker.cli.common import AccountOpt, console, err, with_redis
from worker.config import Settings
from worker.services.importer import ImportReport
from worker.store import accounts

app = typer.Typer(help="Contacts: import from CSV.", no_args_is_help=True)


@app.command("import")
def contacts_import(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV with a header row."),
    ],
    account: AccountOpt,
    batch: Annotated[
        int, typer.Option(min=1, max=10_000, help="Contacts per Redis round trip.")
    ] = 500,
) -> None:
    """Import contacts from a CSV file, streaming (a million rows are fine).

    Columns: id, phone, email, name, fcm_token, apns_token, tags (separated by ; or |);
    any other column becomes an attribute. Existing contacts are merged, as with PATCH.
    Exit code: 0 when every row was imported, 1 when some were skipped, 2 on a bad file."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from worker.services.importer import COLUMNS, Importer, contact_from_row

    size = file.stat().st_size
    consumed = 0

    def lines() -> Iterator[str]:
        nonlocal consumed
        with file.open("rb") as handle:
            for number, raw in enumerate(handle):
                consumed += len(raw)
                text = raw.decode("utf-8", errors="replace")
                yield text.removeprefix("\ufeff") if number == 0 else text

    reader = csv.DictReader(lines())
    header = {str(name).strip().lower() for name in reader.fieldnames or []}
    if not header & (COLUMNS - {"tags", "name"}):
        err.print(
            f"[red]{file} does not look like a contacts CSV[/]: its header needs one of "
            "id, phone, email, fcm_token, apns_token"
        )
        raise typer.Exit(2)

    async def action(redis: Redis, _: Settings) -> ImportReport:
        await accounts.require_account(redis, account)
        importer = Importer(redis, account, contact_from_row, batch)
        columns = [BarColumn(), DownloadColumn(), TimeRemainingColumn()]
        with Progress(*Progress.get_default_columns()[:1], *columns, console=err) as progress:
            task = progress.add_task(f"importing {file.name}", total=size)
            for row in reader:
                await importer.add(row)
                if importer.report.rows % 1000 == 0:
                    progress.update(task, completed=consumed)
            report = await importer.finish()
            progress.update(task, completed=size)
        return report

    report = with_redis(action)
    summary = Table("rows", "created", "updated", "skipped", title=f"import into {account}")
    summary.add_row(str(report.rows), str(report.created), str(report.updated), str(report.skipped))
    console.print(summary)
    if report.skipped:
        reasons = Table("reason", "rows", title="skipped")
        for reason, count in report.reasons.most_common():
            reasons.add_row(reason, str(count))
        console.print(reasons)
        for row, reason in report.examples[:20]:
            console.print(f"  row {row}: {reason}")
        raise typer.Exit(1)
