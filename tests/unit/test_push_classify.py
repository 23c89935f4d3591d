"""docs/providers.md's FCM and APNs tables: what the library reports → our error class;
the FCM target by token kind; the shared APNs provider token."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from firebase_admin import exceptions, messaging

from worker.errors import (
    AccountError,
    DeliveryError,
    InvalidTokenError,
    PermanentError,
    RetryableError,
)
from worker.providers import apns, fcm


def _response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, headers=headers, request=httpx.Request("POST", "https://fcm.test/v1/x")
    )


@pytest.mark.parametrize(
    ("error", "kind", "code", "prune"),
    [
        (
            messaging.UnregisteredError(
                "Requested entity was not found.", http_response=_response(404)
            ),
            InvalidTokenError,
            "token_unregistered",
            True,
        ),
        (
            messaging.SenderIdMismatchError("SenderId mismatch", http_response=_response(403)),
            InvalidTokenError,
            "token_sender_mismatch",
            True,
        ),
        (
            exceptions.InvalidArgumentError(
                "The registration token is not a valid FCM registration token"
            ),
            InvalidTokenError,
            "token_invalid",
            True,
        ),
        (
            exceptions.InvalidArgumentError("Invalid value at 'message.data[0].value'"),
            PermanentError,
            "invalid_payload",
            False,
        ),
        (
            # The target's field was wrong (our request), not the device: never prune.
            exceptions.InvalidArgumentError(
                "Invalid value at 'message.fid': not a Firebase installation ID "
                "(22 characters; a registration token goes in 'token')"
            ),
            PermanentError,
            "invalid_payload",
            False,
        ),
        (
            messaging.ThirdPartyAuthError("Auth error from APNS or Web Push Service"),
            AccountError,
            "channel_auth_failed",
            False,
        ),
        (
            exceptions.UnauthenticatedError("Request had invalid authentication credentials."),
            AccountError,
            "channel_auth_failed",
            False,
        ),
        (
            exceptions.UnavailableError(
                "The service is currently unavailable.", http_response=_response(503)
            ),
            RetryableError,
            "provider_unavailable",
            False,
        ),
        (
            exceptions.InternalError("Internal error encountered.", http_response=_response(500)),
            RetryableError,
            "provider_unavailable",
            False,
        ),
        (
            exceptions.DeadlineExceededError("Timed out while making an API call"),
            RetryableError,
            "provider_timeout",
            False,
        ),
        (
            exceptions.UnknownError("Unknown error while making a remote service call"),
            RetryableError,
            "provider_unavailable",
            False,
        ),
    ],
)
def test_fcm_errors(error: exceptions.FirebaseError, kind: type, code: str, prune: bool) -> None:
    classified = fcm.classify(error)
    assert type(classified) is kind
    assert classified.code == code
    assert isinstance(classified, InvalidTokenError) is prune


def test_fcm_quota_exceeded_honours_retry_after_with_a_minute_by_default() -> None:
    with_header = fcm.classify(
        messaging.QuotaExceededError(
            "Quota exceeded", http_response=_response(429, **{"Retry-After": "17"})
        )
    )
    without = fcm.classify(
        messaging.QuotaExceededError("Quota exceeded", http_response=_response(429))
    )
    assert isinstance(with_header, RetryableError)
    assert isinstance(without, RetryableError)
    assert with_header.retry_after_s == 17.0
    assert without.retry_after_s == 60.0
    assert with_header.provider_code == "QUOTA_EXCEEDED"


@pytest.mark.parametrize(
    ("status", "reason", "kind", "code"),
    [
        ("410", "Unregistered", InvalidTokenError, "token_unregistered"),
        ("410", "ExpiredToken", InvalidTokenError, "token_unregistered"),
        ("400", "BadDeviceToken", InvalidTokenError, "token_invalid"),
        ("400", "DeviceTokenNotForTopic", InvalidTokenError, "token_invalid"),
        ("400", "PayloadEmpty", PermanentError, "invalid_payload"),
        ("413", "PayloadTooLarge", PermanentError, "invalid_payload"),
        ("400", "BadTopic", PermanentError, "invalid_payload"),
        ("403", "ExpiredProviderToken", RetryableError, "provider_token_rejected"),
        ("403", "InvalidProviderToken", AccountError, "channel_auth_failed"),
        ("403", "MissingProviderToken", AccountError, "channel_auth_failed"),
        ("403", "BadCertificate", AccountError, "channel_auth_failed"),
        ("429", "TooManyRequests", RetryableError, "rate_limited"),
        ("429", "TooManyProviderTokenUpdates", RetryableError, "rate_limited"),
        ("500", "InternalServerError", RetryableError, "provider_unavailable"),
        ("503", "ServiceUnavailable", RetryableError, "provider_unavailable"),
        ("503", "Shutdown", RetryableError, "provider_unavailable"),
    ],
)
def test_apns_errors(status: str, reason: str, kind: type, code: str) -> None:
    classified: DeliveryError = apns.classify(status, reason)
    assert type(classified) is kind
    assert classified.code == code
    assert classified.provider_code == reason
    assert reason in classified.reason


class _MemoryStore:
    """The shared store, in memory (the Redis one: tests/integration)."""

    def __init__(self) -> None:
        self.record: tuple[str, float] | None = None

    async def load(self, key: str) -> tuple[str, float] | None:
        return self.record

    async def replace(
        self, key: str, old: str | None, new: str, issued_at: float
    ) -> tuple[str, float]:
        if (self.record[0] if self.record else None) == old:
            self.record = (new, issued_at)
        assert self.record is not None
        return self.record


def _jwt(store: _MemoryStore | None = None) -> apns.SharedJwt:
    from worker.sim.credentials import apns_key

    key = apns_key()
    return apns.SharedJwt(key.private_key_pem, key.key_id, key.team_id, store=store)


def test_a_rejected_token_is_replaced_once_however_many_streams_say_so() -> None:
    asyncio.run(_a_rejected_token_is_replaced_once())


async def _a_rejected_token_is_replaced_once() -> None:
    provider = _jwt()
    await provider.refresh()
    first = provider.get_header()
    assert {provider.get_header() for _ in range(100)} == {first}
    used = first.removeprefix("bearer ")
    for _ in range(200):  # 200 streams in flight answer 403 ExpiredProviderToken
        provider.rejected(used)
    await provider.refresh()
    second = provider.get_header()
    assert second != first
    assert provider.minted == 2
    provider.rejected(used)  # a late answer about the old token changes nothing
    await provider.refresh()
    assert provider.get_header() == second
    assert provider.minted == 2


def test_processes_sharing_a_store_sign_one_token_between_them() -> None:
    asyncio.run(_processes_share_one_token())


async def _processes_share_one_token() -> None:
    store = _MemoryStore()
    a, b = _jwt(store), _jwt(store)
    b._key = a._key  # the same signing key in two processes
    await a.refresh()
    await b.refresh()
    assert a.get_header() == b.get_header()
    assert a.minted + b.minted == 1
    used = a.get_header().removeprefix("bearer ")
    a.rejected(used)
    b.rejected(used)
    await a.refresh()
    await b.refresh()
    assert a.get_header() == b.get_header() != f"bearer {used}"
    # b minted a token too, but found a's in the store and sent that one
    assert store.record is not None
    assert a.get_header() == f"bearer {store.record[0]}"


def test_fcm_targets_a_registration_token_by_token_and_an_installation_id_by_fid() -> None:
    from worker.models.push_payload import Notification

    note = Notification("Hi", "There")
    registration = "fXDtJ9kS:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx7dPqnZ01"
    installation = "cXDtJ9kSQ0eoKMwt2KZFBa"
    by_token = fcm._message(note, registration)  # no DeprecationWarning escapes (-W error)
    by_fid = fcm._message(note, installation)
    assert (by_token.token, by_token.fid) == (registration, None)
    assert (by_fid.fid, by_fid.token) == (installation, None)
