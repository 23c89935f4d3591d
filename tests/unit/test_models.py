"""Request validation: what the API accepts before anything touches Redis."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from worker.models import ContactBody, PushTokenIn, WhatsAppSendRequest


def _errors(model: type, data: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return [dict(e) for e in info.value.errors()]


@pytest.mark.parametrize("to", ["+919876543210", "+14155552671", "+447911123456"])
def test_valid_e164_numbers_pass(to: str) -> None:
    assert WhatsAppSendRequest.model_validate({"to": to, "message": "hi"}).to == to


@pytest.mark.parametrize(
    "to",
    [
        "919876543210",
        "+91 98765 43210",
        "+91-9876543210",
        "+0123456789",
        "+1999",
        "+19999999999",
        "+9198765432101234",
        "tel:+919876543210",
    ],
)
def test_anything_but_a_valid_e164_number_is_refused(to: str) -> None:
    [error] = _errors(WhatsAppSendRequest, {"to": to, "message": "hi"})
    assert error["type"] == "invalid_phone_number"
    assert error["msg"] == "Invalid phone number format"


def test_template_and_message_are_mutually_exclusive() -> None:
    [error] = _errors(
        WhatsAppSendRequest, {"to": "+14155552671", "message": "hi", "template_name": "t"}
    )
    assert error["type"] == "invalid_request"
    [error] = _errors(WhatsAppSendRequest, {"to": "+14155552671"})
    assert error["type"] == "invalid_request"


def test_parameters_only_go_with_a_template() -> None:
    [error] = _errors(
        WhatsAppSendRequest,
        {
            "to": "+14155552671",
            "message": "hi",
            "parameters": [{"type": "text", "text": "x"}],
        },
    )
    assert "only apply to a template" in error["msg"]


def test_language_defaults_to_en() -> None:
    body = WhatsAppSendRequest.model_validate({"to": "+14155552671", "template_name": "t"})
    assert body.language == "en"
    assert body.parameters == []


@pytest.mark.parametrize(
    ("platform", "token", "ok"),
    [
        ("apns", "a" * 64, True),
        ("apns", "AB" * 100, True),
        ("apns", "a" * 63, False),  # odd length
        ("apns", "a" * 202, False),  # too long
        ("apns", "g" * 64, False),  # not hexadecimal
        ("fcm", "fXDtJ9kS:APA91bH-token_value", True),
        ("fcm", "has a space in it, which FCM never issues", False),
        ("fcm", "short", False),
        ("webpush", "a" * 64, False),
    ],
)
def test_push_tokens_are_checked_per_platform(platform: str, token: str, ok: bool) -> None:
    data = {"platform": platform, "token": token}
    if ok:
        assert PushTokenIn.model_validate(data).token == token
    else:
        with pytest.raises(ValidationError):
            PushTokenIn.model_validate(data)


def test_contact_patch_knows_which_fields_were_sent() -> None:
    body = ContactBody.model_validate({"name": "Asha", "email": None})
    assert body.model_fields_set == {"name", "email"}
