"""Workarounds for kombu 5.7 on Redis: a worker must survive a Redis restart, and a full Redis.

When the broker connection drops while a job is unacknowledged, Celery closes the
connection, and closing the channel tries to give the unacknowledged jobs back
through a new Redis client built from ``connection.client``, which is already
gone: an ``AttributeError`` that ``maybe_close_channel`` does not expect, which
kills the worker ("Unrecoverable error"). Swallowing it here loses nothing: the
jobs stay in kombu's unacked index and the visibility-timeout sweep requeues them.

Redis at maxmemory (noeviction) refuses every write, and kombu's bookkeeping of a job
is writes in a MULTI (which a full Redis refuses whole): recording a job just popped
with BRPOP as unacknowledged, acknowledging it, giving it back. Refused, the error went
up the consumer loop and killed the worker, and a job popped but not recorded was no
longer anywhere in the broker. Those three now wait, with a growing pause, until Redis
takes the write: the worker holds the job it has and takes no other, which is the
back-off a full store asks for. A worker told to stop gives up waiting (the job is then
recovered as after a crash: the message's unstarted entry, the visibility timeout).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery.worker import state as worker_state
from kombu.connection import Connection
from kombu.transport import redis as kombu_redis
from redis.exceptions import ResponseError

from worker.outages import store_full

log = logging.getLogger(__name__)
_original = Connection.maybe_close_channel
# The pauses between tries of a write Redis refused as full: quick to resume once memory
# is freed, at most one try a second while it stays full.
_FIRST_PAUSE_S = 0.1
_MAX_PAUSE_S = 1.0

R = TypeVar("R")


def _maybe_close_channel(self: Connection, channel: Any) -> None:
    try:
        _original(self, channel)
    except AttributeError as exc:
        log.warning(
            "closing a lost broker channel failed (%s); its unacknowledged jobs "
            "come back with the visibility timeout",
            exc,
        )


def _stopping() -> bool:
    return worker_state.should_stop is not None or worker_state.should_terminate is not None


def _until_stored(method: Callable[..., R]) -> Callable[..., R]:
    """``method`` again, after a pause, for as long as Redis refuses it as full."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        pause, waited = _FIRST_PAUSE_S, 0.0
        while True:
            try:
                result = method(*args, **kwargs)
            except ResponseError as exc:
                if not store_full(exc) or _stopping():
                    raise
                if not waited:
                    log.warning(
                        "Redis is full (%s): the worker waits for memory to be freed "
                        "before it takes or settles jobs",
                        exc,
                    )
                time.sleep(pause)
                waited += pause
                pause = min(pause * 2, _MAX_PAUSE_S)
                continue
            if waited:
                log.warning("Redis takes writes again (after %.1f s): the worker resumes", waited)
            return result

    wrapper.waits_while_full = True  # type: ignore[attr-defined]
    return wrapper


def apply() -> None:
    Connection.maybe_close_channel = _maybe_close_channel  # type: ignore[method-assign]
    qos = kombu_redis.QoS
    for name in ("append", "ack", "reject"):
        method = getattr(qos, name)
        if not getattr(method, "waits_while_full", False):  # applied once
            setattr(qos, name, _until_stored(method))
