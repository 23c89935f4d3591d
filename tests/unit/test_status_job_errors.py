"""`dispatch status` shows the jobs that failed on a bug, in the table and in --json."""

from __future__ import annotations

import json

from rich.console import Console

from worker.cli.status import _as_json, render
from worker.observe.status import Snapshot
from worker.store.joberrors import JobError

ERROR = JobError("acme", 1_790_000_000.0, "campaign.whatsapp", "cmp_x_0", "ValueError: boom")


def _text(snap: Snapshot) -> str:
    console = Console(record=True, width=200)
    console.print(render(snap, 1_790_000_060.0))
    return console.export_text()


def test_the_table_counts_by_account_and_lists_the_newest() -> None:
    text = _text(Snapshot(redis_ok=True, job_errors={"acme": 3}, latest_job_errors=[ERROR]))
    assert "jobs failed on a bug (ever: acme 3)" in text
    [row] = [line for line in text.splitlines() if "cmp_x_0" in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == [
        "acme",
        "2026-09-21 14:13:20Z",
        "campaign.whatsapp",
        "cmp_x_0",
        "ValueError: boom",
    ]


def test_no_job_error_no_table() -> None:
    assert "failed on a bug" not in _text(Snapshot(redis_ok=True))


def test_json_has_the_counts_and_the_newest() -> None:
    out = json.loads(
        _as_json(Snapshot(redis_ok=True, job_errors={"acme": 3}, latest_job_errors=[ERROR]))
    )
    assert out["job_errors"] == {"acme": 3}
    assert out["latest_job_errors"] == [
        {
            "account": "acme",
            "at": 1_790_000_000.0,
            "job": "campaign.whatsapp",
            "id": "cmp_x_0",
            "error": "ValueError: boom",
        }
    ]
