"""Celery task entry points: decode ids, call ``worker.delivery``, map the outcome to a retry.

Importing this package (the worker does, through the app's ``include``) ties the
per-process runtime to the prefork child's life.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown

from worker import logs, runtime


@worker_process_init.connect
def _start_runtime(**_: Any) -> None:
    logs.quiet_libraries()
    runtime.start()


@worker_process_shutdown.connect
def _stop_runtime(**_: Any) -> None:
    runtime.stop()
