"""Prometheus metrics: what the processes count, and what Redis knows at scrape time.

A worker is a group of prefork processes; each writes its counters to memory-mapped
files in one directory per group (prometheus_client's multiprocess mode), and the
group's main process serves them all on one port (``dispatch worker --metrics-port``).
The API serves ``/metrics`` on its own port the same way, plus what only Redis knows and
every scrape reads afresh: queue depths, delayed jobs, dead letters, running campaigns,
Redis's memory against its limit.

Counters are incremented once per slice or per message, with the count, not once per
device: a bulk worker's budget per send is tens of microseconds.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from worker.observe.status import Snapshot

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

SENDS = Counter(
    "dispatch_sends_total",
    "Provider sends by channel (whatsapp, fcm, apns) and outcome: sent (accepted by the "
    "provider), failed (for good), retry (failed, to be tried again). A push counts devices.",
    ["channel", "outcome"],
)
PROVIDER_LATENCY = Histogram(
    "dispatch_provider_request_duration_seconds",
    "How long a provider call took (a push call may carry many devices).",
    ["channel"],
    buckets=_LATENCY_BUCKETS,
)
RETRIES = Counter(
    "dispatch_retries_total",
    "Sends scheduled for another attempt, by channel and reason (the error code).",
    ["channel", "reason"],
)
RATE_LIMIT_WAITS = Counter(
    "dispatch_rate_limit_waits_total",
    "Sends that found their rate limit busy: waited (waited for a slot in the worker) or "
    "deferred (the wait was long: rescheduled).",
    ["limit", "how"],
)
RATE_LIMIT_WAIT = Histogram(
    "dispatch_rate_limit_wait_seconds",
    "Time spent waiting for a rate-limit slot, by kind of limit.",
    ["limit"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
)
TOKENS_PRUNED = Counter(
    "dispatch_push_tokens_pruned_total",
    "Device tokens removed because the provider said they are dead, by platform.",
    ["platform"],
)
DEAD_LETTERED = Counter(
    "dispatch_dead_lettered_total",
    "Messages moved to the dead-letter list, by channel.",
    ["channel"],
)
AUTOMATION_STEPS = Counter(
    "dispatch_automation_steps_total",
    "Automation steps executed, by step type and outcome (done, failed; a wait also counts "
    "when it starts: waiting).",
    ["type", "outcome"],
)
WEBHOOK_EVENTS = Counter(
    "dispatch_webhook_events_total",
    "Events taken from the outbox for accounts with webhook endpoints, by type.",
    ["type"],
)
WEBHOOK_DELIVERIES = Counter(
    "dispatch_webhook_deliveries_total",
    "Attempts to post an event to an endpoint, by event type and what the attempt left the "
    "delivery as (delivered, retrying, failed).",
    ["type", "outcome"],
)
WEBHOOK_DROPPED = Counter(
    "dispatch_webhook_deliveries_dropped_total",
    "Deliveries dropped because their endpoint's backlog was full.",
)
API_ACCEPTED = Counter(
    "dispatch_api_sends_accepted_total",
    "Send requests the API accepted and queued, by channel.",
    ["channel"],
)


def initialize() -> None:
    """Every series a dashboard expects, at zero from the start: a counter that appears
    only with its first send makes rate() and alerts on absence misbehave."""
    for channel in ("whatsapp", "fcm", "apns"):
        for outcome in ("sent", "failed", "retry"):
            SENDS.labels(channel, outcome)
        PROVIDER_LATENCY.labels(channel)
    for platform in ("fcm", "apns"):
        TOKENS_PRUNED.labels(platform)
    for channel in ("whatsapp", "push"):
        DEAD_LETTERED.labels(channel)
        API_ACCEPTED.labels(channel)


def count_push(tally: collections.Counter[tuple[str, str, str]]) -> None:
    """A slice's device outcomes: (``sent``|``failed``|``retry``|``pruned``, platform,
    reason for a retry) -> how many."""
    for (what, platform, reason), n in tally.items():
        if what == "pruned":
            TOKENS_PRUNED.labels(platform).inc(n)
            continue
        SENDS.labels(platform, what).inc(n)
        if what == "retry":
            RETRIES.labels(platform, reason).inc(n)


class _ThisProcess(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def registry(*extra: Collector) -> CollectorRegistry:
    """This process group's metrics (every process's files in prometheus_client's
    multiprocess directory, see ``worker.observe.metrics_setup``), or this process's own when it
    runs alone (tests, a process started without the directory), plus ``extra``."""
    out = CollectorRegistry()
    try:
        MultiProcessCollector(out)  # type: ignore[no-untyped-call]
    except ValueError:  # no multiprocess directory: this process is the only one
        out.register(_ThisProcess())
    for collector in extra:
        out.register(collector)
    return out


def serve(port: int, host: str = "127.0.0.1") -> None:
    """``/metrics`` on ``host:port`` from a background thread of this process."""
    initialize()
    start_http_server(port, addr=host, registry=registry())


def exposition(*extra: Collector) -> bytes:
    return generate_latest(registry(*extra))


class StoreCollector(Collector):
    """Gauges from a snapshot of Redis taken for this scrape (``worker.observe.status``)."""

    def __init__(self, snap: Snapshot, *, tenant_labels: bool = False) -> None:
        self._snap = snap
        # Accounts, campaigns and automations name tenants: totals only, unless the
        # operator asks for the breakdown (DISPATCH_METRICS_TENANT_LABELS).
        self._tenants = tenant_labels

    def collect(self) -> Iterator[Metric]:
        yield from self._store()
        yield self._dead_letters()
        yield self._workers()
        yield self._campaigns()
        yield self._automation_runs()
        yield from self._webhooks()

    def _store(self) -> Iterator[Metric]:
        """The queues and Redis itself: how much waits, and how close Redis is to full."""
        snap = self._snap
        depth = GaugeMetricFamily(
            "dispatch_queue_depth", "Jobs waiting in each Celery queue.", labels=["queue"]
        )
        for queue, n in snap.queues.items():
            depth.add_metric([queue], n)
        yield depth
        yield GaugeMetricFamily(
            "dispatch_redis_memory_used_bytes",
            "Memory Redis uses (INFO memory: used_memory).",
            value=snap.memory_used_bytes,
        )
        yield GaugeMetricFamily(
            "dispatch_redis_memory_max_bytes",
            "Redis's maxmemory (0: no limit). At it, Redis refuses writes: sends get 503.",
            value=snap.memory_max_bytes,
        )
        yield GaugeMetricFamily(
            "dispatch_delayed_jobs",
            "Jobs waiting for a later time (long retries, rate-limit waits, send_at).",
            value=snap.delayed,
        )

    def _dead_letters(self) -> Metric:
        snap = self._snap
        if not self._tenants:
            return GaugeMetricFamily(
                "dispatch_dead_letters",
                "Messages in the dead-letter lists.",
                value=sum(snap.dead_letters.values()),
            )
        dead = GaugeMetricFamily(
            "dispatch_dead_letters", "Messages in the dead-letter lists.", labels=["account"]
        )
        for account, n in snap.dead_letters.items():
            dead.add_metric([account], n)
        return dead

    def _workers(self) -> Metric:
        workers = GaugeMetricFamily(
            "dispatch_workers", "Worker groups alive (heartbeat), by queue.", labels=["queue"]
        )
        for queue, n in self._snap.workers_by_queue().items():
            workers.add_metric([queue], n)
        return workers

    def _campaigns(self) -> Metric:
        """Each running campaign's counters, or without tenant labels their sums."""
        tenant = ["account", "campaign"] if self._tenants else []
        progress = GaugeMetricFamily(
            "dispatch_campaign_recipients",
            "Running campaigns' counters (recipients, sent, delivered, failed, skipped...).",
            labels=[*tenant, "counter"],
        )
        totals: dict[str, float] = {}
        for c in self._snap.campaigns:
            for counter, n in sorted(c.counts.items()):
                if self._tenants:
                    progress.add_metric([c.account, c.id, counter], n)
                totals[counter] = totals.get(counter, 0) + n
        if not self._tenants:
            for counter, total in sorted(totals.items()):
                progress.add_metric([counter], total)
        return progress

    def _webhooks(self) -> Iterator[Metric]:
        snap = self._snap
        yield GaugeMetricFamily(
            "dispatch_webhook_outbox",
            "Events written by results and not yet moved to their endpoints' queues.",
            value=snap.webhook_outbox,
        )
        tenant = ["account", "endpoint"] if self._tenants else []
        backlog = GaugeMetricFamily(
            "dispatch_webhook_backlog",
            "Event deliveries waiting per endpoint: queued (not tried yet) or retrying "
            "(between attempts). Past 10,000 an endpoint's oldest are dropped.",
            labels=[*tenant, "state"],
        )
        totals = {"queued": 0, "retrying": 0}
        for account, endpoint_id, queued, retrying in snap.webhook_backlog:
            if self._tenants:
                backlog.add_metric([account, endpoint_id, "queued"], queued)
                backlog.add_metric([account, endpoint_id, "retrying"], retrying)
            totals["queued"] += queued
            totals["retrying"] += retrying
        if not self._tenants:
            for state, n in totals.items():
                backlog.add_metric([state], n)
        yield backlog

    def _automation_runs(self) -> Metric:
        runs = GaugeMetricFamily(
            "dispatch_automation_runs_in_progress",
            "Automation runs not finished (at a step or waiting), by automation.",
            labels=["account", "automation"] if self._tenants else [],
        )
        if self._tenants:
            for a in self._snap.automations:
                runs.add_metric([a.account, a.id], a.in_progress)
        else:
            runs.add_metric([], sum(a.in_progress for a in self._snap.automations))
        return runs
