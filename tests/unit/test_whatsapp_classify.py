"""Every row of docs/providers.md's WhatsApp table: status/code in → class and delay out."""

from __future__ import annotations

from typing import Any

import pytest

from worker.errors import AccountError, PermanentError, RetryableError
from worker.providers.whatsapp import classify


def envelope(code: int, **extra: Any) -> dict[str, Any]:
    return {
        "error": {
            "message": f"(#{code}) something",
            "type": "OAuthException",
            "code": code,
            "error_data": {"details": "details here"},
            "fbtrace_id": "A1",
            **extra,
        }
    }


@pytest.mark.parametrize(
    ("code", "status", "kind", "slug", "min_retry_s"),
    [
        (130429, 429, RetryableError, "rate_limited", 1.0),
        (131056, 429, RetryableError, "recipient_rate_limited", 6.0),
        (4, 429, RetryableError, "rate_limited", 1.0),
        (80007, 429, RetryableError, "rate_limited", 1.0),
        (131000, 500, RetryableError, "provider_unavailable", None),
        (131016, 503, RetryableError, "provider_unavailable", None),
        (2, 503, RetryableError, "provider_unavailable", None),
        (1, 500, RetryableError, "provider_unavailable", None),
        (131048, 429, RetryableError, "spam_rate_limited", 60.0),
        (131047, 400, PermanentError, "reengagement_window_closed", None),
        (132000, 400, PermanentError, "template_parameter_mismatch", None),
        (132001, 404, PermanentError, "template_not_found", None),
        (132015, 400, PermanentError, "template_paused", None),
        (132016, 400, PermanentError, "template_disabled", None),
        (131026, 400, PermanentError, "recipient_undeliverable", None),
        (131050, 400, PermanentError, "recipient_opted_out", None),
        (131049, 400, PermanentError, "ecosystem_limited", None),
        (190, 401, AccountError, "channel_auth_failed", None),
        (100, 400, PermanentError, "invalid_provider_request", None),
        (131008, 400, PermanentError, "template_parameter_invalid", None),
        (131009, 400, PermanentError, "template_parameter_invalid", None),
        (132018, 400, PermanentError, "template_parameter_invalid", None),
        (132005, 400, PermanentError, "template_body_too_long", None),
        (368, 403, AccountError, "account_restricted", None),
        (131031, 403, AccountError, "account_restricted", None),
    ],
)
def test_every_documented_code_is_classified(
    code: int, status: int, kind: type, slug: str, min_retry_s: float | None
) -> None:
    error = classify(status, envelope(code), None)

    assert type(error) is kind
    assert error.code == slug
    assert error.provider_code == str(code)
    assert "something" in error.reason
    assert "details here" in error.reason
    if kind is RetryableError:
        assert isinstance(error, RetryableError)
        assert error.retry_after_s == min_retry_s


def test_retry_after_header_is_a_floor_over_the_codes_own() -> None:
    error = classify(429, envelope(130429), "7")
    assert isinstance(error, RetryableError)
    assert error.retry_after_s == 7.0
    # ... but never lowers the code's own floor (pair rate: about 6 s).
    error = classify(429, envelope(131056), "1")
    assert isinstance(error, RetryableError)
    assert error.retry_after_s == 6.0


def test_codes_1_and_2_are_permanent_when_meta_says_not_transient() -> None:
    error = classify(400, envelope(1, is_transient=False), None)
    assert type(error) is PermanentError
    assert error.code == "provider_error"


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "kind", "retry_after_s"),
    [
        (500, None, None, RetryableError, None),
        (502, "<html>Bad gateway</html>", None, RetryableError, None),
        (503, None, "3", RetryableError, 3.0),
        (429, None, "2", RetryableError, 2.0),
        (408, None, None, RetryableError, None),
        (400, None, None, PermanentError, None),
        (404, {"unexpected": True}, None, PermanentError, None),
    ],
)
def test_answers_without_an_error_envelope_fall_back_on_the_status(
    status: int, body: Any, retry_after: str | None, kind: type, retry_after_s: float | None
) -> None:
    error = classify(status, body, retry_after)
    assert type(error) is kind
    if isinstance(error, RetryableError):
        assert error.retry_after_s == retry_after_s
        assert error.code == "provider_unavailable"
    else:
        assert error.code == "provider_error"
        assert error.provider_code == str(status)


@pytest.mark.parametrize(("status", "kind"), [(500, RetryableError), (400, PermanentError)])
def test_unknown_codes_follow_the_status(status: int, kind: type) -> None:
    error = classify(status, envelope(999999), None)
    assert type(error) is kind
    assert error.provider_code == "999999"
