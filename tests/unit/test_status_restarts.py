"""`dispatch status` shows what `dispatch up` restarted, in the table and in --json."""

from __future__ import annotations

import json

from rich.console import Console

from worker.cli.status import _as_json, render
from worker.observe.status import Snapshot
from worker.store.restarts import ChildRestarts

BULK = ChildRestarts("bulk", 2, -9, "killed by SIGKILL", 1_790_000_000.0)


def _text(snap: Snapshot) -> str:
    console = Console(record=True, width=200)
    console.print(render(snap, 1_790_000_060.0))
    return console.export_text()


def test_the_table_lists_each_restarted_child_with_its_last_exit() -> None:
    text = _text(Snapshot(redis_ok=True, restarts=[BULK]))
    assert "restarted by `dispatch up`" in text
    [row] = [line for line in text.splitlines() if "bulk" in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["bulk", "2", "killed by SIGKILL", "2026-09-21 14:13:20Z"]


def test_no_restart_no_table() -> None:
    assert "restarted by" not in _text(Snapshot(redis_ok=True))


def test_json_has_the_restarts() -> None:
    assert json.loads(_as_json(Snapshot(redis_ok=True, restarts=[BULK])))["restarts"] == [
        {
            "name": "bulk",
            "restarts": 2,
            "last_exit_code": -9,
            "last_exit": "killed by SIGKILL",
            "last_exit_at": 1_790_000_000.0,
        }
    ]
