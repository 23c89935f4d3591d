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

The failures that are nobody's send (Redis or the broker away or full, the time limit,
a lost lease) are told apart in ``worker.outages``: this module imports nothing, so a
provider adapter does not pull in Celery, kombu or redis-py.
"""

from __future__ import annotations


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
