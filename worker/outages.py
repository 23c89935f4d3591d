"""Failures that are nobody's send: the job is given back and done again, no attempt used.

Redis or the broker away (or Redis full: ``store_full``), the job out of time, or its
lease no longer its own. Everything else a job raises is a bug (``tasks.run_job``).
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.store.locks import LeaseLost

# Failures of the infrastructure, not of a send: the job is given back and done again.
# The job runner's own (Celery's time limit, the broker's errors) are added by
# ``worker.runtime`` when it loads (``count_as_infrastructure``): this module, and the
# delivery code that asks it, do not import Celery.
INFRASTRUCTURE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    # The job stopped because its lease was no longer its own: given back, the job finds
    # the work done or its new holder busy with it.
    LeaseLost,
)


def count_as_infrastructure(*types: type[BaseException]) -> None:
    """Treat ``types`` as failures of the infrastructure too (the job runner declares its own)."""
    global INFRASTRUCTURE
    INFRASTRUCTURE = (*INFRASTRUCTURE, *(t for t in types if t not in INFRASTRUCTURE))


# What Redis says when a write would take it past `maxmemory` (with `noeviction`, which
# the service runs with: a full store refuses writes rather than evict queued messages).
_OOM_REPLY = "OOM command not allowed"


def store_full(exc: BaseException) -> bool:
    """Redis refused a write because it is at ``maxmemory``.

    redis-py raises ``OutOfMemoryError`` for the server's ``OOM`` reply, inside a MULTI or
    a script as well (Redis 7 and Valkey keep the error's code through ``redis.call``).
    An older server words a script's failure as ``ERR Error running script … OOM …``, and a
    script that catches the error with ``pcall`` may return its text: a plain
    ``ResponseError`` that still holds the server's words."""
    if isinstance(exc, OutOfMemoryError):
        return True
    return isinstance(exc, ResponseError) and _OOM_REPLY in str(exc)


def is_infrastructure(exc: BaseException) -> bool:
    """Nothing is wrong with the job itself: the store or the broker is away or full, or
    the job ran out of time. It is given back and done again later, no attempt used."""
    return isinstance(exc, INFRASTRUCTURE) or store_full(exc)
