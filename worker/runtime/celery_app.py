"""The Celery application: broker, queues, delivery guarantees, process hooks.

The API imports this module only to publish by task name; the task bodies live in
``tasks/`` and are imported by the worker alone.
"""

from __future__ import annotations

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import setup_logging
from kombu import Queue
from kombu.exceptions import OperationalError as KombuOperationalError

from worker import outages
from worker.config import Settings, get_settings
from worker.observe import logs
from worker.runtime import kombu_fixes
from worker.runtime.heartbeat import Heartbeat
from worker.store import jobs, keys

__all__ = ["app", "create_celery"]

# A job out of time, or the broker away, is nobody's send: given back and done again.
outages.count_as_infrastructure(SoftTimeLimitExceeded, KombuOperationalError)


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery(
        "dispatch",
        broker=settings.broker_url,
        include=[
            "tasks.whatsapp",
            "tasks.push",
            "tasks.campaigns",
            "tasks.automations",
            "tasks.quarantine",
            "tasks.webhooks",
        ],
        # Where a job whose pool process died goes back to (tasks.base).
        task_cls="tasks.base:DispatchTask",
    )
    app.conf.update(
        task_queues=[Queue(q) for q in jobs.QUEUES],
        task_default_queue=jobs.TRANSACTIONAL,
        task_routes=jobs.celery_routes(),
        # A job is acknowledged only once it finished; a worker killed mid-send gives
        # it back to the queue (reject_on_worker_lost) instead of losing it.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        # Outcomes travel through our own Redis keys, not Celery's result backend.
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={
            # A job unseen this long goes to another worker (Celery's default: an hour). A
            # live worker marks its jobs as seen with its heartbeat, so this is how long a
            # dead worker's jobs wait, not a limit on how long a job runs.
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_index_key": keys.BROKER_UNACKED_INDEX,
            # kombu sweeps for jobs of dead workers only every 10 x 10 s by default; a
            # sweep per tenth of the visibility timeout brings them back promptly.
            "unacked_restore_interval": max(1, settings.visibility_timeout_s // 10),
            "unacked_restore_throttle": 1,
            # Each sweep holds a lock, for 5 minutes by default: a worker killed inside one
            # (likelier the more often it sweeps) would hold up every redelivery that long.
            # A sweep takes milliseconds.
            "unacked_mutex_expire": max(2, min(60, settings.visibility_timeout_s // 2)),
            # A broker that vanishes without closing the connection must not hang a publish.
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            # Used only with sentinel:// broker URLs (DISPATCH_REDIS_SENTINELS).
            "master_name": settings.redis_sentinel_master,
        },
        task_time_limit=settings.task_time_limit_s,
        # The soft limit leaves the task a moment to give its job back before the hard one.
        task_soft_time_limit=settings.task_soft_time_limit_s,
        worker_prefetch_multiplier=settings.worker_prefetch_multiplier,
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    # Which worker groups are alive, for /readyz and `dispatch status` (worker.runtime.heartbeat).
    app.steps["consumer"].add(Heartbeat)
    return app


@setup_logging.connect
def _logging(**_: object) -> None:
    """The worker logs as every process does (JSON lines, masked), not Celery's way."""
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_json)


kombu_fixes.apply()
app = create_celery()
