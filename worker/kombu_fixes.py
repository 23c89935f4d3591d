"""A workaround for kombu 5.7 on Redis: a worker must survive a Redis restart.

When the broker connection drops while a job is unacknowledged, Celery closes the
connection, and closing the channel tries to give the unacknowledged jobs back
through a new Redis client built from ``connection.client``, which is already
gone: an ``AttributeError`` that ``maybe_close_channel`` does not expect, which
kills the worker ("Unrecoverable error"). Swallowing it here loses nothing: the
jobs stay in kombu's unacked index and the visibility-timeout sweep requeues them.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.connection import Connection

log = logging.getLogger(__name__)
_original = Connection.maybe_close_channel


def _maybe_close_channel(self: Connection, channel: Any) -> None:
    try:
        _original(self, channel)
    except AttributeError as exc:
        log.warning(
            "closing a lost broker channel failed (%s); its unacknowledged jobs "
            "come back with the visibility timeout",
            exc,
        )


def apply() -> None:
    Connection.maybe_close_channel = _maybe_close_channel  # type: ignore[method-assign]
