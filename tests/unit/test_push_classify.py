"""PROVIDERS.md's FCM and APNs tables: what the library reports → our error class."""

from __future__ import annotations

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
        ("403", "InvalidProviderToken", RetryableError, "provider_token_rejected"),
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


def test_shared_jwt_is_minted_once_and_again_only_when_invalidated() -> None:
    from worker.sim.credentials import apns_key

    key = apns_key()
    provider = apns.SharedJwt(key.private_key_pem, key.key_id, key.team_id)
    headers = {provider.get_header() for _ in range(100)}
    assert len(headers) == 1
    assert provider.minted == 1
    provider.invalidate()
    provider.get_header()
    assert provider.minted == 2
