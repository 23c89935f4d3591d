"""The domain's errors: what a provider adapter raises, and a service's refusal.

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

``Rejected`` is a service's refusal of what it was asked (a campaign that cannot be
paused, a template that is not approved): a ``Code`` and a human message. The API
answers it with the code's status from ``worker.codes`` and the usual error body; the
CLI prints it. The services never know about HTTP.

The failures that are nobody's send (Redis or the broker away or full, the time limit,
a lost lease) are told apart in ``worker.outages``: this module imports nothing but
``worker.codes`` (the standard library only), so a provider adapter does not pull in
Celery, kombu or redis-py.
"""

from __future__ import annotations

from typing import Any

from worker.codes import Code
from worker.codes import message as fixed_message
from worker.codes import status as code_status


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
        code: str = Code.PROVIDER_UNAVAILABLE,
        provider_code: str | None = None,
        retry_after_s: float | None = None,
        maybe_delivered: bool = False,
    ) -> None:
        super().__init__(reason, code=code, provider_code=provider_code)
        self.retry_after_s = retry_after_s
        # The request went out whole and no answer came back: the provider may have acted
        # on it, so sending it again may deliver it twice.
        self.maybe_delivered = maybe_delivered


class PermanentError(DeliveryError):
    pass


class InvalidTokenError(PermanentError):
    pass


class AccountError(PermanentError):
    pass


class Rejected(Exception):
    """A refusal, by a service or the API: ``code`` (its status and meaning are in
    ``worker.codes``), a human ``message`` (the code's fixed one when not given), the
    request ``field`` at fault if one is, when to come back (``retry_after_s``, for a
    refusal that passes: the API's ``Retry-After``), and any ``extra`` fields of the
    error body."""

    def __init__(
        self,
        code: Code,
        message: str | None = None,
        field: str | None = None,
        *,
        retry_after_s: int | None = None,
        **extra: Any,
    ) -> None:
        text = message if message is not None else fixed_message(code)
        super().__init__(text)
        self.code = code
        self.message = text
        self.field = field
        self.retry_after_s = retry_after_s
        self.extra = extra

    @property
    def status(self) -> int:
        return code_status(self.code)

    def body_fields(self) -> dict[str, Any]:
        """What the error body carries besides ``error`` and ``code``."""
        return {**({"field": self.field} if self.field is not None else {}), **self.extra}
