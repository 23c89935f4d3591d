"""The errors a provider adapter raises, and nothing else does.

::

    DeliveryError                 a send did not go through
    ├── RetryableError            try again later (retry_after_s is a floor, if known)
    └── PermanentError            never retry this send
        ├── InvalidTokenError     the device token / recipient is dead: prune it
        └── AccountError          the account's credential or standing is bad:
                                  every send of the account will fail the same way

Each error carries ``code``, a stable machine-readable slug that ends up in the
API's ``code`` field and in the message record, ``provider_code`` (what the
provider said, e.g. WhatsApp's ``131026``) and a human ``reason``.

``is_infrastructure`` tells the failures that are nobody's send: Redis or the broker away,
or Redis full (``store_full``).
"""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.store.locks import LeaseLost


class DeliveryError(Exception):
    def __init__(self, reason: str, *, code: str, provider_code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.provider_code = provider_code


class RetryableError(DeliveryError):
    def __init__(
        self,
        reason: str,
        *,
        code: str = "provider_unavailable",
        provider_code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(reason, code=code, provider_code=provider_code)
        self.retry_after_s = retry_after_s


class PermanentError(DeliveryError):
    pass


class InvalidTokenError(PermanentError):
    pass


class AccountError(PermanentError):
    pass


# Failures of the infrastructure, not of a send: the job is given back and done again.
INFRASTRUCTURE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    KombuOperationalError,
    OSError,
    SoftTimeLimitExceeded,
    # The job stopped because its lease was no longer its own: given back, the job finds
    # the work done or its new holder busy with it.
    LeaseLost,
)

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
