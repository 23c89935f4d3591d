"""The webhook gauges a scrape shows: the outbox, and each endpoint's backlog (summed
unless the operator asked for tenant labels)."""

from __future__ import annotations

from worker.observe import metrics
from worker.observe.status import Snapshot


def _snap() -> Snapshot:
    return Snapshot(
        redis_ok=True,
        webhook_outbox=3,
        webhook_backlog=[("acme", "wh_a", 5, 2), ("acme", "wh_b", 1, 0), ("zed", "wh_c", 0, 4)],
    )


def test_totals_without_tenant_labels() -> None:
    text = metrics.exposition(metrics.StoreCollector(_snap())).decode()
    assert "dispatch_webhook_outbox 3.0" in text
    assert 'dispatch_webhook_backlog{state="queued"} 6.0' in text
    assert 'dispatch_webhook_backlog{state="retrying"} 6.0' in text
    assert "wh_a" not in text


def test_per_endpoint_with_tenant_labels() -> None:
    text = metrics.exposition(metrics.StoreCollector(_snap(), tenant_labels=True)).decode()
    assert 'dispatch_webhook_backlog{account="acme",endpoint="wh_a",state="queued"} 5.0' in text
    assert 'dispatch_webhook_backlog{account="zed",endpoint="wh_c",state="retrying"} 4.0' in text


def test_status_shows_endpoints_with_a_backlog_only() -> None:
    from rich.console import Console

    from worker.cli.status import render

    console = Console(width=120, record=True)
    console.print(render(_snap(), 0.0))
    text = console.export_text()
    assert "event webhooks (outbox: 3)" in text
    assert "wh_a" in text
    assert "wh_c" in text
    quiet = Console(width=120, record=True)
    quiet.print(render(Snapshot(redis_ok=True), 0.0))
    assert "event webhooks" not in quiet.export_text()
